#include "tests/router/fake_worker.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/health_check_service_interface.h"
#include "model/plan/kv_block_hash.h"

namespace expertmesh::router::testing {

absl::StatusOr<std::unique_ptr<FakeWorker>> FakeWorker::Start(const std::string& address,
                                                              FakeWorkerOptions options) {
  std::unique_ptr<FakeWorker> w(new FakeWorker(std::move(options)));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &w->port_);
  builder.RegisterService(w.get());
  w->server_ = builder.BuildAndStart();
  if (w->server_ == nullptr || w->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("fake worker cannot listen on ", address));
  }
  return w;
}

FakeWorker::~FakeWorker() { Shutdown(); }

void FakeWorker::Shutdown() {
  if (!stopping_.HasBeenNotified()) stopping_.Notify();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }
}

void FakeWorker::SetHealthy(bool healthy) {
  if (server_) server_->GetHealthCheckService()->SetServingStatus(healthy);
}

void FakeWorker::Changed() {
  absl::MutexLock lock(&mu_);
  ++version_;
}

int FakeWorker::active() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

uint32_t FakeWorker::free_kv_blocks() const {
  absl::MutexLock lock(&mu_);
  return options_.total_kv_blocks - used_blocks_;
}

iv1::SubmitRequest FakeWorker::last_request() const {
  absl::MutexLock lock(&mu_);
  return last_;
}

bool FakeWorker::WaitFor(const std::function<bool(const FakeWorker&)>& fn,
                         absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  while (true) {
    const uint64_t seen = version_;
    mu_.Unlock();
    const bool ok = fn(*this);
    mu_.Lock();
    if (ok) return true;
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&changed), deadline)) return fn(*this);
  }
}

iv1::PromptTokenLogprob FakePromptLogprob(const std::vector<int32_t>& prompt, size_t i,
                                          uint32_t k) {
  iv1::PromptTokenLogprob p;
  p.set_token_id(prompt[i]);
  p.set_logprob(-0.125f * static_cast<float>(i));
  p.set_rank(1 + static_cast<int32_t>(i % 3));
  for (uint32_t j = 0; j < k; ++j) {
    iv1::TopToken* top = p.add_top();
    top->set_token_id(static_cast<int32_t>(j + 1));
    top->set_logprob(-0.5f * static_cast<float>(j) - 0.25f);
  }
  return p;
}

grpc::Status FakeWorker::Submit(grpc::ServerContext* context, const iv1::SubmitRequest* request,
                                grpc::ServerWriter<iv1::SubmitResponse>* writer) {
  submitted_.fetch_add(1);
  const std::vector<int32_t> prompt(request->prompt_token_ids().begin(),
                                    request->prompt_token_ids().end());
  const uint32_t blocks =
      (static_cast<uint32_t>(prompt.size()) + request->max_tokens() + options_.kv_block_size - 1) /
      options_.kv_block_size;
  // Hashed under the request's salt, as the real worker's prefix cache does.
  const std::vector<uint64_t> hashes = model::HashFullKvBlocks(
      prompt, options_.kv_block_size, SIZE_MAX, model::KvRootHash(request->cache_salt()));
  uint32_t cached_tokens = 0;
  {
    absl::MutexLock lock(&mu_);
    last_ = *request;
    ++active_;
    used_blocks_ += blocks;
    ++version_;
    for (uint64_t h : hashes) {
      if (!cached_.contains(h)) break;
      cached_tokens += options_.kv_block_size;
    }
    for (uint64_t h : hashes) {
      if (cached_.insert(h).second) cached_order_.insert(cached_order_.begin(), h);
    }
  }
  auto release = [&] {
    absl::MutexLock lock(&mu_);
    --active_;
    used_blocks_ -= blocks;
    ++version_;
  };
  if (fail_before_first_.load() > 0 && fail_before_first_.fetch_sub(1) > 0) {
    release();
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake worker: injected failure");
  }
  const int die_after = die_after_.load();
  const absl::flat_hash_set<int32_t> stop_ids(request->stop_token_ids().begin(),
                                              request->stop_token_ids().end());
  for (uint32_t i = 0; i < request->max_tokens(); ++i) {
    const int64_t delay = token_delay_ns_.load();
    if (delay > 0 && stopping_.WaitForNotificationWithTimeout(absl::Nanoseconds(delay))) {
      release();
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake worker: shutting down");
    }
    if (context->IsCancelled()) {
      cancelled_.fetch_add(1);
      release();
      return grpc::Status::CANCELLED;
    }
    if (die_after >= 0 && static_cast<int>(i) >= die_after) {
      release();
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake worker: rank died");
    }
    iv1::SubmitResponse response;
    if (i == 0 && request->has_prompt_logprobs()) {
      for (size_t p = 1; p < prompt.size(); ++p) {
        *response.add_prompt_logprobs() = FakePromptLogprob(prompt, p, request->prompt_logprobs());
      }
    } else if (i == 0) {
      response.set_cached_prompt_tokens(cached_tokens);
    }
    iv1::GeneratedToken* t = response.add_tokens();
    const int32_t id = prompt[i % prompt.size()];
    t->set_token_id(id);
    if (request->sampling().logprobs()) t->set_logprob(-0.25f * static_cast<float>(i % 4));
    for (uint32_t k = 0; k < request->sampling().top_logprobs(); ++k) {
      iv1::TopToken* top = t->add_top();
      top->set_token_id(k == 0 ? id : static_cast<int32_t>(k));
      top->set_logprob(-static_cast<float>(k));
    }
    const bool eos = stop_ids.contains(id);
    if (eos)
      response.set_stop_reason(iv1::STOP_REASON_EOS);
    else if (i + 1 == request->max_tokens())
      response.set_stop_reason(iv1::STOP_REASON_MAX_TOKENS);
    if (!writer->Write(response)) {
      cancelled_.fetch_add(1);
      release();
      return grpc::Status::CANCELLED;
    }
    if (eos) break;
  }
  release();
  return grpc::Status::OK;
}

grpc::Status FakeWorker::Abort(grpc::ServerContext*, const iv1::AbortRequest*,
                               iv1::AbortResponse* response) {
  aborts_.fetch_add(1);
  Changed();
  response->set_aborted(false);
  return grpc::Status::OK;
}

grpc::Status FakeWorker::GetLoad(grpc::ServerContext*, const iv1::GetLoadRequest*,
                                 iv1::LoadReport* report) {
  absl::MutexLock lock(&mu_);
  report->set_queued_requests(reported_queue_.load());
  report->set_running_requests(static_cast<uint32_t>(active_));
  report->set_free_kv_blocks(options_.total_kv_blocks - used_blocks_);
  report->set_total_kv_blocks(options_.total_kv_blocks);
  report->set_kv_block_size(options_.kv_block_size);
  for (size_t i = 0; i < cached_order_.size() && i < 4096; ++i) {
    report->add_cached_prefix_hashes(cached_order_[i]);
  }
  report->set_model(options_.model);
  report->set_tp(1);
  report->set_ep(1);
  return grpc::Status::OK;
}

}  // namespace expertmesh::router::testing
