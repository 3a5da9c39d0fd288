// The golden models (tests/golden/<arch>/, format in tests/golden/README.md) on the CUDA backend,
// against the CPU backend running the same checkpoint and against transformers' reference, for
// each architecture and compute dtype, with decode steps as CUDA graphs (the model's default,
// worker/models/decode_graph.h: batches padded to power-of-two buckets, then replayed) and op by
// op (ModelOptions::decode_graph_max_batch 0). The fp8 models (qwen3_moe_fp8, deepseek_v3_fp8,
// and per channel qwen3_moe_fp8_channel, deepseek_v3_fp8_channel) keep their e4m3 weights on the
// device (kernels/cuda/gemm/fp8_gemm.h); the int4 ones (compressed-tensors qwen3_moe_int4_ct,
// deepseek_v3_int4_ct; GPTQ qwen3_moe_gptq, deepseek_v3_gptq: zero points, act-order) keep theirs
// packed (kernels/cuda/gemm/q4_gemm.h), the list golden_test.cc runs on the CPU. Without a GPU
// every case reports SKIPPED.
//
// Runs (decode teacher-forced along the reference's fp32 greedy tokens, so one early difference
// cannot hide later ones):
//   - each sequence alone: prefill of all its positions, then one decode step per token;
//   - the six sequences as one mixed batch: one prefill of all of them, then decode steps of six
//     rows at different positions.
//
// Tolerances (all read from reference.json's `tolerances`):
//   fp32 compute: CUDA accumulates in fp32 with no TF32 (CUBLAS_COMPUTE_32F, fp32 grouped GEMM),
//     so it differs from the CPU and from transformers' fp32 run only by the order of the sums:
//     every row within fp32.max_abs (1e-3) and fp32.min_row_cosine (0.99999) of both. Greedy:
//     the argmax equals the reference token at every step (all margins >= 1e-3 by construction)
//     and the CPU's argmax on every row whose CPU top-1/top-2 margin is >= 1e-3.
//   bf16 compute: two bf16 implementations round activations at different points, as
//     transformers' bf16 run does against its fp32 run, so the README's bf16 bounds apply,
//     against the fp32 reference (as golden_test checks the CPU) and against the CPU's own bf16
//     run: every row max |diff| <= bf16.max_abs, each sequence's rows together mean |diff| <=
//     bf16.mean_abs and cosine >= bf16.min_sequence_cosine. Greedy tokens are compared with the
//     reference by golden_test's rule (margin >= bf16.greedy_margin while transformers' own bf16
//     run still agreed with its fp32 run); a rounding that flips one routing choice moves a row's
//     logits by O(1), so no CPU-vs-CUDA argmax check in bf16.
//   Quantized models: the same bounds, from their own reference.json (no other bound is needed).
//     Both backends multiply the stored weights as their dequantized values (kernels/backend.h),
//     and the reference is transformers on the weights make_golden_int4.py dequantized itself,
//     so what is left is rounding as above. fp32: the q4 decode stream sums x * (q - zero) per
//     run of 16 and scales once, the SIMT path multiplies x by (q - zero) * scale rounded once
//     (as the CPU), fp8 weights are q * scale rounded once: fp32 roundings of the same products
//     in another order, far inside 1e-3 (cuda_q4_gemm_test: 1e-4 |r| + 2e-5 sum |x w|), and
//     GPTQ's float16 tensors are held in f32 as on the CPU. bf16: the tensor-core paths round
//     each dequantized weight to bf16 once (2^-9, as the CPU's AMX tiles and as transformers'
//     bf16 run, which loads the dequantized weights in bf16), the decode streams keep them
//     exact; the bf16 bounds are twice transformers' own bf16 deviation, and those seeds were
//     accepted only if one flipped fragile route still stays within them (tests/golden/
//     README.md, "bf16 routing acceptance").
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/backend/cuda_backend.h"
#include "model/safetensors/safetensors_file.h"
#include "tests/kernels/cuda/cuda_test_util.h"
#include "tests/util/tensor_compare.h"
#include "worker/models/forward_batch.h"
#include "worker/models/model.h"

