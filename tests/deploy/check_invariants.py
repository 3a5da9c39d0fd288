#!/usr/bin/env python3
"""Invariants of the rendered deploy/k8s overlays that no schema can check.

  check_invariants.py --rendered DIR --repo ROOT [--bin-dir DIR] [--counts FILE]

DIR holds one rendered overlay per file (NAME.yaml, from `kubectl kustomize`). Every checker
(checkers.py) runs on every overlay; then each checker is run once more on a copy of an
overlay that a mutation broke on purpose, and must report it (the negative self-check: a
checker that cannot fail proves nothing). The flags the manifests pass to expertmesh-worker,
expertmesh-router and `expertmesh make-model` are checked against the programs' sources
(and against their --help when --bin-dir holds built programs).

Prints one line per check and "invariants: N passed, M failed"; --counts FILE receives
"N M" for tests/deploy/validate.sh. Exit status 1 when anything failed.
"""
import argparse
import copy
import glob
import os
import re
import subprocess
import sys

import yaml

from checkers import (CHECKERS, check_adapter_rule, check_discovery, check_flags, check_grace,
                      check_hpa, check_images, check_networkpolicy, check_parallelism,
                      check_ports_and_disruption, check_probes, check_resources,
                      check_internal_token, check_secrets, check_security, port_in)
from manifests import (LWS_INDEX_LABEL, RENDEZVOUS_DEFAULT_PORT, followers, leaders,
                       objects, routers, workers)


# ---------------------------------------------------------------------------------------------
# Negative self-checks: one mutation per checker that the checker must report.


def first(kind, docs):
    return next(d for d in docs if d.get("kind") == kind)


def workers_policy(docs):
    # The NetworkPolicy that guards the workers (the router has its own).
    return next(d for d in docs if d.get("kind") == "NetworkPolicy"
                and "leaderworkerset.sigs.k8s.io/name" in
                d["spec"].get("podSelector", {}).get("matchLabels", {}))


def worker_container(docs):
    return workers(docs)[0].main()


def router_container(docs):
    return routers(docs)[0].main()


def set_flag(container, flag, value):
    args = container["args"]
    args[args.index(flag) + 1] = value


def mut_no_requests(docs):
    del worker_container(docs)["resources"]["requests"]


def mut_no_readiness(docs):
    del router_container(docs)["readinessProbe"]


def mut_latest(docs):
    c = router_container(docs)
    c["image"] = c["image"].rsplit(":", 1)[0] + ":latest"


def mut_untagged(docs):
    c = worker_container(docs)
    c["image"] = c["image"].rsplit(":", 1)[0]


def mut_parallelism(docs):
    set_flag(worker_container(docs), "--tp", "3")


def mut_ranks_per_pod(docs):
    # A pod of N GPUs told to run another number of ranks (or, on CPU, told to run 2).
    c = worker_container(docs)
    args = c.get("args") or []
    if "--ranks-per-pod" in args:
        args[args.index("--ranks-per-pod") + 1] = "3"
    else:
        c["args"] = args + ["--ranks-per-pod", "2"]


def mut_rank_flag(docs):
    worker_container(docs)["args"] += ["--rank", "0"]


def mut_follower_probe(docs):
    follower = followers(docs)[0].main()
    follower["readinessProbe"] = copy.deepcopy(leaders(docs)[0].main()["readinessProbe"])


def mut_follower_drift(docs):
    set_flag(followers(docs)[0].main(), "--kv-budget", "3GiB")


def mut_restart_policy(docs):
    first("LeaderWorkerSet", docs)["spec"]["leaderWorkerTemplate"]["restartPolicy"] = "None"


def mut_hpa_target(docs):
    first("HorizontalPodAutoscaler", docs)["spec"]["scaleTargetRef"]["name"] = "elsewhere"


def mut_hpa_metric(docs):
    hpa = first("HorizontalPodAutoscaler", docs)
    for m in hpa["spec"]["metrics"]:
        if m["type"] == "Pods":
            m["pods"]["metric"]["name"] = "expertmesh_router_queue_depth"


def mut_open_internal_port(docs):
    np = workers_policy(docs)
    np["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}],
                                  "ports": [{"protocol": "TCP", "port": 50000, "endPort": 50100}]})


def mut_no_peer_rule(docs):
    np = workers_policy(docs)
    np["spec"]["ingress"] = [r for r in np["spec"]["ingress"]
                             if not any(port_in(p, RENDEZVOUS_DEFAULT_PORT)
                                        for p in r.get("ports", []))]


