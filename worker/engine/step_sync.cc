#include "worker/engine/step_sync.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace expertmesh::engine {
namespace {

using kernels::Tensor;

constexpr int32_t kMagic = 0x454d5350;  // "EMSP"

void Put(std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void PutTensor(std::string& out, const Tensor& t) {
  out.append(static_cast<const char*>(t.raw_data()), t.nbytes());
}

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  absl::StatusOr<int32_t> Next(std::string_view what) {
    if (pos_ + 4 > bytes_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step message: truncated at ", std::string(what)));
    }
    int32_t v;
    std::memcpy(&v, bytes_.data() + pos_, 4);
    pos_ += 4;
    return v;
  }
  absl::StatusOr<Tensor> NextTensor(std::string_view what, std::initializer_list<int64_t> shape) {
    for (int64_t d : shape) {
      if (d < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("step message: negative size for ", std::string(what)));
      }
    }
    ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(DType::kI32, shape));
    if (pos_ + t.nbytes() > bytes_.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("step message: truncated in ", std::string(what)));
    }
    std::memcpy(t.raw_data(), bytes_.data() + pos_, t.nbytes());
    pos_ += t.nbytes();
    return t;
  }
  bool done() const { return pos_ == bytes_.size(); }

 private:
  const std::string& bytes_;
  size_t pos_ = 0;
};

}  // namespace

std::string EncodeStep(const std::vector<kv::KvBlockCopy>& copies,
                       const models::ForwardBatch& batch) {
  const int64_t n = batch.token_ids.dim(0);
  const int64_t s = batch.attention.seq_lens.dim(0);
  const int64_t max_blocks = batch.attention.block_tables.dim(1);
  const int64_t m = batch.logit_rows.dim(0);
  std::string out;
  out.reserve(4 * (8 + 2 * copies.size() + 3 * n + 2 * s + 1 + s * max_blocks + m));
  Put(out, kMagic);
  Put(out, static_cast<int32_t>(StepMessage::Kind::kStep));
  Put(out, static_cast<int32_t>(copies.size()));
  Put(out, static_cast<int32_t>(n));
  Put(out, static_cast<int32_t>(s));
  Put(out, static_cast<int32_t>(max_blocks));
  Put(out, static_cast<int32_t>(m));
  for (const kv::KvBlockCopy& c : copies) {
    Put(out, c.src);
    Put(out, c.dst);
  }
  PutTensor(out, batch.token_ids);
  PutTensor(out, batch.positions);
  PutTensor(out, batch.slot_mapping);
  PutTensor(out, batch.attention.query_start);
  PutTensor(out, batch.attention.seq_lens);
  PutTensor(out, batch.attention.block_tables);
  PutTensor(out, batch.logit_rows);
  return out;
}

std::string EncodeStop() {
  std::string out;
  Put(out, kMagic);
  Put(out, static_cast<int32_t>(StepMessage::Kind::kStop));
  return out;
}

std::string EncodeHeartbeat() {
  std::string out;
  Put(out, kMagic);
  Put(out, static_cast<int32_t>(StepMessage::Kind::kHeartbeat));
  return out;
}

std::string EncodeGeometry(const KvGeometry& g) {
  std::string out;
  Put(out, kMagic);
  Put(out, static_cast<int32_t>(StepMessage::Kind::kGeometry));
  Put(out, g.num_blocks);
  Put(out, g.block_size);
  return out;
}

