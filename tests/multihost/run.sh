#!/usr/bin/env bash
# Multi-host test on one machine. Three "hosts" are network namespaces with their own addresses
# on a private subnet, joined by veth pairs to a Linux bridge that lives in a fourth namespace
# (nothing touches the root namespace's network; no host namespace has a default route):
#
#   host A  em-leader    10.213.7.1   rank 0 of a tp 2 worker group (leader, gRPC to the router)
#   host B  em-follower  10.213.7.2   rank 1 of that group
#   host C  em-router    10.213.7.3   expertmesh-router --workers dns:///em-leader:50061
#
# The ranks start from the environment that deploy/k8s gives a LeaderWorkerSet pod, and only
# from it (LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX, POD_IP, EXPERTMESH_LEADER_PORT
# 29400; ports as in the manifests), names resolve through
# per-namespace hosts files (/etc/netns/NS/hosts, which `ip netns exec` mounts over /etc/hosts).
# Checks: greedy output through the router equals a single-rank engine (run on host C's
# loopback); the follower host killed mid-stream; the group restarted; the follower's link cut
# mid-stream (the collective timeout must fire within its bound); link up, restart, serve again.
#
#   run.sh BUILD_DIR       (as root; prints "multihost: N passed, M failed", exit 0 iff M == 0)
# Skips (exit 0, "multihost: SKIP: ...") only when not root or `ip netns` is unavailable.
# MULTIHOST_KEEP=1 keeps the scratch directory (logs) after the run; MULTIHOST_WATCHDOG_S
# (default 240) bounds the whole run.
set -u -o pipefail
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${PATH:-}"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export LC_ALL=C

if [ "$(id -u)" != 0 ]; then
  echo "multihost: SKIP: not root (network namespaces, veth and bridges need root)"
  exit 0
fi
if ! command -v ip >/dev/null 2>&1 || ! ip netns list >/dev/null 2>&1; then
  echo "multihost: SKIP: 'ip netns' is unavailable (iproute2 without netns support)"
  exit 0
fi

BUILD=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
BIN=$BUILD/bin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENT=$HERE/client.py
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3 || true)

# --- parameters and the bounds every check is held to ------------------------------------
COMM_TIMEOUT_S=5        # --comm-timeout-s of every rank: join and collective timeout
GRACE_S=2               # --grace-s of workers and router
WORKER_PORT=50061       # leader gRPC port on host A (as in deploy/k8s)
RDZV_PORT=29400         # EXPERTMESH_LEADER_PORT (as in deploy/k8s)
HTTP_PORT=8000          # router HTTP port on host C
MAX_TOKENS=12           # greedy parity requests
LONG_TOKENS=4000        # the streams that a fault cuts (context is 4096)
LIVE_EVENTS=20          # a stream is "live" once this many token events arrived
START_BOUND_S=30        # a group or router is serving within this after its start
KILL_STREAM_BOUND_S=$((COMM_TIMEOUT_S + 3))   # follower killed -> stream ends with an error
KILL_LEADER_BOUND_S=$((COMM_TIMEOUT_S + 5))   # follower killed -> leader exits
CUT_MIN_S=$((COMM_TIMEOUT_S - 1))             # link cut -> error not before the timeout ...
CUT_STREAM_BOUND_S=$((COMM_TIMEOUT_S + 4))    # ... and not later than this
CUT_EXIT_BOUND_S=$((COMM_TIMEOUT_S + 6))      # link cut -> both ranks exited
DOWN_BOUND_S=$((COMM_TIMEOUT_S + 8))          # fault -> router /readyz non-200
WATCHDOG_S=${MULTIHOST_WATCHDOG_S:-240}  # whole run (CTest TIMEOUT 300): past it, clean up, fail

SUBNET_PREFIX=10.213.7
IP_A=$SUBNET_PREFIX.1 IP_B=$SUBNET_PREFIX.2 IP_C=$SUBNET_PREFIX.3
NAME_A=em-leader NAME_B=em-follower NAME_C=em-router
TAG=emmh-$$
NS_BR=$TAG-br NS_A=$TAG-a NS_B=$TAG-b NS_C=$TAG-c
MODEL_NAME=tiny-qwen3
PROMPTS=("1,2,3" "9,8,7,6,5" "100,200,300,400,500,600,700")