def mut_short_grace(docs):
    workers(docs)[0].spec["terminationGracePeriodSeconds"] = 10


def mut_discovery(docs):
    set_flag(router_container(docs), "--workers", "dns:///expertmesh-workers:50061")


def mut_leader_selector(docs):
    for s in objects(docs, "Service"):
        s["spec"].get("selector", {}).pop(LWS_INDEX_LABEL, None)


def mut_api_key_flag(docs):
    router_container(docs)["args"] += ["--api-key", "sk-123"]


def mut_follower_without_token(docs):
    c = followers(docs)[0].main()
    c["env"] = [e for e in c.get("env", []) if e["name"] != "EXPERTMESH_INTERNAL_TOKEN"]


def mut_router_other_token(docs):
    for e in router_container(docs).get("env", []):
        if e["name"] == "EXPERTMESH_INTERNAL_TOKEN":
            e["valueFrom"]["secretKeyRef"]["name"] = "another-token"


def mut_worker_host(docs):
    c = worker_container(docs)
    i = c["args"].index("--host")
    del c["args"][i:i + 2]


def mut_root(docs):
    routers(docs)[0].spec["securityContext"]["runAsNonRoot"] = False


def mut_router_host(docs):
    set_flag(router_container(docs), "--host", "127.0.0.1")


def mut_unknown_flag(docs):
    worker_container(docs)["args"] += ["--pipeline-parallel", "2"]


def mut_adapter(docs, ctx):
    for rule in ctx["adapter_metrics"].values():
        rule["resources"] = {"template": "<<.Resource>>"}


NEGATIVE = [
    (check_resources, mut_no_requests, "a worker without resource requests"),
    (check_probes, mut_no_readiness, "a router without a readiness probe"),
    (check_images, mut_latest, "an image tagged latest"),
    (check_images, mut_untagged, "an image without a tag"),
    (check_parallelism, mut_parallelism, "--tp that does not match GPUs x size"),
    (check_parallelism, mut_rank_flag, "a per-pod --rank flag"),
    (check_parallelism, mut_ranks_per_pod, "--ranks-per-pod that does not match GPUs per pod"),
    (check_parallelism, mut_restart_policy, "restartPolicy None"),
    (check_parallelism, mut_follower_drift, "followers that run other args than the leader"),
    (check_probes, mut_follower_probe, "a follower probed like the leader"),
    (check_hpa, mut_hpa_target, "an HPA that targets something else"),
    (check_hpa, mut_hpa_metric, "an HPA metric the router does not export"),
    (check_networkpolicy, mut_open_internal_port, "the internal port open to any namespace"),
    (check_networkpolicy, mut_no_peer_rule, "group pods unable to reach the rendezvous"),
    (check_grace, mut_short_grace, "terminationGracePeriodSeconds below --grace-s"),
    (check_discovery, mut_discovery, "--workers pointed at the wrong Service"),
    (check_discovery, mut_leader_selector, "a discovery Service over all pods"),
    (check_secrets, mut_api_key_flag, "an API key on the command line"),
    (check_internal_token, mut_follower_without_token, "a rank without the internal token"),
    (check_internal_token, mut_router_other_token, "a router holding another group token"),
    (check_security, mut_root, "a pod allowed to run as root"),
    (check_ports_and_disruption, mut_router_host, "a router listening on loopback"),
    (check_ports_and_disruption, mut_worker_host, "a worker left on its loopback default"),
    (check_flags, mut_unknown_flag, "a flag the worker does not have"),
    (check_adapter_rule, mut_adapter, "an adapter rule without pod/namespace mapping"),
]


# ---------------------------------------------------------------------------------------------
# What the sources say


def source_flags(repo, path):
    with open(os.path.join(repo, path), encoding="utf-8") as f:
        text = f.read()
    flags = set(re.findall(r'add_(?:option|flag)(?:_function<[^>]*>)?\(\s*"(--[a-z0-9-]+)', text))
    flags |= set(re.findall(r'AddOverride\(app,\s*"(--[a-z0-9-]+)"', text))
    if not flags:
        raise SystemExit(f"no flags found in {path}: has the flag parser changed?")
    return flags | {"--help"}


