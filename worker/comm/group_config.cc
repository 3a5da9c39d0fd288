#include "worker/comm/group_config.h"

#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace expertmesh::comm {
namespace {

// A value and the name of the flag or variable it came from.
struct Sourced {
  std::string value;
  std::string from;
};

std::optional<Sourced> First(const std::optional<std::string>& flag, std::string flag_name,
                             const EnvLookup& env, std::vector<std::string> vars) {
  if (flag.has_value()) return Sourced{*flag, std::move(flag_name)};
  for (std::string& var : vars) {
    if (std::optional<std::string> v = env(var); v.has_value() && !v->empty()) {
      return Sourced{*v, std::move(var)};
    }
  }
  return std::nullopt;
}

std::optional<std::string> ToString(const std::optional<int>& v) {
  if (!v.has_value()) return std::nullopt;
  return std::to_string(*v);
}

absl::StatusOr<int> ParseInt(const Sourced& s, int min, int max) {
  int value = 0;
  if (!absl::SimpleAtoi(s.value, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(s.from, "='", s.value, "' is not an integer in [", min, ", ", max, "]"));
  }
  return value;
}

// "host:port" or "[v6]:port".
absl::Status ParseHostPort(const Sourced& s, std::string& host, int& port) {
  size_t colon = s.value.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(s.from, "='", s.value, "' is not host:port"));
  }
  host = s.value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  absl::StatusOr<int> p = ParseInt(Sourced{s.value.substr(colon + 1), s.from + " port"}, 0, 65535);
  if (!p.ok()) return p.status();
  port = *p;
  return absl::OkStatus();
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

absl::StatusOr<GroupConfig> ResolveGroupConfig(const GroupFlags& flags, const EnvLookup& env) {
  GroupConfig config;
  std::vector<std::string> sources;

  std::optional<Sourced> world = First(ToString(flags.world_size), "--world_size", env,
                                       {"EXPERTMESH_WORLD_SIZE", "LWS_GROUP_SIZE"});
  if (world.has_value()) {
    absl::StatusOr<int> w = ParseInt(*world, 1, 1 << 16);
    if (!w.ok()) return w.status();
    config.world_size = *w;
    sources.push_back(absl::StrCat("world_size ", *w, " (", world->from, ")"));
  }
  std::optional<Sourced> rank =
      First(ToString(flags.rank), "--rank", env, {"EXPERTMESH_RANK", "LWS_WORKER_INDEX"});
  if (rank.has_value()) {
    absl::StatusOr<int> r = ParseInt(*rank, 0, config.world_size - 1);
    if (!r.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(r.status().message(), " (world_size ", config.world_size, ")"));
    }
    config.rank = *r;
    sources.push_back(absl::StrCat("rank ", *r, " (", rank->from, ")"));
  }

  // Several ranks per pod: the rank and size above count pods; this process is local rank
  // `local_rank` of its pod.
  std::optional<Sourced> per_pod =
      First(ToString(flags.ranks_per_pod), "--ranks-per-pod", env, {"EXPERTMESH_RANKS_PER_POD"});
  if (per_pod.has_value()) {
    absl::StatusOr<int> n = ParseInt(*per_pod, 1, 1024);
    if (!n.ok()) return n.status();
    if (*n > 1) {
      std::optional<Sourced> local =
          First(ToString(flags.local_rank), "--local-rank", env, {"EXPERTMESH_LOCAL_RANK"});
      if (!local.has_value()) {
        return absl::InvalidArgumentError(absl::StrCat("ranks_per_pod ", *n, " (", per_pod->from,
                                                       ") needs EXPERTMESH_LOCAL_RANK"));
      }
      absl::StatusOr<int> l = ParseInt(*local, 0, *n - 1);
      if (!l.ok()) return l.status();
      config.rank = config.rank * *n + *l;
      config.world_size *= *n;
      sources.push_back(absl::StrCat("local rank ", *l, " of ", *n, " per pod (", local->from, ", ",
                                     per_pod->from, ")"));
    }
  }

  std::optional<Sourced> leader = First(flags.leader, "--leader", env, {"EXPERTMESH_LEADER"});
  if (leader.has_value()) {
    if (absl::Status s = ParseHostPort(*leader, config.leader_host, config.leader_port); !s.ok()) {
      return s;
    }
  } else if (std::optional<std::string> lws = env("LWS_LEADER_ADDRESS");
             lws.has_value() && !lws->empty()) {
    config.leader_host = *lws;
    config.leader_port = kDefaultRendezvousPort;
    leader = Sourced{*lws, "LWS_LEADER_ADDRESS"};
    if (std::optional<std::string> port = env("EXPERTMESH_LEADER_PORT"); port.has_value()) {
      absl::StatusOr<int> p = ParseInt(Sourced{*port, "EXPERTMESH_LEADER_PORT"}, 0, 65535);
      if (!p.ok()) return p.status();
      config.leader_port = *p;
    }
  }
  if (leader.has_value()) {
    sources.push_back(absl::StrCat("leader ", config.leader_host, ":", config.leader_port, " (",
                                   leader->from, ")"));
  }
  if (config.world_size > 1 && config.leader_host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("world_size ", config.world_size,
                     " needs a leader: set --leader, EXPERTMESH_LEADER or LWS_LEADER_ADDRESS"));
  }
  if (config.world_size > 1 && config.rank != 0 && config.leader_port == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", config.rank, ": leader port 0 (only the leader itself may pick a free port)"));
  }

  std::optional<Sourced> host = First(flags.host, "--host", env, {"EXPERTMESH_HOST", "POD_IP"});
  if (host.has_value()) {
    config.local_host = host->value;
    sources.push_back(absl::StrCat("host ", host->value, " (", host->from, ")"));
  } else if (IsLoopback(config.leader_host)) {
    config.local_host = "127.0.0.1";
  } else {
    char name[256] = {};
    if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
      return absl::InvalidArgumentError(
          "cannot tell this rank's address: set --host, EXPERTMESH_HOST or POD_IP");
    }
    config.local_host = name;
  }
  config.source = sources.empty() ? "defaults (group of one)" : absl::StrJoin(sources, ", ");
  return config;
}

}  // namespace expertmesh::comm