PASSED=0 FAILED=0
NSS=() PIDS=() ETC_NETNS_CREATED=0 WATCHDOG_PID="" WORK=""
pass() { PASSED=$((PASSED + 1)); echo "  ok    $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL  $*"; }
fatal() { fail "$*"; exit 1; }
note() { echo "multihost: $*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
alive() { kill -0 "$1" 2>/dev/null; }
# in_ns: foreground commands only. Background processes start as `ip netns exec NS CMD &`
# directly, so that $! is the process itself (ip and env exec it), not a subshell.
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_pids() { ip netns pids "$1" 2>/dev/null | tr '\n' ' '; }

show_logs() {
  [ -n "$WORK" ] && [ -d "$WORK" ] || return 0
  for f in "$WORK"/*.log "$WORK"/*.out; do
    [ -s "$f" ] || continue
    echo "---- $(basename "$f") (last 15 lines)"
    tail -n 15 "$f"
  done
}

delete_ns() {
  local ns=$1 pids
  pids=$(ns_pids "$ns")
  # shellcheck disable=SC2086
  [ -n "${pids// /}" ] && kill -9 $pids 2>/dev/null
  for _ in $(seq 50); do
    [ -z "$(ns_pids "$ns" | tr -d ' ')" ] && break
    sleep 0.1
  done
  ip netns del "$ns" 2>/dev/null
  rm -rf "/etc/netns/$ns"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # (Killing and reaping inside one redirected group keeps bash's "Killed" notices quiet.)
  {
    [ -n "$WATCHDOG_PID" ] && kill -9 "$WATCHDOG_PID"
    for pid in "${PIDS[@]}"; do kill -9 "$pid"; done
    wait
  } 2>/dev/null
  for ns in "${NSS[@]}"; do delete_ns "$ns"; done
  [ "$ETC_NETNS_CREATED" = 1 ] && rmdir /etc/netns 2>/dev/null
  # Nothing may be left behind: namespaces, hosts files, processes.
  local left="" pid
  ip netns list 2>/dev/null | grep -q "^$TAG-" && left+=" namespaces"
  ls -d /etc/netns/"$TAG"-* >/dev/null 2>&1 && left+=" /etc/netns"
  for pid in "${PIDS[@]}"; do alive "$pid" && left+=" pid:$pid"; done
  if [ ${#NSS[@]} -gt 0 ]; then
    if [ -z "$left" ]; then pass "cleanup: no namespace, hosts file or process left behind"
    else fail "cleanup: left behind:$left"; fi
  fi
  if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then show_logs; fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "${MULTIHOST_KEEP:-0}" = 1 ]; then note "scratch kept in $WORK"; else rm -rf "$WORK"; fi
  fi
  [ "$rc" -ne 0 ] && [ "$FAILED" -eq 0 ] && FAILED=1
  echo "multihost: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ] && exit 0
  exit 1
}
trap cleanup EXIT
trap 'note "interrupted"; exit 1' INT TERM

for tool in "$BIN/expertmesh" "$BIN/expertmesh-worker" "$BIN/expertmesh-router"; do
  [ -x "$tool" ] || fatal "$tool is not built"
done
[ -n "$PY" ] || fatal "python3 not found"

# A run that CTest killed (SIGKILL skips the trap) leaves namespaces named after a dead pid.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^emmh-[0-9]+-' || true); do
  owner=${ns#emmh-}; owner=${owner%%-*}
  if ! alive "$owner"; then
    note "removing stale namespace $ns"
    delete_ns "$ns"
    # That run made /etc/netns when it was missing: take it over, so it goes away at the end.
    [ -d /etc/netns ] && [ -z "$(ls -A /etc/netns)" ] && ETC_NETNS_CREATED=1
  fi
done

for dir in /tmp/expertmesh-multihost.*; do
  [ -d "$dir" ] || continue
  owner=${dir#/tmp/expertmesh-multihost.}; owner=${owner%%.*}
  [[ $owner =~ ^[0-9]+$ ]] && ! alive "$owner" && rm -rf "$dir"
done
WORK=$(mktemp -d "/tmp/expertmesh-multihost.$$.XXXXXX")
# Watchdog: past WATCHDOG_S the trap still cleans up (SIGKILL from CTest would not let it).
# It waits in the `read` builtin on a FIFO nobody writes (no child process to leave behind),
# and gives up as soon as this shell is gone (it is then no longer the watchdog's parent).
mkfifo "$WORK/watchdog.fifo"
( exec 3<>"$WORK/watchdog.fifo"
  for _ in $(seq "$WATCHDOG_S"); do
    read -r -t 1 -u 3
    read -r _ _ _ parent _ <"/proc/$BASHPID/stat"
    [ "$parent" = $$ ] || exit 0
  done
  echo "multihost: watchdog: the run exceeded ${WATCHDOG_S}s"; kill -TERM $$ ) &
WATCHDOG_PID=$!
T_START=$(now)

# --- hosts -------------------------------------------------------------------------------
note "namespaces $NS_A (A, $NAME_A $IP_A), $NS_B (B, $NAME_B $IP_B), $NS_C (C, $NAME_C $IP_C), bridge in $NS_BR"
[ -d /etc/netns ] || { mkdir -p /etc/netns && ETC_NETNS_CREATED=1; }
for ns in "$NS_BR" "$NS_A" "$NS_B" "$NS_C"; do
  ip netns add "$ns" || fatal "ip netns add $ns"
  NSS+=("$ns")
  ip -n "$ns" link set lo up
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
done
ip -n "$NS_BR" link add br0 type bridge || fatal "bridge in $NS_BR"
ip -n "$NS_BR" link set br0 up
for h in a b c; do
  case $h in a) ns=$NS_A ip=$IP_A ;; b) ns=$NS_B ip=$IP_B ;; c) ns=$NS_C ip=$IP_C ;; esac
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n%s %s\n%s %s\n%s %s\n' \
    "$IP_A" "$NAME_A" "$IP_B" "$NAME_B" "$IP_C" "$NAME_C" >"/etc/netns/$ns/hosts"
  # No name server: a name missing from hosts fails instead of leaving the namespaces.
  printf 'options timeout:1 attempts:1\n' >"/etc/netns/$ns/resolv.conf"
  ip -n "$ns" link add eth0 type veth peer name "veth-$h" netns "$NS_BR" || fatal "veth for $ns"
  ip -n "$NS_BR" link set "veth-$h" master br0
  ip -n "$NS_BR" link set "veth-$h" up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
done

ok=1
for ns in "$NS_A" "$NS_B" "$NS_C"; do
  [ "$(in_ns "$ns" getent hosts "$NAME_A" | awk '{print $1}')" = "$IP_A" ] || ok=0
  [ "$(in_ns "$ns" getent hosts "$NAME_B" | awk '{print $1}')" = "$IP_B" ] || ok=0
  [ "$(in_ns "$ns" getent hosts "$NAME_C" | awk '{print $1}')" = "$IP_C" ] || ok=0
done
[ $ok = 1 ] && pass "hosts: every namespace resolves $NAME_A/$NAME_B/$NAME_C through its own hosts file" \
            || fatal "hosts: names do not resolve inside the namespaces"
ok=1
for ns in "$NS_A" "$NS_B" "$NS_C"; do
  [ "$(ip -n "$ns" -4 route show | grep -c .)" = 1 ] || ok=0
  ip -n "$ns" -4 route show | grep -q "^$SUBNET_PREFIX.0/24 dev eth0" || ok=0
done
[ $ok = 1 ] && pass "hosts: the only route is $SUBNET_PREFIX.0/24 (no default route out of the namespaces)" \
            || fatal "hosts: unexpected routes: $(ip -n "$NS_A" -4 route show | tr '\n' ';')"
getent hosts "$NAME_A" >/dev/null 2>&1 && note "note: the root namespace also resolves $NAME_A (not used)"

# --- model ---------------------------------------------------------------------------------
MODEL=$WORK/$MODEL_NAME
"$BIN/expertmesh" make-model --arch qwen3-moe --size tiny --out "$MODEL" --seed 7 \
  >"$WORK/make-model.log" 2>&1 || fatal "make-model"

# --- helpers for processes -------------------------------------------------------------------
# wait_exit PID SECONDS: until PID has exited; sets EXIT_RC (or returns 1 on timeout).
wait_exit() {
  local deadline
  deadline=$(awk -v t="$(now)" -v s="$2" 'BEGIN { printf "%.3f", t + s }')
  while alive "$1"; do
    le "$(now)" "$deadline" || return 1
    sleep 0.1
  done
  wait "$1" 2>/dev/null
  EXIT_RC=$?
}
# stop PID: SIGTERM, then SIGKILL after the grace time and a margin.
stop() {
  kill -TERM "$1" 2>/dev/null
  wait_exit "$1" $((GRACE_S + 5)) || { kill -9 "$1"; wait "$1"; } 2>/dev/null
}
http_code() {  # http_code PATH [HOST PORT] -> status code from the router (000: unreachable)
  in_ns "$NS_C" "$PY" "$CLIENT" get "${2:-$NAME_C}" "${3:-$HTTP_PORT}" "$1" 2>/dev/null || true
}
# wait_ready SECONDS: until the router's /readyz answers 200.
wait_ready() {
  local deadline
  deadline=$(awk -v t="$(now)" -v s="$1" 'BEGIN { printf "%.3f", t + s }')
  while [ "$(http_code /readyz)" != 200 ]; do
    le "$(now)" "$deadline" || return 1
    sleep 0.1
  done
}
json_field() {  # json_field JSON KEY
  "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("" if v is None else (v if isinstance(v,str) else json.dumps(v)))' "$1" "$2"
}

# Each rank also gets a /dev/shm of its own, as separate machines (and pods) have: `ip netns
# exec` runs the command in a fresh mount namespace, where this tmpfs hides the machine's. The
# group must find out by itself that its ranks do not share a host, and keep its collectives on
# Gloo (on one /dev/shm it would pick shared memory, and cutting the link would cut nothing).
start_rank() {  # start_rank INDEX NS POD_IP LOG: one rank, placed by LWS variables only
  ip netns exec "$2" sh -c 'mount -t tmpfs -o size=16m,mode=1777 em-host-shm /dev/shm && exec "$@"' \
    sh env -i PATH="$PATH" HOME="${HOME:-/root}" \
    LWS_LEADER_ADDRESS="$NAME_A" LWS_GROUP_SIZE=2 LWS_WORKER_INDEX="$1" POD_IP="$3" \
    EXPERTMESH_LEADER_PORT="$RDZV_PORT" \
    "$BIN/expertmesh-worker" --model "$MODEL" --host 0.0.0.0 --port "$WORKER_PORT" --tp 2 \
    --kv-budget 64MiB --threads 1 --compute-dtype f32 \
    --comm-timeout-s "$COMM_TIMEOUT_S" --grace-s "$GRACE_S" >"$4" 2>&1 &
}
GROUP_RUN=0
start_group() {  # sets LEADER_PID, FOLLOWER_PID; returns 1 when the leader does not serve
  GROUP_RUN=$((GROUP_RUN + 1))
  LEADER_LOG=$WORK/group$GROUP_RUN-rank0-hostA.log
  FOLLOWER_LOG=$WORK/group$GROUP_RUN-rank1-hostB.log
  start_rank 0 "$NS_A" "$IP_A" "$LEADER_LOG"; LEADER_PID=$!; PIDS+=("$LEADER_PID")
  start_rank 1 "$NS_B" "$IP_B" "$FOLLOWER_LOG"; FOLLOWER_PID=$!; PIDS+=("$FOLLOWER_PID")
  local deadline
  deadline=$(awk -v t="$(now)" -v s="$START_BOUND_S" 'BEGIN { printf "%.3f", t + s }')
  while ! grep -qF "expertmesh-worker: listening on" "$LEADER_LOG"; do
    alive "$LEADER_PID" && alive "$FOLLOWER_PID" || return 1
    le "$(now)" "$deadline" || return 1
    sleep 0.1
  done
}

# The router marks a group down on one missed health probe (1 s probe timeout, which a loaded
# 2-core machine can exceed) and then answers 503 "no healthy worker group" until its next poll.
# Such a request never reached a worker: retry it (at most twice, once /readyz is 200 again),
# say so, and count it.
FLAPS=0
flapped() {  # flapped CLIENT_JSON: true for a 503 "no healthy worker group"
  [ "$(json_field "$1" status 2>/dev/null)" = 503 ] && [[ $1 == *"no healthy worker group"* ]]
}
retry_after_flap() {  # retry_after_flap WHAT
  FLAPS=$((FLAPS + 1))
  note "$1: the router answered 503 'no healthy worker group' (a missed probe); retrying"
  wait_ready 10
}

# greedy_check LABEL: every prompt through the router equals the single-rank reference.
greedy_check() {
  local i out text attempt
  for i in "${!PROMPTS[@]}"; do
    for attempt in 1 2 3; do
      out=$(in_ns "$NS_C" "$PY" "$CLIENT" complete "$NAME_C" "$HTTP_PORT" "$MODEL_NAME" \
            "${PROMPTS[$i]}" "$MAX_TOKENS")
      [ $attempt -lt 3 ] && flapped "$out" && { retry_after_flap "$1 [${PROMPTS[$i]}]"; continue; }
      break
    done
    text=$(json_field "$out" text)
    if [ "$(json_field "$out" status)" = 200 ] && [ "$text" = "${REF[$i]}" ]; then
      pass "$1: greedy [${PROMPTS[$i]}] x$MAX_TOKENS through the router equals the single-rank engine"
    else
      fail "$1: greedy [${PROMPTS[$i]}]: got $out, want text $(printf '%q' "${REF[$i]}")"
    fi
  done
}

STREAM_RUN=0
start_stream() {  # sets STREAM_PID, STREAM_OUT, STREAM_PROGRESS
  STREAM_RUN=$((STREAM_RUN + 1))
  STREAM_OUT=$WORK/stream$STREAM_RUN.out
  STREAM_PROGRESS=$WORK/stream$STREAM_RUN.progress
  : >"$STREAM_PROGRESS"
  ip netns exec "$NS_C" "$PY" "$CLIENT" stream "$NAME_C" "$HTTP_PORT" "$MODEL_NAME" "9,8,7" \
    "$LONG_TOKENS" "$STREAM_PROGRESS" >"$STREAM_OUT" 2>&1 &
  STREAM_PID=$!; PIDS+=("$STREAM_PID")
}
wait_live() {  # until the stream has LIVE_EVENTS token events (20 s at most)
  local deadline
  deadline=$(awk -v t="$(now)" 'BEGIN { printf "%.3f", t + 20 }')
  while [ "$(wc -l <"$STREAM_PROGRESS")" -lt "$LIVE_EVENTS" ]; do
    alive "$STREAM_PID" || return 1
    le "$(now)" "$deadline" || return 1
    sleep 0.05
  done
}
start_live_stream() {  # start_live_stream WHAT: a long stream that is live, or return 1
  local attempt
  for attempt in 1 2 3; do
    start_stream
    wait_live && return 0
    alive "$STREAM_PID" && return 1
    wait "$STREAM_PID" 2>/dev/null
    [ $attempt -lt 3 ] && flapped "$(tail -n 1 "$STREAM_OUT")" || return 1
    retry_after_flap "$1"
  done
  return 1
}

# watch_fault T0 BOUND PID...: polls until the stream client, every PID and /readyz have all
# come down (or T0 + BOUND); sets T_STREAM, T_DOWN and T_EXIT[pid] (empty = did not happen).
declare -A T_EXIT RC_EXIT
watch_fault() {
  local t0=$1 bound=$2 deadline pid pending t; shift 2
  deadline=$(awk -v t="$t0" -v s="$bound" 'BEGIN { printf "%.3f", t + s }')
  T_STREAM="" T_DOWN=""
  for pid in "$@"; do T_EXIT[$pid]="" RC_EXIT[$pid]=""; done
  while le "$(now)" "$deadline"; do
    pending=0
    if [ -z "$T_STREAM" ]; then
      if alive "$STREAM_PID"; then pending=1; else T_STREAM=$(now); fi
    fi
    for pid in "$@"; do
      [ -n "${T_EXIT[$pid]}" ] && continue
      if alive "$pid"; then pending=1
      else T_EXIT[$pid]=$(now); wait "$pid" 2>/dev/null; RC_EXIT[$pid]=$?; fi
    done
    if [ -z "$T_DOWN" ]; then
      t=$(now)
      if [ "$(http_code /readyz)" != 200 ]; then T_DOWN=$t; else pending=1; fi
    fi
    [ $pending = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

# stream_result: reads the client's JSON (STREAM_JSON, S_ERROR, S_EVENTS, S_TEND).
stream_result() {
  if alive "$STREAM_PID"; then
    note "the stream client still runs: killing it"
    { kill -9 "$STREAM_PID"; wait "$STREAM_PID"; } 2>/dev/null
  fi
  wait "$STREAM_PID" 2>/dev/null
  STREAM_JSON=$(tail -n 1 "$STREAM_OUT")
  S_ERROR=$(json_field "$STREAM_JSON" error 2>/dev/null || echo "unparsable: $STREAM_JSON")
  S_EVENTS=$(json_field "$STREAM_JSON" events 2>/dev/null || echo 0)
  S_FINISH=$(json_field "$STREAM_JSON" finish_reason 2>/dev/null || echo "")
  S_TEND=$(json_field "$STREAM_JSON" t_end 2>/dev/null || echo "")
  [ -n "$S_TEND" ] || S_TEND=$T_STREAM
}

# --- reference: one single-rank worker and a router on host C's loopback --------------------
ip netns exec "$NS_C" env -i PATH="$PATH" HOME="${HOME:-/root}" "$BIN/expertmesh-worker" \
  --model "$MODEL" --host 127.0.0.1 --port 50071 --kv-budget 64MiB --threads 1 \
  --compute-dtype f32 --grace-s 1 >"$WORK/reference-worker.log" 2>&1 &
REF_WORKER=$!; PIDS+=("$REF_WORKER")
ip netns exec "$NS_C" env -i PATH="$PATH" HOME="${HOME:-/root}" "$BIN/expertmesh-router" \
  --model-dir "$MODEL" --workers 127.0.0.1:50071 --host 127.0.0.1 --http-port 18000 \
  --grpc-port -1 --poll-ms 200 --grace-s 1 >"$WORK/reference-router.log" 2>&1 &
REF_ROUTER=$!; PIDS+=("$REF_ROUTER")
REF=()
deadline=$(awk -v t="$(now)" -v s="$START_BOUND_S" 'BEGIN { printf "%.3f", t + s }')
until [ "$(http_code /readyz 127.0.0.1 18000)" = 200 ]; do
  le "$(now)" "$deadline" || fatal "reference: the single-rank worker and router did not get ready"
  sleep 0.1
done
for i in "${!PROMPTS[@]}"; do
  out=$(in_ns "$NS_C" "$PY" "$CLIENT" complete 127.0.0.1 18000 "$MODEL_NAME" "${PROMPTS[$i]}" \
        "$MAX_TOKENS")
  [ "$(json_field "$out" status)" = 200 ] && [ "$(json_field "$out" finish_reason)" = length ] \
    || fatal "reference: [${PROMPTS[$i]}] failed: $out"
  REF[$i]=$(json_field "$out" text)
done
pass "reference: single-rank greedy outputs for ${#PROMPTS[@]} prompts (e.g. $(printf '%q' "${REF[0]}"))"
stop "$REF_ROUTER"; stop "$REF_WORKER"

# --- the group across hosts A and B, the router on host C -----------------------------------
start_group || fatal "group: leader on host A did not serve within ${START_BOUND_S}s"
ip netns exec "$NS_C" env -i PATH="$PATH" HOME="${HOME:-/root}" "$BIN/expertmesh-router" \
  --model-dir "$MODEL" --workers "dns:///$NAME_A:$WORKER_PORT" --host 0.0.0.0 \
  --http-port "$HTTP_PORT" --grpc-port -1 --poll-ms 200 --grace-s "$GRACE_S" \
  >"$WORK/router-hostC.log" 2>&1 &
ROUTER_PID=$!; PIDS+=("$ROUTER_PID")
wait_ready "$START_BOUND_S" || fatal "router on host C did not report ready within ${START_BOUND_S}s"
pass "group: rank 0 on $NAME_A and rank 1 on $NAME_B joined through LWS_* variables; router found dns:///$NAME_A:$WORKER_PORT"
grep -q "LWS_LEADER_ADDRESS" "$LEADER_LOG" && grep -q "POD_IP" "$FOLLOWER_LOG" \
  && pass "group: both ranks report their placement from LWS_WORKER_INDEX/LWS_LEADER_ADDRESS/POD_IP" \
  || fail "group: rank logs do not show LWS placement ($(grep -h 'joining through' "$LEADER_LOG" "$FOLLOWER_LOG" | head -2))"
grep -q "group transport gloo: 1 of 2 ranks share the leader's /dev/shm" "$LEADER_LOG" \
  && grep -q "group transport gloo" "$FOLLOWER_LOG" \
  && pass "group: ranks on two hosts chose Gloo by themselves (the follower could not open the leader's shared memory)" \
  || fail "group: transport not Gloo across hosts ($(grep -h 'group transport' "$LEADER_LOG" "$FOLLOWER_LOG" | head -2))"
# The Gloo pairs run over the real interfaces: the leader holds TCP connections to host B.
if in_ns "$NS_A" ss -tn state established 2>/dev/null | grep -q "$IP_B:"; then
  pass "group: host A has established TCP connections to host B ($IP_B)"
else
  fail "group: no TCP connection between host A and host B"
fi
greedy_check "multihost"

# --- fault 1: every process of host B killed mid-stream ----------------------------------------
note "fault 1: kill all processes of host B ($NAME_B) mid-stream"
start_live_stream "fault 1" || fatal "fault 1: the long stream did not start ($(cat "$STREAM_OUT"))"
T_KILL=$(now)
victims=$(ns_pids "$NS_B")
# shellcheck disable=SC2086
{ kill -9 $victims; wait "$FOLLOWER_PID"; } 2>/dev/null
watch_fault "$T_KILL" "$DOWN_BOUND_S" "$LEADER_PID" "$FOLLOWER_PID"
stream_result
note "fault 1: killed pids [${victims% }] on host B after $(wc -l <"$STREAM_PROGRESS") events"
[ -n "$S_ERROR" ] && [ "$S_FINISH" != length ] && [ "$S_EVENTS" -lt "$LONG_TOKENS" ] \
  && pass "fault 1: the stream ended with an error after $S_EVENTS of $LONG_TOKENS tokens: $S_ERROR" \
  || fail "fault 1: the stream did not end with an error: $STREAM_JSON"
d=$(secs "$T_KILL" "$S_TEND")
le "$d" "$KILL_STREAM_BOUND_S" && pass "fault 1: stream error ${d}s after the kill (bound ${KILL_STREAM_BOUND_S}s)" \
  || fail "fault 1: stream error ${d}s after the kill (bound ${KILL_STREAM_BOUND_S}s)"
if [ -n "${T_EXIT[$LEADER_PID]}" ]; then
  d=$(secs "$T_KILL" "${T_EXIT[$LEADER_PID]}")
  le "$d" "$KILL_LEADER_BOUND_S" && [ "${RC_EXIT[$LEADER_PID]}" != 0 ] \
    && pass "fault 1: the leader on host A exited ${d}s after the kill with status ${RC_EXIT[$LEADER_PID]} (bound ${KILL_LEADER_BOUND_S}s)" \
    || fail "fault 1: the leader exited ${d}s after the kill with status ${RC_EXIT[$LEADER_PID]} (bound ${KILL_LEADER_BOUND_S}s, non-zero)"
else
  fail "fault 1: the leader on host A still runs $(secs "$T_KILL" "$(now)")s after the kill (bound ${KILL_LEADER_BOUND_S}s)"
fi
if [ -n "$T_DOWN" ]; then
  pass "fault 1: router /readyz non-200 $(secs "$T_KILL" "$T_DOWN")s after the kill (bound ${DOWN_BOUND_S}s)"
else
  fail "fault 1: router /readyz still 200 after ${DOWN_BOUND_S}s"
fi
in_ns "$NS_C" "$PY" "$CLIENT" get "$NAME_C" "$HTTP_PORT" /metrics body \
  | grep -q "^expertmesh_worker_group_up{group=\"$IP_A:$WORKER_PORT\"} 0" \
  && pass "fault 1: /metrics shows expertmesh_worker_group_up{group=\"$IP_A:$WORKER_PORT\"} 0" \
  || fail "fault 1: /metrics does not show the group down"
[ -z "$(ns_pids "$NS_A")$(ns_pids "$NS_B" | tr -d ' ')" ] && alive "$ROUTER_PID" \
  && pass "fault 1: no process left on hosts A and B; the router still runs" \
  || fail "fault 1: left on A: [$(ns_pids "$NS_A")] B: [$(ns_pids "$NS_B")]; router alive: $(alive "$ROUTER_PID" && echo yes || echo no)"

# --- restart, then fault 2: host B's link cut mid-stream ---------------------------------------
T_RESTART=$(now)
start_group || fatal "restart 1: leader did not serve within ${START_BOUND_S}s"
wait_ready "$START_BOUND_S" || fatal "restart 1: the router did not see the group again within ${START_BOUND_S}s"
pass "restart 1: the router serves through the restarted group $(secs "$T_RESTART" "$(now)")s after its start"
greedy_check "restart 1"

note "fault 2: ip link set veth-b down (host B's bridge port) mid-stream"
start_live_stream "fault 2" || fatal "fault 2: the long stream did not start ($(cat "$STREAM_OUT"))"
T_CUT=$(now)
ip -n "$NS_BR" link set veth-b down || fatal "fault 2: ip link set veth-b down"
watch_fault "$T_CUT" "$((CUT_EXIT_BOUND_S + 4))" "$LEADER_PID" "$FOLLOWER_PID"
stream_result
note "fault 2: cut after $(wc -l <"$STREAM_PROGRESS") events"
[ -n "$S_ERROR" ] && [ "$S_FINISH" != length ] && [ "$S_EVENTS" -lt "$LONG_TOKENS" ] \
  && pass "fault 2: the stream ended with an error after $S_EVENTS of $LONG_TOKENS tokens: $S_ERROR" \
  || fail "fault 2: the stream did not end with an error: $STREAM_JSON"
d=$(secs "$T_CUT" "$S_TEND")
note "fault 2: link-down detection: stream error ${d}s after the cut (--comm-timeout-s $COMM_TIMEOUT_S)"
le "$CUT_MIN_S" "$d" && le "$d" "$CUT_STREAM_BOUND_S" \
  && pass "fault 2: the collective timeout fired: stream error ${d}s after the cut (bound ${CUT_MIN_S}..${CUT_STREAM_BOUND_S}s)" \
  || fail "fault 2: stream error ${d}s after the cut (bound ${CUT_MIN_S}..${CUT_STREAM_BOUND_S}s)"
case $S_ERROR in
  *"Timed out"*|*DEADLINE*|*"timed out"*) pass "fault 2: the error names the collective timeout" ;;
  *) fail "fault 2: the error does not name a timeout: $S_ERROR" ;;
esac
for role in leader follower; do
  if [ $role = leader ]; then pid=$LEADER_PID host=A; else pid=$FOLLOWER_PID host=B; fi
  if [ -n "${T_EXIT[$pid]}" ]; then
    d=$(secs "$T_CUT" "${T_EXIT[$pid]}")
    le "$d" "$CUT_EXIT_BOUND_S" && [ "${RC_EXIT[$pid]}" != 0 ] \
      && pass "fault 2: the $role on host $host exited ${d}s after the cut with status ${RC_EXIT[$pid]} (bound ${CUT_EXIT_BOUND_S}s)" \
      || fail "fault 2: the $role on host $host exited ${d}s after the cut with status ${RC_EXIT[$pid]} (bound ${CUT_EXIT_BOUND_S}s, non-zero)"
  else
    fail "fault 2: the $role on host $host still runs $(secs "$T_CUT" "$(now)")s after the cut (bound ${CUT_EXIT_BOUND_S}s)"
  fi
done
if [ -n "$T_DOWN" ]; then
  pass "fault 2: router /readyz non-200 $(secs "$T_CUT" "$T_DOWN")s after the cut (bound $((CUT_EXIT_BOUND_S + 4))s)"
else
  fail "fault 2: router /readyz still 200 after $((CUT_EXIT_BOUND_S + 4))s"
fi
[ -z "$(ns_pids "$NS_A" | tr -d ' ')$(ns_pids "$NS_B" | tr -d ' ')" ] && alive "$ROUTER_PID" \
  && pass "fault 2: no process left on hosts A and B; the router still runs" \
  || fail "fault 2: left on A: [$(ns_pids "$NS_A")] B: [$(ns_pids "$NS_B")]; router alive: $(alive "$ROUTER_PID" && echo yes || echo no)"

ip -n "$NS_BR" link set veth-b up || fatal "ip link set veth-b up"
T_RESTART=$(now)
start_group || fatal "restart 2: leader did not serve within ${START_BOUND_S}s"
wait_ready "$START_BOUND_S" || fatal "restart 2: the router did not see the group again within ${START_BOUND_S}s"
pass "restart 2: link up, the router serves through the restarted group $(secs "$T_RESTART" "$(now)")s after its start"
greedy_check "restart 2"

# --- orderly shutdown: SIGTERM to the leader drains and stops the follower too --------------
T_TERM=$(now)
kill -TERM "$LEADER_PID"
if wait_exit "$LEADER_PID" $((GRACE_S + 5)); then leader_rc=$EXIT_RC; else leader_rc=timeout; fi
if wait_exit "$FOLLOWER_PID" 5; then follower_rc=$EXIT_RC; else follower_rc=timeout; fi
[ "$leader_rc" = 0 ] && [ "$follower_rc" = 0 ] \
  && pass "shutdown: SIGTERM to the leader stopped both ranks cleanly in $(secs "$T_TERM" "$(now)")s" \
  || fail "shutdown: leader status $leader_rc, follower status $follower_rc"
T_TERM=$(now)
kill -TERM "$ROUTER_PID"
if wait_exit "$ROUTER_PID" $((GRACE_S + 5)); then
  [ "$EXIT_RC" = 0 ] && pass "shutdown: the router exited cleanly on SIGTERM in $(secs "$T_TERM" "$(now)")s" \
    || fail "shutdown: the router exited with status $EXIT_RC on SIGTERM"
else
  fail "shutdown: the router still runs $((GRACE_S + 5))s after SIGTERM (--grace-s $GRACE_S)"
fi
left=""
for ns in "$NS_A" "$NS_B" "$NS_C"; do
  [ -n "$(ns_pids "$ns" | tr -d ' ')" ] && left+=" $ns:[$(ns_pids "$ns")]"
done
[ -z "$left" ] && pass "shutdown: no process left running on hosts A, B and C" \
  || fail "shutdown: processes still running:$left"
[ "$FLAPS" -gt 0 ] && note "requests retried after a 503 'no healthy worker group' (missed probe): $FLAPS"
note "total $(secs "$T_START" "$(now)")s"