def help_flags(binary, sub=None):
    cmd = [binary] + ([sub] if sub else []) + ["--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False).stdout
    return set(re.findall(r"(--[a-z0-9-]+)", out))


def router_gauges(repo):
    with open(os.path.join(repo, "router/metrics.cc"), encoding="utf-8") as f:
        text = f.read()
    gauges = set(re.findall(r'Header\("([a-z_]+)",\s*"gauge"', text))
    gauges |= set(re.findall(r'gauge\("([a-z_]+)"', text))
    if not gauges:
        raise SystemExit("no gauges found in router/metrics.cc: has it changed?")
    return gauges


def router_paths(repo):
    # The probe and metrics routes are string literals of one path segment in the route table.
    with open(os.path.join(repo, "router/http_server.cc"), encoding="utf-8") as f:
        paths = set(re.findall(r'"(/[a-z]+)"', f.read()))
    if "/readyz" not in paths:
        raise SystemExit("no /readyz route found in router/http_server.cc: has it changed?")
    return paths


def adapter_metrics(repo):
    path = os.path.join(repo, "deploy/k8s/prometheus-adapter-rules.yaml")
    with open(path, encoding="utf-8") as f:
        cm = yaml.safe_load(f)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    out = {}
    for rule in config.get("rules", []):
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", rule.get("seriesQuery", "").strip("'\""))
        name = rule.get("name", {}).get("as") or (m.group(1) if m else None)
        if name:
            out[name] = rule
    return out


def context(repo, bin_dir):
    programs = {
        "expertmesh-worker": source_flags(repo, "worker/startup/worker_main.cc"),
        "expertmesh-router": source_flags(repo, "router/main.cc"),
        "expertmesh make-model": source_flags(repo, "tools/cli/make_model_command.cc"),
        "expertmesh inspect": source_flags(repo, "tools/cli/inspect_command.cc"),
    }
    notes = []
    if bin_dir:
        for program in list(programs):
            binary, _, sub = program.partition(" ")
            path = os.path.join(bin_dir, binary)
            if os.access(path, os.X_OK):
                listed = help_flags(path, sub or None) | {"--help"}
                stale = sorted(programs[program] - listed)
                # A flag must be in both: the source (what the next build has) and the
                # program (what runs).
                programs[program] &= listed
                notes.append(f"{program}: flags checked against {path} --help too"
                             + (f" (not in that build yet: {stale})" if stale else ""))
            else:
                notes.append(f"{program}: no {path}; flags checked against the source only")
    return {
        "program_flags": programs,
        "router_gauges": router_gauges(repo),
        "router_paths": router_paths(repo),
        "adapter_metrics": adapter_metrics(repo),
        "notes": notes,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rendered", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--bin-dir")
    parser.add_argument("--counts")
    args = parser.parse_args()

    ctx = context(args.repo, args.bin_dir)
    for note in ctx["notes"]:
        print(f"  note: {note}")
    overlays = {}
    for path in sorted(glob.glob(os.path.join(args.rendered, "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            overlays[os.path.basename(path)[:-5]] = [d for d in yaml.safe_load_all(f) if d]
    if not overlays:
        raise SystemExit(f"no rendered overlays in {args.rendered}")

    passed = failed = 0

    def report(ok, label, details=()):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"  {'PASS' if ok else 'FAIL'} {label}")
        for d in details:
            print(f"       {d}")

    for overlay, docs in overlays.items():
        for checker in CHECKERS:
            try:
                problems = checker(copy.deepcopy(docs), ctx)
            except Exception as e:  # a checker that crashes on a manifest is a failure too
                problems = [f"{type(e).__name__}: {e}"]
            report(not problems, f"{overlay}: {checker.__name__[6:]}", problems)

    for overlay, docs in overlays.items():
        for checker, mutate, what in NEGATIVE:
            broken, broken_ctx = copy.deepcopy(docs), copy.deepcopy(ctx)
            try:
                if mutate is mut_adapter:
                    mutate(broken, broken_ctx)
                else:
                    mutate(broken)
                problems = checker(broken, broken_ctx)
                ok = bool(problems)
                detail = [] if ok else ["the checker did not notice"]
            except Exception as e:
                ok, detail = False, [f"{type(e).__name__}: {e}"]
            report(ok, f"{overlay}: {checker.__name__[6:]} flags {what}", detail)

    print(f"invariants: {passed} passed, {failed} failed")
    if args.counts:
        with open(args.counts, "w", encoding="utf-8") as f:
            f.write(f"{passed} {failed}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
