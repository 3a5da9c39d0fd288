// An Engine over `model_dir` on a CPU backend of `threads` threads, for tests and benchmarks
// (a worker picks its backend from --device in worker/startup; tests pick the CPU here).
#ifndef EXPERTMESH_TESTS_UTIL_CPU_ENGINE_H_
#define EXPERTMESH_TESTS_UTIL_CPU_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/cpu/cpu_backend.h"
#include "worker/engine/engine.h"

namespace expertmesh::testing {

inline absl::StatusOr<std::unique_ptr<engine::Engine>> LoadCpuEngine(
    const std::string& model_dir, const engine::EngineOptions& options, int threads,
    bool batch_invariant = false) {
  kernels::cpu::CpuBackendOptions backend_options;
  backend_options.num_threads = threads;
  backend_options.batch_invariant = batch_invariant;
  absl::StatusOr<std::unique_ptr<kernels::cpu::CpuBackend>> backend =
      kernels::cpu::CpuBackend::Create(backend_options);
  if (!backend.ok()) return backend.status();
  return engine::Engine::Load(model_dir, *std::move(backend), options);
}

}  // namespace expertmesh::testing

#endif  // EXPERTMESH_TESTS_UTIL_CPU_ENGINE_H_
