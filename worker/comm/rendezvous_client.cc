#include "worker/comm/rendezvous_client.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_token.h"
#include "expertmesh/internal/v1/rendezvous.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "worker/comm/gloo_error.h"

namespace expertmesh::comm {
namespace {

namespace pb = ::expertmesh::internal::v1;

// Extra time beyond the server-side wait, so the server's precise answer arrives before the
// call's own deadline fires.
constexpr absl::Duration kReplySlack = absl::Seconds(2);

absl::Status FromGrpc(const grpc::Status& status, absl::string_view what,
                      absl::string_view target) {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
      message == "Deadline Exceeded") {
    message = "no answer from the leader (unreachable or not started?)";
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat(what, " at leader ", target, ": ", message));
}

void PrepareContext(grpc::ClientContext& context, absl::Duration timeout,
                    const InternalToken& token) {
  // Waits through "leader not listening yet" instead of failing at once.
  context.set_wait_for_ready(true);
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AddCallToken(token, context);
}

}  // namespace

RendezvousClient::RendezvousClient(std::string target, absl::Duration connect_timeout,
                                   InternalToken token)
    : target_(std::move(target)),
      connect_timeout_(connect_timeout),
      token_(std::move(token)),
      stub_(pb::Rendezvous::NewStub(
          grpc::CreateChannel(target_, grpc::InsecureChannelCredentials()))) {}

RendezvousClient::~RendezvousClient() = default;

absl::Status RendezvousClient::Set(const std::string& key, const std::string& value) {
  pb::RendezvousSetRequest request;
  request.set_key(key);
  request.set_value(value);
  pb::RendezvousSetResponse response;
  grpc::ClientContext context;
  PrepareContext(context, connect_timeout_, token_);
  return FromGrpc(stub_->Set(&context, request, &response), absl::StrCat("set '", key, "'"),
                  target_);
}

absl::StatusOr<std::string> RendezvousClient::Get(const std::string& key, absl::Duration wait) {
  pb::RendezvousGetRequest request;
  request.set_key(key);
  request.set_wait_ms(std::max<int64_t>(absl::ToInt64Milliseconds(wait), 0));
  pb::RendezvousGetResponse response;
  grpc::ClientContext context;
  PrepareContext(context, std::max(wait, connect_timeout_) + kReplySlack, token_);
  grpc::Status status = stub_->Get(&context, request, &response);
  if (!status.ok()) return FromGrpc(status, absl::StrCat("get '", key, "'"), target_);
  return std::move(*response.mutable_value());
}

absl::Status RendezvousClient::Wait(const std::vector<std::string>& keys, absl::Duration wait) {
  absl::Time deadline = absl::Now() + wait;
  for (const std::string& key : keys) {
    // At least 1 ms: a zero wait would mean "no wait" (NOT_FOUND) to the server.
    absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    absl::StatusOr<std::string> value = Get(key, left);
    if (!value.ok()) return value.status();
  }
  return absl::OkStatus();
}

GlooRendezvousStore::GlooRendezvousStore(RendezvousClient& client, std::string prefix,
                                         absl::Duration timeout)
    : client_(client), prefix_(std::move(prefix)), timeout_(timeout) {}

namespace {

// Adds "(the address of rank N: has it started?)" to errors about Gloo's per-rank keys.
[[noreturn]] void ThrowWithHint(const absl::Status& status, const std::string& key) {
  int rank = 0;
  if (absl::IsDeadlineExceeded(status) && absl::SimpleAtoi(key, &rank)) {
    throw StoreError(absl::Status(status.code(),
                                  absl::StrCat(status.message(), " (the address of rank ", rank,
                                               ": has that rank started with the same leader?)")));
  }
  throw StoreError(status);
}

}  // namespace

void GlooRendezvousStore::set(const std::string& key, const std::vector<char>& data) {
  absl::Status s = client_.Set(Key(key), std::string(data.begin(), data.end()));
  if (!s.ok()) ThrowWithHint(s, key);
}

std::vector<char> GlooRendezvousStore::get(const std::string& key) {
  absl::StatusOr<std::string> value = client_.Get(Key(key), timeout_);
  if (!value.ok()) ThrowWithHint(value.status(), key);
  return std::vector<char>(value->begin(), value->end());
}

void GlooRendezvousStore::wait(const std::vector<std::string>& keys) {
  wait(keys, absl::ToChronoMilliseconds(timeout_));
}

void GlooRendezvousStore::wait(const std::vector<std::string>& keys,
                               const std::chrono::milliseconds& timeout) {
  absl::Time deadline = absl::Now() + absl::FromChrono(timeout);
  for (const std::string& key : keys) {
    // At least 1 ms: a zero wait would mean "no wait" (NOT_FOUND) to the server.
    absl::Duration left = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    absl::StatusOr<std::string> value = client_.Get(Key(key), left);
    if (!value.ok()) ThrowWithHint(value.status(), key);
  }
}

}  // namespace expertmesh::comm
