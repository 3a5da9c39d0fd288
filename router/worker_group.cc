#include "router/worker_group.h"

#include "absl/strings/str_cat.h"
#include "common/grpc_token.h"

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
  bool healthy = health_status.ok() &&
                 health_response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  internal_api::LoadReport report;
  if (healthy) {
    grpc::ClientContext load_context;
    load_context.set_deadline(deadline);
    AddCallToken(token_, load_context);
    healthy = worker_->GetLoad(&load_context, internal_api::GetLoadRequest(), &report).ok();
  }
  absl::MutexLock lock(&mu_);
  if (healthy) {
    missed_probes_ = 0;
    healthy_ = true;
  } else {
    ++missed_probes_;
    // An answer of NOT_SERVING (draining, a broken group) takes the group out at once. A probe
    // that got no answer in time takes it out only on the kMissedProbesToMarkDown-th miss in a
    // row, so one slow answer from a loaded host does not take a healthy group out; a group
    // whose streams fail is marked down at once by MarkFailed.
    if (health_status.ok() || missed_probes_ >= kMissedProbesToMarkDown) healthy_ = false;
  }
  if (healthy) {
    auto cached = std::make_shared<absl::flat_hash_set<uint64_t>>(
        report.cached_prefix_hashes().begin(), report.cached_prefix_hashes().end());
    cached_ = std::move(cached);
    load_ = std::move(report);
    has_report_ = true;
  }
  return healthy_;
}

void WorkerGroup::MarkFailed() {
  absl::MutexLock lock(&mu_);
  healthy_ = false;
  ++failures_;
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
