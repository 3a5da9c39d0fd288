// FakeDeviceBackend: a test-only kernels::Backend that claims to be a CUDA device while running
// every op on a CpuBackend. Its tensors are host memory tagged Device::kCuda, so any tensor the
// forward pass forgot to move to the backend (a host weight, a host batch tensor, a host scratch
// buffer) fails the Backend's device checks exactly as it would on a GPU, and results must equal
// the plain CPU run bit for bit (same kernels, same order).
//
// What it cannot catch: a host read of a backend tensor's bytes (they are host memory here).
// Counters tell tests how the model used the copy API (e.g. that a steady-state step does not
// re-upload constants, and that weights went through PrepareWeight).
//
// With set_graphs(true) it also stands in for CUDA graphs (Backend::RunGraph): the first call
// with a key "records" (runs body, refusing Allocate, copies, Synchronize and PrepareWeight as a
// capture would, and logs every tensor each op touches: address, dtype, shape); later calls
// "replay" by running body again under the same refusals and failing unless it touches exactly
// the recorded tensors in the recorded order, which is what a real replay would do.
#ifndef EXPERTMESH_TESTS_UTIL_FAKE_DEVICE_BACKEND_H_
#define EXPERTMESH_TESTS_UTIL_FAKE_DEVICE_BACKEND_H_

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace expertmesh::testing {

struct FakeDeviceCounters {
  uint64_t allocations = 0;
  uint64_t copies_from_host = 0, bytes_from_host = 0;
  uint64_t copies_to_host = 0, bytes_to_host = 0;
  uint64_t zeros = 0;
  uint64_t weights = 0, weight_bytes = 0;
  uint64_t synchronizes = 0;
  uint64_t graph_recordings = 0, graph_replays = 0;
};

class FakeDeviceBackend final : public kernels::Backend {
 public:
  // Errors: those of CpuBackend::Create.
  static absl::StatusOr<std::unique_ptr<FakeDeviceBackend>> Create(
      const kernels::cpu::CpuBackendOptions& options = {.num_threads = 1}) {
    absl::StatusOr<std::unique_ptr<kernels::cpu::CpuBackend>> cpu =
        kernels::cpu::CpuBackend::Create(options);
    if (!cpu.ok()) return cpu.status();
    return std::unique_ptr<FakeDeviceBackend>(new FakeDeviceBackend(std::move(*cpu)));
  }

  std::string_view Name() const override { return "fake-cuda"; }
  kernels::Device device() const override { return kernels::Device::kCuda; }
  bool Supports(kernels::Op op) const override { return cpu_->Supports(op); }
  bool SupportsFp8Weights() const override { return cpu_->SupportsFp8Weights(); }
  // q4 weights as the CPU backend takes them, or (set_q4_weights(true)) always: for loader and
  // memory tests that only need the weights prepared, not multiplied.
  bool SupportsQ4Weights() const override { return q4_weights_ || cpu_->SupportsQ4Weights(); }
  void set_q4_weights(bool on) { q4_weights_ = on; }

  absl::StatusOr<kernels::Tensor> Allocate(DType dtype, std::span<const int64_t> shape) override {
    if (absl::Status s = RefuseInGraph("allocate"); !s.ok()) return s;
    absl::StatusOr<kernels::Tensor> host = kernels::Tensor::Empty(dtype, shape);
    if (!host.ok()) return host.status();
    ++counters_.allocations;
    return Tag(*host, kernels::Device::kCuda);
  }
  using kernels::Backend::Allocate;
  absl::Status SetStream(kernels::Stream) override { return absl::OkStatus(); }
  absl::Status Synchronize() override {
    if (absl::Status s = RefuseInGraph("synchronize"); !s.ok()) return s;
    ++counters_.synchronizes;
    return absl::OkStatus();
  }

  absl::Status CopyFromHost(const void* host, kernels::Tensor& dst) override {
    if (absl::Status s = RefuseInGraph("copy_from_host"); !s.ok()) return s;
    if (absl::Status s = Check("copy_from_host", dst); !s.ok()) return s;
    if (dst.nbytes() > 0) std::memcpy(dst.raw_data(), host, dst.nbytes());
    ++counters_.copies_from_host;
    counters_.bytes_from_host += dst.nbytes();
    return absl::OkStatus();
  }
  absl::Status CopyToHost(const kernels::Tensor& src, void* host) override {
    if (absl::Status s = RefuseInGraph("copy_to_host"); !s.ok()) return s;
    if (absl::Status s = Check("copy_to_host", src); !s.ok()) return s;
    if (src.nbytes() > 0) std::memcpy(host, src.raw_data(), src.nbytes());
    ++counters_.copies_to_host;
    counters_.bytes_to_host += src.nbytes();
    return absl::OkStatus();
  }
  absl::Status Zero(kernels::Tensor& t) override {
    if (absl::Status s = Check("zero", t); !s.ok()) return s;
    (void)Cpu(t);  // logged inside a graph (a memset node)
    if (t.nbytes() > 0) std::memset(t.raw_data(), 0, t.nbytes());
    ++counters_.zeros;
    return absl::OkStatus();
  }
  // Always a copy, as a GPU backend makes one: the host tensor may be released afterwards.
  absl::StatusOr<kernels::Tensor> PrepareWeight(const kernels::Tensor& host) override {
    if (absl::Status s = RefuseInGraph("prepare_weight"); !s.ok()) return s;
    if (!host.defined() || host.device() != kernels::Device::kCpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("prepare_weight: ", host.DebugString(), " is not a host tensor"));
    }
    absl::StatusOr<kernels::Tensor> dev = Allocate(host.dtype(), host.shape());
    if (!dev.ok()) return dev.status();
    if (host.nbytes() > 0) std::memcpy(dev->raw_data(), host.raw_data(), host.nbytes());
    ++counters_.weights;
    counters_.weight_bytes += host.nbytes();
    if (const kernels::BlockScales* scales = host.block_scales(); scales != nullptr) {
      // The scales move to the device with their weight, as a GPU backend would copy them.
      absl::StatusOr<kernels::Tensor> grid = PrepareWeight(*scales->scales);
      if (!grid.ok()) return grid.status();
      kernels::BlockScales moved = *scales;
      moved.scales = std::make_shared<const kernels::Tensor>(*std::move(grid));
      if (scales->zero_points != nullptr) {
        absl::StatusOr<kernels::Tensor> zeros = PrepareWeight(*scales->zero_points);
        if (!zeros.ok()) return zeros.status();
        moved.zero_points = std::make_shared<const kernels::Tensor>(*std::move(zeros));
      }
      // The column order stays a host tensor (kernels::BlockScales); it is counted all the same.
      if (scales->column_order != nullptr) counters_.weight_bytes += scales->column_order->nbytes();
      return dev->WithBlockScales(std::move(moved));
    }
    return dev;
  }

  void set_graphs(bool on) { graphs_ = on; }
  bool SupportsGraphs() const override { return graphs_; }
  absl::Status RunGraph(int64_t key, const std::function<absl::Status()>& body) override {
    if (!graphs_) return body();
    auto it = recordings_.find(key);
    const bool replay = it != recordings_.end();
    log_.clear();
    in_graph_ = true;
    absl::Status s = body();
    in_graph_ = false;
    if (!s.ok()) return s;
    if (!replay) {
      recordings_.emplace(key, std::move(log_));
      ++counters_.graph_recordings;
      return absl::OkStatus();
    }
    if (log_ != it->second) {
      return absl::FailedPreconditionError(absl::StrCat(
          "graph ", key, ": the replayed step touches other tensors than the recorded one (",
          log_.size(), " tensor uses, recorded ", it->second.size(), ")"));
    }
    ++counters_.graph_replays;
    return absl::OkStatus();
  }

  const FakeDeviceCounters& counters() const { return counters_; }
  void ResetCounters() { counters_ = {}; }

 protected:
  absl::Status DoEmbedding(const kernels::Tensor& table, const kernels::Tensor& ids,
                           kernels::Tensor& out) override {
    kernels::Tensor o = Cpu(out);
    return cpu_->Embedding(Cpu(table), Cpu(ids), o);
  }
  absl::Status DoRmsNorm(const kernels::Tensor& x, kernels::Tensor* residual,
                         const kernels::Tensor& weight, float eps, kernels::Tensor& out) override {
    kernels::Tensor o = Cpu(out);
    kernels::Tensor r = residual != nullptr ? Cpu(*residual) : kernels::Tensor();
    return cpu_->RmsNorm(Cpu(x), residual != nullptr ? &r : nullptr, Cpu(weight), eps, o);
  }
  absl::Status DoRope(const kernels::Tensor& cos_sin, const kernels::Tensor& positions,
                      const kernels::RopeParams& params, kernels::Tensor& q,
                      kernels::Tensor& k) override {
    kernels::Tensor qc = Cpu(q), kc = Cpu(k);
    return cpu_->Rope(Cpu(cos_sin), Cpu(positions), params, qc, kc);
  }
  absl::Status DoLinear(const kernels::Tensor& x, const kernels::Tensor& weight,
                        const kernels::Tensor& bias, kernels::Tensor& out) override {
    kernels::Tensor o = Cpu(out);
    return cpu_->Linear(Cpu(x), Cpu(weight), Cpu(bias), o);
  }
  absl::Status DoSiluMul(const kernels::Tensor& gate_up, kernels::Tensor& out) override {
    kernels::Tensor o = Cpu(out);
    return cpu_->SiluMul(Cpu(gate_up), o);
  }
  absl::Status DoMoeTopK(const kernels::Tensor& logits, const kernels::Tensor& bias,
                         const kernels::MoeRoutingParams& params, kernels::Tensor& topk_ids,
                         kernels::Tensor& topk_weights) override {
    kernels::Tensor ids = Cpu(topk_ids), w = Cpu(topk_weights);
    return cpu_->MoeTopK(Cpu(logits), Cpu(bias), params, ids, w);
  }
  absl::Status DoMoePermute(const kernels::Tensor& x, const kernels::Tensor& topk_ids,
                            int num_experts, kernels::Tensor& out_x,
                            kernels::Tensor& expert_offsets,
                            kernels::Tensor& sorted_slots) override {
    kernels::Tensor ox = Cpu(out_x), off = Cpu(expert_offsets), slots = Cpu(sorted_slots);
    return cpu_->MoePermute(Cpu(x), Cpu(topk_ids), num_experts, ox, off, slots);
  }
  absl::Status DoMoeGroupedLinear(const kernels::Tensor& x, const kernels::Tensor& expert_offsets,
                                  std::span<const kernels::Tensor> weights,
                                  kernels::Tensor& out) override {
    std::vector<kernels::Tensor> w;
    w.reserve(weights.size());
    for (const kernels::Tensor& t : weights) w.push_back(Cpu(t));
    kernels::Tensor o = Cpu(out);
    return cpu_->MoeGroupedLinear(Cpu(x), Cpu(expert_offsets), w, o);
  }
  absl::Status DoMoeCombine(const kernels::Tensor& y, const kernels::Tensor& sorted_slots,
                            const kernels::Tensor& topk_ids, const kernels::Tensor& topk_weights,
                            const kernels::Tensor& shared, const kernels::Tensor& shared_gate,
                            kernels::Tensor& out) override {
    kernels::Tensor o = Cpu(out);
    return cpu_->MoeCombine(Cpu(y), Cpu(sorted_slots), Cpu(topk_ids), Cpu(topk_weights),
                            Cpu(shared), Cpu(shared_gate), o);
  }
  absl::Status DoKvCacheWrite(const kernels::Tensor& k, const kernels::Tensor& v,
                              const kernels::Tensor& slot_mapping, kernels::Tensor& k_cache,
                              kernels::Tensor& v_cache) override {
    kernels::Tensor kc = Cpu(k_cache), vc = Cpu(v_cache);
    return cpu_->KvCacheWrite(Cpu(k), Cpu(v), Cpu(slot_mapping), kc, vc);
  }
  absl::Status DoPagedAttention(const kernels::Tensor& q, const kernels::Tensor& k_cache,
                                const kernels::Tensor& v_cache,
                                const kernels::PagedAttentionBatch& batch, float scale,
                                kernels::Tensor& out) override {
    kernels::PagedAttentionBatch b{Cpu(batch.query_start), Cpu(batch.seq_lens),
                                   Cpu(batch.block_tables)};
    kernels::Tensor o = Cpu(out);
    return cpu_->PagedAttention(Cpu(q), Cpu(k_cache), Cpu(v_cache), b, scale, o);
  }
  absl::Status DoSampleTokens(const kernels::Tensor& logits,
                              std::span<const kernels::SamplingRow> params,
                              kernels::Tensor& tokens) override {
    kernels::Tensor t = Cpu(tokens);
    return cpu_->SampleTokens(Cpu(logits), params, t);
  }
  absl::Status DoMaskLogits(const kernels::Tensor& masks, std::span<const int32_t> rows,
                            kernels::Tensor& logits) override {
    kernels::Tensor l = Cpu(logits);
    return cpu_->MaskLogits(Cpu(masks), rows, l);
  }

 private:
  explicit FakeDeviceBackend(std::unique_ptr<kernels::cpu::CpuBackend> cpu)
      : cpu_(std::move(cpu)) {}

  // The same bytes under another device tag (undefined stays undefined). The view keeps the
  // original tensor's buffer alive.
  static kernels::Tensor Tag(const kernels::Tensor& t, kernels::Device device) {
    if (!t.defined()) return t;
    auto keep = std::make_shared<kernels::Tensor>(t);
    kernels::Tensor view =
        *kernels::Tensor::View(t.raw_data(), t.dtype(), t.shape(), device, std::move(keep));
    if (const kernels::BlockScales* scales = t.block_scales(); scales != nullptr) {
      kernels::BlockScales retagged = *scales;
      retagged.scales = std::make_shared<const kernels::Tensor>(Tag(*scales->scales, device));
      if (scales->zero_points != nullptr) {
        retagged.zero_points =
            std::make_shared<const kernels::Tensor>(Tag(*scales->zero_points, device));
      }
      return *view.WithBlockScales(std::move(retagged));
    }
    return view;
  }
  // Ops have already checked that every tensor is a kCuda one (Backend's checks). Inside a
  // graph, every tensor an op touches is logged.
  kernels::Tensor Cpu(const kernels::Tensor& t) {
    if (in_graph_) {
      TensorUse use{t.defined() ? t.raw_data() : nullptr, t.dtype(), {}};
      if (t.defined()) use.shape.assign(t.shape().begin(), t.shape().end());
      log_.push_back(std::move(use));
    }
    return Tag(t, kernels::Device::kCpu);
  }
  absl::Status RefuseInGraph(const char* what) const {
    if (!in_graph_) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(what, " inside a recorded graph (Backend::RunGraph)"));
  }

  struct TensorUse {
    const void* data;
    DType dtype;
    std::vector<int64_t> shape;
    bool operator==(const TensorUse&) const = default;
  };

  static absl::Status Check(const char* op, const kernels::Tensor& t) {
    if (t.defined() && t.device() == kernels::Device::kCuda) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", t.DebugString(), " on ",
                                                   std::string(kernels::DeviceName(t.device())),
                                                   " is not a tensor of the fake-cuda backend"));
  }

  std::unique_ptr<kernels::cpu::CpuBackend> cpu_;
  FakeDeviceCounters counters_;
  bool graphs_ = false, in_graph_ = false;
  bool q4_weights_ = false;
  std::vector<TensorUse> log_;
  std::map<int64_t, std::vector<TensorUse>> recordings_;
};

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_UTIL_FAKE_DEVICE_BACKEND_H_
