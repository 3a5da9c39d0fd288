// `expertmesh generate MODEL_DIR --prompt TEXT [--prompt ...] [--chat] [--max-tokens N]
//  [--temperature T] [--top-p P] [--top-k K] [--seed S] [--compute-dtype f32|bf16] [--threads N]
//  [--device cpu|cuda|auto] [--cuda-device N]`
// Runs every prompt in one continuously batched engine (on the backend --device picks, see
// worker/startup/backend_select.h) and streams the text as it is generated (one prompt: plain text;
// several: "[i] " prefixed lines when a prompt produces text), then prints each request's finish
// reason and the decode speed to stderr.
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/chat/chat_template.h"
#include "model/config/model_config.h"
#include "model/tokenizer/streaming_detokenizer.h"
#include "model/tokenizer/tokenizer.h"
#include "tools/cli/commands.h"
#include "worker/engine/engine.h"
#include "worker/models/model.h"
#include "worker/startup/backend_select.h"

namespace expertmesh::cli {
namespace {

struct GenerateFlags {
  std::string dir;
  std::vector<std::string> prompts;
  bool chat = false;
  int64_t max_tokens = 64;
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  uint64_t seed = 0;
  std::string compute_dtype = "bf16";
  std::string quantize = "none";
  std::string quantize_lm_head = "none";
  int threads = 0;
  bool batch_invariant = false;
  uint64_t kv_cache_mb = 512;
  std::string device = "auto";
  int cuda_device = -1;
};

// The engine on the backend --device picks (the whole model: generate runs one rank).
absl::StatusOr<std::unique_ptr<engine::Engine>> CreateEngine(const GenerateFlags& f,
                                                             const engine::EngineOptions& options) {
  absl::StatusOr<server::DeviceChoice> device = server::ChooseDevice(
      {.device = f.device, .cuda_device = f.cuda_device, .local_rank = 0}, server::ProbeDevices());
  if (!device.ok()) return device.status();
  std::fprintf(stderr, "device: %s\n", device->reason.c_str());
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = server::CreateBackend(
      *device, {.cpu_threads = f.threads, .batch_invariant = f.batch_invariant});
  if (!backend.ok()) return backend.status();
  return engine::Engine::Load(f.dir, *std::move(backend), options);
}

absl::StatusOr<std::vector<int32_t>> PromptIds(const GenerateFlags& f,
                                               const tokenizer::Tokenizer& tok,
                                               const std::string& text) {
  if (!f.chat) return tok.Encode(text, /*add_special_tokens=*/true);
  const std::string* source = tok.config().ChatTemplate();
  if (source == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(f.dir, ": --chat needs a chat_template in tokenizer_config.json"));
  }
  absl::StatusOr<chat::ChatTemplate> tmpl = chat::ChatTemplate::Parse(*source);
  if (!tmpl.ok()) return tmpl.status();
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", text}});
  chat::ChatRenderOptions options;
  options.add_generation_prompt = true;
  options.bos_token = tok.special_tokens().bos_token;
  options.eos_token = tok.special_tokens().eos_token;
  absl::StatusOr<std::string> rendered = chat::RenderChat(*tmpl, messages, options);
  if (!rendered.ok()) return rendered.status();
  // The template writes the special tokens itself (as transformers' apply_chat_template).
  return tok.Encode(*rendered, /*add_special_tokens=*/false);
}

absl::Status RunGenerate(const GenerateFlags& f) {
  if (f.prompts.empty()) return absl::InvalidArgumentError("generate: give at least one --prompt");
  engine::EngineOptions options;
  if (f.compute_dtype == "f32") {
    options.compute_dtype = DType::kF32;
  } else if (f.compute_dtype != "bf16") {
    return absl::InvalidArgumentError(
        absl::StrCat("generate: --compute-dtype must be f32 or bf16, got ", f.compute_dtype));
  }
  if (f.quantize != "none" && f.quantize != "fp8" && f.quantize != "int4") {
    return absl::InvalidArgumentError(
        absl::StrCat("generate: --quantize must be none, fp8 or int4, got ", f.quantize));
  }
  options.quantize_fp8 = f.quantize == "fp8";
  options.quantize_int4 = f.quantize == "int4";
  if (f.quantize_lm_head != "none" && f.quantize_lm_head != "fp8") {
    return absl::InvalidArgumentError(
        absl::StrCat("generate: --quantize-lm-head must be none or fp8, got ", f.quantize_lm_head));
  }
  options.quantize_lm_head_fp8 = f.quantize_lm_head == "fp8";
  options.kv_cache_bytes = f.kv_cache_mb << 20;
  options.seed = f.seed;
  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tok =
      tokenizer::Tokenizer::LoadFromDirectory(f.dir);
  if (!tok.ok()) return tok.status();
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = CreateEngine(f, options);
  if (!engine.ok()) return engine.status();
  engine::Engine& e = **engine;

  std::vector<tokenizer::StreamingDetokenizer> detok;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < f.prompts.size(); ++i) {
    absl::StatusOr<std::vector<int32_t>> ids = PromptIds(f, **tok, f.prompts[i]);
    if (!ids.ok()) return ids.status();
    scheduler::GenerationRequest r;
    r.id = absl::StrCat(i);
    r.prompt = *std::move(ids);
    r.max_tokens = f.max_tokens;
    r.sampling.temperature = f.temperature;
    r.sampling.top_p = f.top_p;
    r.sampling.top_k = f.top_k;
    r.sampling.seed = f.seed + i;
    for (int32_t id : (*tok)->special_tokens().stop_ids) r.stop_token_ids.push_back(id);
    absl::Status s = e.AddRequest(std::move(r));
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat("prompt ", i, ": ", s.message()));
    detok.emplace_back(**tok, /*skip_special_tokens=*/true);
    index[absl::StrCat(i)] = i;
  }
  const bool multi = f.prompts.size() > 1;
  std::vector<std::string> finish(f.prompts.size());
  const auto start = std::chrono::steady_clock::now();
  int64_t generated = 0;
  while (e.HasWork()) {
    absl::StatusOr<std::vector<engine::RequestOutput>> out = e.Step();
    if (!out.ok()) return out.status();
    for (const engine::RequestOutput& o : *out) {
      const size_t i = index[o.id];
      ++generated;
      std::string text = detok[i].Add(o.token.token);
      if (o.finish != scheduler::FinishReason::kNone) {
        text += detok[i].Finish();
        finish[i] = std::string(scheduler::FinishReasonName(o.finish));
      }
      if (text.empty()) continue;
      if (multi) {
        std::printf("[%zu] %s\n", i, text.c_str());
      } else {
        std::fputs(text.c_str(), stdout);
      }
      std::fflush(stdout);
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!multi) std::fputs("\n", stdout);
  for (size_t i = 0; i < finish.size(); ++i) {
    std::fprintf(stderr, "[%zu] finish: %s\n", i, finish[i].c_str());
  }
  std::fprintf(stderr, "%lld tokens in %.2f s (%.1f tok/s)\n", static_cast<long long>(generated),
               secs, secs > 0 ? generated / secs : 0.0);
  return absl::OkStatus();
}

}  // namespace

