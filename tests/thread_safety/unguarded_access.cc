// Negative control for tools/thread_safety_check.sh; deliberately in no CMake target.
//
// Read() touches an ABSL_GUARDED_BY member without holding its mutex. The check compiles this
// file first and fails unless clang reports that as a -Wthread-safety error: if the analysis
// were off (a gcc in place of clang, a flag lost, absl's annotations compiled out), every real
// translation unit would pass vacuously.
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::thread_safety_control {

class Counter {
 public:
  void Add(int n) {
    absl::MutexLock lock(&mu_);
    value_ += n;  // fine: mu_ is held
  }
  int Read() const { return value_; }  // unguarded: mu_ is not held

 private:
  mutable absl::Mutex mu_;
  int value_ ABSL_GUARDED_BY(mu_) = 0;
};

int Use() {
  Counter c;
  c.Add(1);
  return c.Read();
}

}  // namespace expertmesh::thread_safety_control
