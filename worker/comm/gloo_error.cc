#include "worker/comm/gloo_error.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gloo/common/logging.h"

namespace expertmesh::comm {

absl::Status GlooExceptionToStatus(absl::string_view what, std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const StoreError& e) {
    return absl::Status(e.status().code(), absl::StrCat(what, ": ", e.status().message()));
  } catch (const gloo::IoException& e) {
    // Gloo words every timeout "Timed out ..." (pair.cc, unbound_buffer.cc, context.cc).
    std::string message = absl::StrCat(what, ": ", e.what());
    if (absl::StrContains(absl::AsciiStrToLower(e.what()), "timed out")) {
      return absl::DeadlineExceededError(message);
    }
    return absl::UnavailableError(message);
  } catch (const gloo::EnforceNotMet& e) {
    return absl::InternalError(absl::StrCat(what, ": gloo check failed: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat(what, ": unknown exception"));
  }
}

}  // namespace expertmesh::comm