namespace expertmesh::models {
namespace {

using Logits = SequenceChunk::Logits;
using expertmesh::testing::Tolerance;
constexpr int32_t kBlockSize = 16;
constexpr int32_t kBlocks = 128;

struct Sequence {
  std::vector<int32_t> input_ids, greedy_tokens;
  std::vector<double> margins;  // fp32 reference, one per generated token
  int bf16_steps_equal = 0;     // leading tokens where transformers' bf16 run equals its fp32 run
  Tensor prefill;               // [L, V] f32
  Tensor decode;                // [new_tokens, V] f32
};

struct Bounds {
  Tolerance row;  // per row: max |diff| (atol) and, in fp32, the row cosine
  double greedy_margin = 0;
  double mean_abs = 0, min_sequence_cosine = 0;  // bf16 only (0: not checked)
};

absl::StatusOr<Tensor> LoadLogits(const model::SafetensorsFile& f, const std::string& name) {
  absl::StatusOr<model::TensorView> v = f.Get(name);
  if (!v.ok()) return v.status();
  if (v->dtype != DType::kF32 || v->shape.size() != 2) {
    return absl::InvalidArgumentError(name + " is not a 2-D f32 tensor");
  }
  absl::StatusOr<Tensor> t = Tensor::Empty(DType::kF32, {v->shape[0], v->shape[1]});
  if (!t.ok()) return t.status();
  std::memcpy(t->raw_data(), v->data.data(), v->data.size());
  return t;
}

int32_t Argmax(const Tensor& row) {
  const float* p = row.data<float>();
  return static_cast<int32_t>(std::max_element(p, p + row.numel()) - p);
}

// Top-1 minus top-2 of a logits row.
double Margin(const Tensor& row) {
  std::vector<float> v(row.data<float>(), row.data<float>() + row.numel());
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return static_cast<double>(v[0]) - v[1];
}

Tensor Row(const Tensor& t, int64_t r) { return *t.Slice(r, r + 1); }

// Mean |diff| and cosine of many rows taken together (one sequence).
struct SequenceStats {
  double abs_sum = 0, dot = 0, nx = 0, ny = 0;
  int64_t count = 0;
  void Add(const Tensor& got, const Tensor& want) {
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double x = got.data<float>()[i], y = want.data<float>()[i];
      abs_sum += std::abs(x - y);
      dot += x * y;
      nx += x * x;
      ny += y * y;
      ++count;
    }
  }
};

// One backend with the model and its KV cache.
struct Loaded {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Model> model;
  KvCacheTensors kv;
};

class GoldenCudaTest
    : public expertmesh::testing::CudaTestWithParam<std::tuple<std::string, DType, bool>> {
 protected:
  void SetUp() override {
    CudaTestWithParam::SetUp();
    if (IsSkipped()) return;
    const std::string dir =
        std::string(EXPERTMESH_SOURCE_DIR) + "/tests/golden/" + std::get<0>(GetParam());
    if (!std::filesystem::exists(dir + "/reference.json")) {
      GTEST_SKIP() << dir << "/reference.json missing: run tools/golden/make_golden.sh";
    }
    ASSERT_NO_FATAL_FAILURE(LoadReference(dir));
    auto cpu = kernels::cpu::CpuBackend::Create({.num_threads = 2});
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    cpu_.backend = std::move(*cpu);
    // Small scratch: the golden models are tiny and the GPU may be shared.
    auto cuda = cuda::CreateCudaBackend({.workspace_bytes = size_t{64} << 20});
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_.backend = std::move(*cuda);
    for (Loaded* r : {&cpu_, &cuda_}) {
      ModelOptions options{.compute_dtype = std::get<1>(GetParam())};
      if (r == &cuda_ && !std::get<2>(GetParam())) options.decode_graph_max_batch = 0;
      auto m = LoadModel(model_dir_, r->backend.get(), options);
      ASSERT_TRUE(m.ok()) << m.status();
      r->model = std::move(*m);
      auto kv = AllocateKvCache(*r->backend, r->model->kv_cache_spec(), kBlocks, kBlockSize);
      ASSERT_TRUE(kv.ok()) << kv.status();
      r->kv = std::move(*kv);
    }
    ASSERT_TRUE(cuda::IsCudaBackend(*cuda_.backend));
  }

  void LoadReference(const std::string& dir) {
    absl::StatusOr<nlohmann::json> j = ReadJsonFile(dir + "/reference.json");
    ASSERT_TRUE(j.ok()) << j.status();
    bf16_ = std::get<1>(GetParam()) == DType::kBF16;
    try {
      model_dir_ = dir + "/" + j->at("model_dir").get<std::string>();
      auto file = model::SafetensorsFile::Open(dir + "/" + j->at("logits_file").get<std::string>());
      ASSERT_TRUE(file.ok()) << file.status();
      logits_file_ = std::move(*file);
      const nlohmann::json& t = j->at("tolerances").at(bf16_ ? "bf16" : "fp32");
      bounds_.row = {t.at("max_abs").get<double>(), 0.0,
                     bf16_ ? 0.0 : t.at("min_row_cosine").get<double>()};
      bounds_.greedy_margin = t.at("greedy_margin").get<double>();
      if (bf16_) {
        bounds_.mean_abs = t.at("mean_abs").get<double>();
        bounds_.min_sequence_cosine = t.at("min_sequence_cosine").get<double>();
      }
      for (const nlohmann::json& s : j->at("sequences")) {
        Sequence seq;
        seq.input_ids = s.at("input_ids").get<std::vector<int32_t>>();
        seq.greedy_tokens = s.at("greedy_tokens").get<std::vector<int32_t>>();
        seq.margins = s.at("greedy_margins").get<std::vector<double>>();
        seq.bf16_steps_equal = s.at("bf16").at("steps_equal_to_fp32").get<int>();
        auto pre = LoadLogits(*logits_file_, s.at("prefill_logits").get<std::string>());
        auto dec = LoadLogits(*logits_file_, s.at("decode_logits").get<std::string>());
        ASSERT_TRUE(pre.ok()) << pre.status();
        ASSERT_TRUE(dec.ok()) << dec.status();
        seq.prefill = *pre;
        seq.decode = *dec;
        seqs_.push_back(std::move(seq));
      }
    } catch (const nlohmann::json::exception& e) {
      FAIL() << dir << "/reference.json: " << e.what();
    }
    vs_ref_.assign(seqs_.size(), SequenceStats());
    vs_cpu_.assign(seqs_.size(), SequenceStats());
  }

  // Host logits of one forward pass (a device backend's host logits are complete on return).
  static absl::StatusOr<Tensor> Forward(Loaded& r, const std::vector<SequenceChunk>& chunks) {
    auto batch = MakeForwardBatch(chunks, kBlockSize);
    if (!batch.ok()) return batch.status();
    auto logits =
        Tensor::Empty(DType::kF32, {batch->logit_rows.dim(0), r.model->config().vocab_size});
    if (!logits.ok()) return logits.status();
    if (absl::Status s = r.model->Forward(*batch, r.kv, *logits); !s.ok()) return s;
    return logits;
  }

  // Both backends over the same chunks; {cuda, cpu}.
  void ForwardBoth(const std::vector<SequenceChunk>& chunks, const std::string& where,
                   Tensor& cuda_logits, Tensor& cpu_logits) {
    auto got = Forward(cuda_, chunks);
    ASSERT_TRUE(got.ok()) << where << " (cuda): " << got.status();
    auto want = Forward(cpu_, chunks);
    ASSERT_TRUE(want.ok()) << where << " (cpu): " << want.status();
    cuda_logits = *got;
    cpu_logits = *want;
  }

  // One CUDA logits row against the CPU's row and the reference row of sequence `seq`; `step`
  // is the generated-token index the row predicts (-1 for a prefill row predicting none).
  void Check(const Tensor& cuda, const Tensor& cpu, const Tensor& ref, size_t seq, int step,
             const std::string& where) {
    const Sequence& s = seqs_[seq];
    EXPECT_TRUE(expertmesh::testing::TensorsClose(cuda, ref, bounds_.row))
        << where << ": cuda vs reference";
    EXPECT_TRUE(expertmesh::testing::TensorsClose(cuda, cpu, bounds_.row))
        << where << ": cuda vs cpu";
    vs_ref_[seq].Add(cuda, ref);
    vs_cpu_[seq].Add(cuda, cpu);
    const bool comparable = !bf16_ || step < s.bf16_steps_equal;
    if (step >= 0 && step < static_cast<int>(s.greedy_tokens.size()) && comparable &&
        s.margins[step] >= bounds_.greedy_margin) {
      EXPECT_EQ(Argmax(cuda), s.greedy_tokens[step]) << where << ": greedy token " << step;
    }
    if (!bf16_ && Margin(cpu) >= bounds_.greedy_margin) {
      EXPECT_EQ(Argmax(cuda), Argmax(cpu)) << where << ": argmax vs cpu";
    }
  }

  // The bf16 per-sequence bounds over every row checked so far.
  void CheckSequences(const std::string& where) {
    if (!bf16_) return;
    for (size_t i = 0; i < seqs_.size(); ++i) {
      for (const auto& [stats, against] :
           {std::pair{&vs_ref_[i], "reference"}, std::pair{&vs_cpu_[i], "cpu"}}) {
        ASSERT_GT(stats->count, 0);
        const double mean = stats->abs_sum / static_cast<double>(stats->count);
        const double cosine = stats->dot / std::sqrt(stats->nx * stats->ny);
        EXPECT_LE(mean, bounds_.mean_abs) << where << " seq " << i << " vs " << against;
        EXPECT_GE(cosine, bounds_.min_sequence_cosine)
            << where << " seq " << i << " vs " << against;
      }
    }
  }

  static std::vector<int32_t> Table(int first, int count) {
    std::vector<int32_t> t(count);
    for (int i = 0; i < count; ++i) t[i] = first + i;
    return t;
  }

  bool bf16_ = false;
  std::string model_dir_;
  std::unique_ptr<model::SafetensorsFile> logits_file_;
  std::vector<Sequence> seqs_;
  Bounds bounds_;
  std::vector<SequenceStats> vs_ref_, vs_cpu_;
  Loaded cpu_, cuda_;
};

TEST_P(GoldenCudaTest, EachSequenceAlonePrefillThenDecode) {
  for (size_t i = 0; i < seqs_.size(); ++i) {
    const Sequence& s = seqs_[i];
    const int64_t len = static_cast<int64_t>(s.input_ids.size());
    const std::vector<int32_t> table = Table(0, 16);
    const std::string name = "seq " + std::to_string(i);
    Tensor cuda, cpu;
    ASSERT_NO_FATAL_FAILURE(
        ForwardBoth({{s.input_ids, 0, table, Logits::kAll}}, name + " prefill", cuda, cpu));
    for (int64_t r = 0; r < len; ++r) {
      Check(Row(cuda, r), Row(cpu, r), Row(s.prefill, r), i, r == len - 1 ? 0 : -1,
            name + " prefill row " + std::to_string(r));
    }
    for (size_t k = 0; k < s.greedy_tokens.size(); ++k) {
      const std::vector<int32_t> tok = {s.greedy_tokens[k]};
      const std::string where = name + " decode step " + std::to_string(k);
      ASSERT_NO_FATAL_FAILURE(ForwardBoth(
          {{tok, len + static_cast<int64_t>(k), table, Logits::kLast}}, where, cuda, cpu));
      Check(cuda, cpu, Row(s.decode, k), i, static_cast<int>(k) + 1, where);
    }
  }
  CheckSequences("alone");
}

TEST_P(GoldenCudaTest, MixedBatchOfAllSequences) {
  const size_t n = seqs_.size();
  std::vector<std::vector<int32_t>> tables(n), toks(n);
  std::vector<SequenceChunk> prefill;
  for (size_t i = 0; i < n; ++i) {
    tables[i] = Table(static_cast<int>(i) * 10, 10);
    prefill.push_back({seqs_[i].input_ids, 0, tables[i], Logits::kAll});
  }
  Tensor cuda, cpu;
  ASSERT_NO_FATAL_FAILURE(ForwardBoth(prefill, "mixed prefill", cuda, cpu));
  int64_t row = 0;
  for (size_t i = 0; i < n; ++i) {
    const int64_t len = static_cast<int64_t>(seqs_[i].input_ids.size());
    for (int64_t r = 0; r < len; ++r, ++row) {
      Check(Row(cuda, row), Row(cpu, row), Row(seqs_[i].prefill, r), i, r == len - 1 ? 0 : -1,
            "mixed seq " + std::to_string(i) + " prefill row " + std::to_string(r));
    }
  }
  const size_t steps = seqs_[0].greedy_tokens.size();
  for (size_t k = 0; k < steps; ++k) {
    std::vector<SequenceChunk> step;
    for (size_t i = 0; i < n; ++i) {
      toks[i] = {seqs_[i].greedy_tokens[k]};
      step.push_back(
          {toks[i], static_cast<int64_t>(seqs_[i].input_ids.size() + k), tables[i], Logits::kLast});
    }
    const std::string where = "mixed decode step " + std::to_string(k);
    ASSERT_NO_FATAL_FAILURE(ForwardBoth(step, where, cuda, cpu));
    for (size_t i = 0; i < n; ++i) {
      Check(Row(cuda, static_cast<int64_t>(i)), Row(cpu, static_cast<int64_t>(i)),
            Row(seqs_[i].decode, k), i, static_cast<int>(k) + 1,
            where + " seq " + std::to_string(i));
    }
  }
  CheckSequences("mixed");
}

INSTANTIATE_TEST_SUITE_P(
    Golden, GoldenCudaTest,
    ::testing::Combine(::testing::Values("llama", "mixtral", "qwen2_moe", "qwen3_moe",
                                         "deepseek_v2", "deepseek_v3", "qwen3_moe_fp8",
                                         "deepseek_v3_fp8", "qwen3_moe_int4_ct",
                                         "deepseek_v3_int4_ct", "qwen3_moe_gptq",
                                         "deepseek_v3_gptq", "qwen3_moe_fp8_channel",
                                         "deepseek_v3_fp8_channel"),
                       ::testing::Values(DType::kF32, DType::kBF16), ::testing::Bool()),
    [](const auto& info) {
      return std::get<0>(info.param) +
             (std::get<1>(info.param) == DType::kF32 ? "_fp32" : "_bf16") +
             (std::get<2>(info.param) ? "_graphs" : "_eager");
    });

}  // namespace
}  // namespace expertmesh::models
