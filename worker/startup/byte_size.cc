#include "worker/startup/byte_size.h"

#include <charconv>
#include <cmath>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace expertmesh::server {

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text, const std::string& what) {
  const std::string s = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(text));
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  const std::string unit(end, s.data() + s.size());
  double multiplier = 0;
  if (unit.empty() || unit == "B") multiplier = 1;
  if (unit == "KB" || unit == "K") multiplier = 1e3;
  if (unit == "MB" || unit == "M") multiplier = 1e6;
  if (unit == "GB" || unit == "G") multiplier = 1e9;
  if (unit == "TB" || unit == "T") multiplier = 1e12;
  if (unit == "KIB") multiplier = 1024.0;
  if (unit == "MIB") multiplier = 1024.0 * 1024;
  if (unit == "GIB") multiplier = 1024.0 * 1024 * 1024;
  if (unit == "TIB") multiplier = 1024.0 * 1024 * 1024 * 1024;
  if (ec != std::errc() || end == s.data() || !std::isfinite(value) || value <= 0 ||
      multiplier == 0 || value * multiplier >= 1.8e19) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": bad size '", text, "' (a positive number with B, KB, MB, GB, KiB, MiB, GiB)"));
  }
  return static_cast<uint64_t>(std::llround(value * multiplier));
}

}  // namespace expertmesh::server
