#include "worker/startup/signal_watcher.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace expertmesh::server {
namespace {

int g_signal_pipe[2] = {-1, -1};
void OnSignal(int sig) {
  const char byte = static_cast<char>(sig);
  (void)!write(g_signal_pipe[1], &byte, 1);
}

}  // namespace

SignalWatcher::SignalWatcher() {
  if (pipe(g_signal_pipe) != 0) std::abort();
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  thread_ = std::thread([this] {
    char byte = 0;
    while (read(g_signal_pipe[0], &byte, 1) != 1) {
    }
    signal_ = byte;
    first_.Notify();
    while (read(g_signal_pipe[0], &byte, 1) != 1) {
    }
    std::fprintf(stderr, "expertmesh-worker: second signal, exiting now\n");
    std::_Exit(128 + byte);
  });
  thread_.detach();
}

}  // namespace expertmesh::server
