// Status propagation helpers. Errors travel as absl::Status / absl::StatusOr; no exceptions
// cross a module boundary.
#ifndef EXPERTMESH_COMMON_STATUS_MACROS_H_
#define EXPERTMESH_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EM_CONCAT_INNER_(a, b) a##b
#define EM_CONCAT_(a, b) EM_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                \
  do {                                       \
    ::absl::Status em_status_ = (expr);      \
    if (!em_status_.ok()) return em_status_; \
  } while (false)

// ASSIGN_OR_RETURN(auto x, StatusOrReturningCall()); returns the error if there is one.
#define ASSIGN_OR_RETURN(lhs, expr) \
  EM_ASSIGN_OR_RETURN_IMPL_(EM_CONCAT_(em_statusor_, __LINE__), lhs, expr)

#define EM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()

#endif  // EXPERTMESH_COMMON_STATUS_MACROS_H_