Command AddGenerateCommand(CLI::App& parent) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* app = parent.add_subcommand(
      "generate", "Generate text for one or more prompts, streaming to stdout");
  app->add_option("dir", f->dir, "Model directory (config.json, *.safetensors, tokenizer.json)")
      ->required();
  app->add_option("--prompt", f->prompts, "Prompt text (repeat for a batch)")->required();
  app->add_flag("--chat", f->chat, "Wrap each prompt as a user message in the chat template");
  app->add_option("--max-tokens", f->max_tokens, "Tokens to generate per prompt")
      ->check(CLI::PositiveNumber);
  app->add_option("--temperature", f->temperature, "0 = greedy");
  app->add_option("--top-p", f->top_p, "Nucleus sampling mass in (0, 1]");
  app->add_option("--top-k", f->top_k, "Keep the k most likely tokens (0 = off)");
  app->add_option("--seed", f->seed, "Seed of prompt 0 (prompt i uses seed + i)");
  app->add_option("--compute-dtype", f->compute_dtype, "Activation dtype: f32 or bf16");
  app->add_option("--quantize", f->quantize,
                  "none | fp8 | int4: quantize linear weights to fp8 (128x128 blocks) or the "
                  "routed experts to int4 (groups of 128, symmetric) at load");
  app->add_option("--quantize-lm-head", f->quantize_lm_head,
                  "none | fp8: quantize lm_head (a copy of the embedding table when tied) to "
                  "fp8 (128x128 blocks) at load");
  app->add_option("--threads", f->threads, "CPU threads (0 = all cores)");
  app->add_flag("--batch-invariant", f->batch_invariant,
                "CPU: a prompt's output never depends on the other prompts (every product on one "
                "kernel whatever its token count)");
  app->add_option("--device", f->device,
                  "cpu | cuda | auto (auto: CUDA when built in and a GPU is visible)");
  app->add_option("--cuda-device", f->cuda_device,
                  "GPU index, modulo the visible GPUs (-1: the first)");
  app->add_option("--kv-cache-mb", f->kv_cache_mb, "KV cache budget in MiB")
      ->check(CLI::PositiveNumber);
  return {app, [f]() { return RunGenerate(*f); }};
}

}  // namespace expertmesh::cli