absl::StatusOr<StepMessage> DecodeStepMessage(const std::string& bytes) {
  Reader r(bytes);
  ASSIGN_OR_RETURN(int32_t magic, r.Next("magic"));
  if (magic != kMagic) return absl::InvalidArgumentError("step message: bad magic");
  ASSIGN_OR_RETURN(int32_t kind, r.Next("kind"));
  StepMessage msg;
  switch (static_cast<StepMessage::Kind>(kind)) {
    case StepMessage::Kind::kStop:
    case StepMessage::Kind::kHeartbeat:
      msg.kind = static_cast<StepMessage::Kind>(kind);
      break;
    case StepMessage::Kind::kGeometry: {
      msg.kind = StepMessage::Kind::kGeometry;
      ASSIGN_OR_RETURN(msg.geometry.num_blocks, r.Next("num_blocks"));
      ASSIGN_OR_RETURN(msg.geometry.block_size, r.Next("block_size"));
      break;
    }
    case StepMessage::Kind::kStep: {
      msg.kind = StepMessage::Kind::kStep;
      ASSIGN_OR_RETURN(int32_t copies, r.Next("copies"));
      ASSIGN_OR_RETURN(int32_t n, r.Next("tokens"));
      ASSIGN_OR_RETURN(int32_t s, r.Next("sequences"));
      ASSIGN_OR_RETURN(int32_t max_blocks, r.Next("max_blocks"));
      ASSIGN_OR_RETURN(int32_t m, r.Next("logit rows"));
      if (copies < 0 || n < 1 || s < 1 || max_blocks < 0 || m < 1) {
        return absl::InvalidArgumentError("step message: bad sizes");
      }
      for (int32_t i = 0; i < copies; ++i) {
        kv::KvBlockCopy c;
        ASSIGN_OR_RETURN(c.src, r.Next("copy src"));
        ASSIGN_OR_RETURN(c.dst, r.Next("copy dst"));
        msg.copies.push_back(c);
      }
      models::ForwardBatch& b = msg.batch;
      ASSIGN_OR_RETURN(b.token_ids, r.NextTensor("token_ids", {n}));
      ASSIGN_OR_RETURN(b.positions, r.NextTensor("positions", {n}));
      ASSIGN_OR_RETURN(b.slot_mapping, r.NextTensor("slot_mapping", {n}));
      ASSIGN_OR_RETURN(b.attention.query_start, r.NextTensor("query_start", {s + 1}));
      ASSIGN_OR_RETURN(b.attention.seq_lens, r.NextTensor("seq_lens", {s}));
      ASSIGN_OR_RETURN(b.attention.block_tables, r.NextTensor("block_tables", {s, max_blocks}));
      ASSIGN_OR_RETURN(b.logit_rows, r.NextTensor("logit_rows", {m}));
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("step message: unknown kind ", kind));
  }
  if (!r.done()) return absl::InvalidArgumentError("step message: trailing bytes");
  return msg;
}

absl::Status PublishToGroup(comm::Communicator& comm, std::string bytes) {
  return comm.BroadcastBytes(bytes, /*root=*/0);
}

absl::StatusOr<StepMessage> ReceiveFromLeader(comm::Communicator& comm) {
  std::string bytes;
  RETURN_IF_ERROR(comm.BroadcastBytes(bytes, /*root=*/0));
  return DecodeStepMessage(bytes);
}

absl::Status CopyKvBlocks(kernels::Backend& backend, models::KvCacheTensors& kv,
                          const std::vector<kv::KvBlockCopy>& copies) {
  if (copies.empty()) return absl::OkStatus();
  const int32_t bs = kv.block_size;
  const int64_t nc = static_cast<int64_t>(copies.size());
  // The destination slots of every copy, built on the host and copied to the backend once.
  std::vector<int32_t> host_slots(static_cast<size_t>(nc * bs));
  for (int64_t i = 0; i < nc; ++i) {
    const kv::KvBlockCopy& c = copies[i];
    if (c.src < 0 || c.src >= kv.num_blocks || c.dst < 0 || c.dst >= kv.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("kv block copy ", c.src, " -> ", c.dst,
                                                     " outside ", kv.num_blocks, " blocks"));
    }
    for (int32_t j = 0; j < bs; ++j) host_slots[i * bs + j] = c.dst * bs + j;
  }
  ASSIGN_OR_RETURN(Tensor all_slots, backend.Allocate(DType::kI32, {nc * bs}));
  RETURN_IF_ERROR(backend.CopyFromHost(host_slots.data(), all_slots));
  for (int64_t i = 0; i < nc; ++i) {
    const kv::KvBlockCopy& c = copies[i];
    ASSIGN_OR_RETURN(Tensor slots, all_slots.Slice(i * bs, (i + 1) * bs));
    for (size_t l = 0; l < kv.k.size(); ++l) {
      Tensor& k = kv.k[l];
      Tensor& v = kv.v[l];
      ASSIGN_OR_RETURN(Tensor ks, k.Slice(c.src, c.src + 1));
      ASSIGN_OR_RETURN(Tensor vs, v.Slice(c.src, c.src + 1));
      ASSIGN_OR_RETURN(ks, ks.Reshape({bs, k.dim(2), k.dim(3)}));
      ASSIGN_OR_RETURN(vs, vs.Reshape({bs, v.dim(2), v.dim(3)}));
      RETURN_IF_ERROR(backend.KvCacheWrite(ks, vs, slots, k, v));
    }
  }
  return absl::OkStatus();
}

}  // namespace expertmesh::engine
