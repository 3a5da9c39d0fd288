#include "router/json_body.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace expertmesh::router {
namespace {

using Json = nlohmann::ordered_json;

// nlohmann's DOM builder behind a depth counter. sax_parse stops at the first callback that
// returns false, before the deeper value exists.
class DepthLimitedSax {
 public:
  using number_integer_t = Json::number_integer_t;
  using number_unsigned_t = Json::number_unsigned_t;
  using number_float_t = Json::number_float_t;
  using string_t = Json::string_t;
  using binary_t = Json::binary_t;

  DepthLimitedSax(Json* root, int max_depth)
      : dom_(*root, /*allow_exceptions=*/false), max_depth_(max_depth) {}

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(number_float_t v, const string_t& s) { return dom_.number_float(v, s); }
  bool string(string_t& v) { return dom_.string(v); }
  bool binary(binary_t& v) { return dom_.binary(v); }
  bool key(string_t& v) { return dom_.key(v); }
  bool start_object(std::size_t n) { return Enter() && dom_.start_object(n); }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t n) { return Enter() && dom_.start_array(n); }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool parse_error(std::size_t position, const std::string& token,
                   const nlohmann::detail::exception& e) {
    error_ = e.what();
    return dom_.parse_error(position, token, e);
  }

  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }

 private:
  bool Enter() {
    if (++depth_ <= max_depth_) return true;
    too_deep_ = true;
    return false;
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  const int max_depth_;
  int depth_ = 0;
  bool too_deep_ = false;
  std::string error_;
};

}  // namespace

absl::StatusOr<nlohmann::ordered_json> ParseJsonBody(std::string_view text, int max_depth) {
  Json root;
  DepthLimitedSax sax(&root, max_depth);
  const bool ok = Json::sax_parse(text, &sax, nlohmann::detail::input_format_t::json,
                                  /*strict=*/true);
  if (sax.too_deep()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body nests objects and arrays deeper than ", max_depth));
  }
  if (!ok || root.is_discarded()) {
    return absl::InvalidArgumentError(
        sax.error().empty() ? std::string("the request body is not valid JSON")
                            : absl::StrCat("the request body is not valid JSON: ", sax.error()));
  }
  return root;
}

}  // namespace expertmesh::router
