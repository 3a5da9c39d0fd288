// The main of every test binary: GoogleTest's, plus the process settings our servers run with.
//
// SIGPIPE is ignored because the binaries under test do the same (router/main.cc,
// worker_main.cc) and tests run their servers and Gloo groups in-process. Gloo writes to its
// sockets without MSG_NOSIGNAL, so a peer that vanishes mid-collective must become an EPIPE error
// on the writer, which is what the fault tests assert, not a signal that kills the test binary.
#include <csignal>

#include "gtest/gtest.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
