// Turning Gloo's exceptions into Status values at the module boundary.
#ifndef EXPERTMESH_WORKER_COMM_GLOO_ERROR_H_
#define EXPERTMESH_WORKER_COMM_GLOO_ERROR_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "gloo/common/error.h"

namespace expertmesh::comm {

// Thrown by stores we implement (rendezvous_store.h) through Gloo, so the precise status
// (e.g. DEADLINE_EXCEEDED naming the missing key) survives the trip through Gloo's code.
class StoreError : public gloo::IoException {
 public:
  explicit StoreError(absl::Status status)
      : gloo::IoException(std::string(status.message())), status_(std::move(status)) {}
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Runs `body` (which calls into Gloo) and returns the failure it throws as a Status whose
// message starts with `what`. Catches everything: no exception leaves this module.
template <typename Body>
absl::Status CallGloo(absl::string_view what, Body&& body);

absl::Status GlooExceptionToStatus(absl::string_view what, std::exception_ptr error);

template <typename Body>
absl::Status CallGloo(absl::string_view what, Body&& body) {
  try {
    body();
    return absl::OkStatus();
  } catch (...) {
    return GlooExceptionToStatus(what, std::current_exception());
  }
}

}  // namespace expertmesh::comm

#endif  // EXPERTMESH_WORKER_COMM_GLOO_ERROR_H_
