// The request ids routers give worker requests: "rq-" and 32 lowercase hex digits (128 random
// bits from the OS), then the router's own suffixes ("-<choice>", "-r<attempt>"). Routers mint
// them and never take one from a client, so no client can name, and so abort or block, another
// client's request; workers refuse any other id on Submit and Abort, so a router bug that
// forwarded a client's id would fail loudly instead of opening that hole again.
#ifndef EXPERTMESH_MODEL_REQUEST_REQUEST_ID_H_
#define EXPERTMESH_MODEL_REQUEST_REQUEST_ID_H_

#include <string_view>

namespace expertmesh::model {

inline constexpr std::string_view kRequestIdPrefix = "rq-";
inline constexpr int kRequestIdHexDigits = 32;
// Longest suffix after the random part ("-15-r2" and similar).
inline constexpr int kMaxRequestIdSuffix = 24;

// True for "rq-" + 32 lowercase hex digits + an optional suffix of '-', digits and 'r'.
bool IsRouterRequestId(std::string_view id);

}  // namespace expertmesh::model

#endif  // EXPERTMESH_MODEL_REQUEST_REQUEST_ID_H_
