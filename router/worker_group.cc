#include "router/worker_group.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_token.h"
#include "common/logging.h"

namespace expertmesh::router {

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

WorkerGroup::WorkerGroup(std::string address, const WorkerConnectOptions& connect)
    : address_(std::move(address)), token_(connect.token) {
  grpc::ChannelArguments args;
  // Reconnect quickly when a group comes back; the health poll is the real detector.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  if (!connect.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(connect.tls_server_name);
  }
  channel_ = grpc::CreateCustomChannel(
      address_, connect.credentials ? connect.credentials : grpc::InsecureChannelCredentials(),
      args);
  worker_ = internal_api::Worker::NewStub(channel_);
  health_ = grpc::health::v1::Health::NewStub(channel_);
}

absl::Status WorkerGroup::Submit(
    const internal_api::SubmitRequest& request, grpc::ClientContext* context,
    const std::function<bool(const internal_api::SubmitResponse&)>& on_message) {
  AddCallToken(token_, *context);
  std::unique_ptr<grpc::ClientReader<internal_api::SubmitResponse>> reader =
      worker_->Submit(context, request);
  internal_api::SubmitResponse response;
  bool stopped_early = false;
  while (reader->Read(&response)) {
    if (!on_message(response)) {
      stopped_early = true;
      context->TryCancel();
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped_early) return absl::OkStatus();
  return FromGrpc(status);
}

absl::Status WorkerGroup::Abort(const std::string& request_id, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AddCallToken(token_, context);
  internal_api::AbortRequest request;
  request.set_request_id(request_id);
  internal_api::AbortResponse response;
  return FromGrpc(worker_->Abort(&context, request, &response));
}

bool WorkerGroup::Probe(absl::Duration timeout) {
  uint64_t failures_before = 0;
  {
    absl::MutexLock lock(&mu_);
    failures_before = failures_;
  }
  const auto deadline = absl::ToChronoTime(absl::Now() + timeout);
  grpc::ClientContext health_context;
  health_context.set_deadline(deadline);
  // Wait for a reconnect within the probe timeout: a group that just came back is usually
  // still in connection backoff, and failing fast would keep it out for another round.
  health_context.set_wait_for_ready(true);
  grpc::health::v1::HealthCheckRequest health_request;
  grpc::health::v1::HealthCheckResponse health_response;
  const grpc::Status health_status =
      health_->Check(&health_context, health_request, &health_response);
  std::string failure;  // why this probe failed; empty when it passed
  if (!health_status.ok()) {
    failure = absl::StrCat("health check failed: ", FromGrpc(health_status).ToString());
  } else if (health_response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    failure = absl::StrCat(
        "health check answered ",
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(health_response.status()));
  }
  internal_api::LoadReport report;
  if (failure.empty()) {
    grpc::ClientContext load_context;
    load_context.set_deadline(deadline);
    AddCallToken(token_, load_context);
    const grpc::Status load =
        worker_->GetLoad(&load_context, internal_api::GetLoadRequest(), &report);
    if (!load.ok()) failure = absl::StrCat("load report failed: ", FromGrpc(load).ToString());
  }
  std::string change;
  bool healthy = false;
  {
    absl::MutexLock lock(&mu_);
    if (failure.empty()) {
      missed_probes_ = 0;
      // A stream failed while this probe was out: its answer may predate the failure, so the
      // next probe decides (otherwise the group would flap down, up, down in the log).
      if (failures_ == failures_before) {
        change = SetUpLocked();
        auto cached = std::make_shared<absl::flat_hash_set<uint64_t>>(
            report.cached_prefix_hashes().begin(), report.cached_prefix_hashes().end());
        cached_ = std::move(cached);
        load_ = std::move(report);
        has_report_ = true;
      }
    } else {
      ++missed_probes_;
      // An answer of NOT_SERVING (draining, a broken group) takes the group out at once. A
      // probe that got no answer in time takes it out only on the kMissedProbesToMarkDown-th
      // miss in a row, so one slow answer from a loaded host does not take a healthy group
      // out; a group whose streams fail is marked down at once by MarkFailed.
      if (health_status.ok()) {
        change = SetDownLocked(failure);
      } else if (missed_probes_ >= kMissedProbesToMarkDown) {
        change = SetDownLocked(absl::StrCat(failure, " (", missed_probes_, " probes in a row)"));
      }
    }
    healthy = healthy_;
  }
  if (!change.empty()) {
    if (healthy) {
      EM_LOG_INFO("{}", change);
    } else {
      EM_LOG_WARN("{}", change);
    }
  }
  return healthy;
}

void WorkerGroup::MarkFailed(const absl::Status& why) {
  std::string change;
  {
    absl::MutexLock lock(&mu_);
    ++failures_;
    change = SetDownLocked(absl::StrCat("a stream failed: ", why.ToString()));
  }
  if (!change.empty()) EM_LOG_WARN("{}", change);
}

std::string WorkerGroup::SetUpLocked() {
  healthy_ = true;
  if (reported_ == Reported::kUp) return "";
  const Reported was = std::exchange(reported_, Reported::kUp);
  if (was == Reported::kUnknown) return absl::StrCat("router: worker group ", address_, " is up");
  return absl::StrCat(
      "router: worker group ", address_, " is up again after ",
      absl::FormatDuration(absl::Trunc(absl::Now() - down_since_, absl::Milliseconds(1))),
      " down (", down_reason_, ")");
}

std::string WorkerGroup::SetDownLocked(const std::string& reason) {
  healthy_ = false;
  has_report_ = false;
  load_ = internal_api::LoadReport();
  cached_.reset();
  if (reported_ == Reported::kDown) return "";
  reported_ = Reported::kDown;
  down_since_ = absl::Now();
  down_reason_ = reason;
  return absl::StrCat("router: worker group ", address_, " is down: ", reason,
                      "; routing to the other groups until it passes a health check");
}

GroupState WorkerGroup::State() const {
  GroupState state;
  {
    absl::MutexLock lock(&mu_);
    state.healthy = healthy_;
    state.has_report = has_report_;
    state.load = load_;
    state.cached_prefixes = cached_;
    state.failures = failures_;
  }
  state.router_inflight = static_cast<uint32_t>(std::max(0, inflight_.load()));
  return state;
}

}  // namespace expertmesh::router
