// A small LRU of compiled constraints: (what the client sent) -> the GBNF text (or the error)
// it compiles to. Services send the same schema with every request; compiling a large schema
// and validating its grammar costs milliseconds the router need not spend twice.
//
// Thread safety: all methods may be called concurrently.
#ifndef EXPERTMESH_ROUTER_GRAMMAR_TEXT_CACHE_H_
#define EXPERTMESH_ROUTER_GRAMMAR_TEXT_CACHE_H_

#include <cstddef>
#include <functional>
#include <list>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace expertmesh::router {

class GrammarTextCache {
 public:
  // At most `max_entries` entries and `max_bytes` of keys and values together (the larger
  // bound that is hit first evicts the least recently used).
  GrammarTextCache(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  // The cached result for `key`, or compile()'s (stored, errors included: a bad schema sent
  // again is refused again without compiling). compile() runs outside the lock; two threads
  // that miss the same key may both compile it.
  absl::StatusOr<std::string> GetOrCompile(
      const std::string& key, const std::function<absl::StatusOr<std::string>()>& compile);

  size_t size() const;
  size_t hits() const;

 private:
  struct Entry {
    std::string key;
    absl::StatusOr<std::string> value;
    size_t bytes = 0;
  };
  void InsertLocked(std::string key, absl::StatusOr<std::string> value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t max_entries_;
  const size_t max_bytes_;
  mutable absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // most recently used first
  absl::flat_hash_map<std::string, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t hits_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace expertmesh::router

#endif  // EXPERTMESH_ROUTER_GRAMMAR_TEXT_CACHE_H_
