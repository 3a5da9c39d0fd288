// router_fake_worker: a FakeWorker as a process, for tests with real client SDKs.
// `router_fake_worker --make-model DIR` writes a tiny model directory instead.
// Prints "fake-worker listening on 127.0.0.1:PORT" and serves until stdin closes.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>

#include "tests/router/fake_worker.h"
#include "tools/make_model/make_model.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--make-model") {
    // The tokenizer/config directory the router needs, without the full expertmesh CLI.
    expertmesh::make_model::MakeModelOptions options;
    options.arch = expertmesh::model::Architecture::kQwen3Moe;
    options.size = "tiny";
    options.out_dir = argv[2];
    options.force = true;
    std::filesystem::create_directories(options.out_dir);
    absl::StatusOr<expertmesh::make_model::MakeModelResult> made =
        expertmesh::make_model::MakeModel(options);
    if (!made.ok()) {
      std::fprintf(stderr, "router_fake_worker: %s\n", made.status().ToString().c_str());
      return 1;
    }
    return 0;
  }
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<expertmesh::router::testing::FakeWorker>> worker =
      expertmesh::router::testing::FakeWorker::Start(address);
  if (!worker.ok()) {
    std::fprintf(stderr, "router_fake_worker: %s\n", worker.status().ToString().c_str());
    return 1;
  }
  std::printf("fake-worker listening on %s\n", (*worker)->address().c_str());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  (*worker)->Shutdown();
  return 0;
}
