#include "model/request/request_id.h"

namespace expertmesh::model {

bool IsRouterRequestId(std::string_view id) {
  if (id.substr(0, kRequestIdPrefix.size()) != kRequestIdPrefix) return false;
  id.remove_prefix(kRequestIdPrefix.size());
  if (id.size() < kRequestIdHexDigits) return false;
  for (char c : id.substr(0, kRequestIdHexDigits)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  std::string_view suffix = id.substr(kRequestIdHexDigits);
  if (suffix.size() > kMaxRequestIdSuffix) return false;
  if (!suffix.empty() && suffix.front() != '-') return false;
  for (char c : suffix) {
    if (!(c == '-' || c == 'r' || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

}  // namespace expertmesh::model
