#!/usr/bin/env python3
"""Runs the rendered cpu-small overlay's commands for real, on this machine's loopback.

  smoke_cpu_small.py --rendered cpu-small.yaml --bin-dir BUILD/bin --work DIR [--counts FILE]

What a cluster would do with the manifests, without a cluster: the model job's script
writes the model; one group of `size` ranks starts with the leader template's command, args
and environment, the LeaderWorkerSet variables set as the controller sets them
(LWS_LEADER_ADDRESS, LWS_GROUP_SIZE, LWS_WORKER_INDEX, POD_IP); the router starts with its
Deployment's args and an API key file. Only what must differ off-cluster is rewritten:
/models becomes a directory under --work, ports become free loopback ports, 0.0.0.0 and the
Service name become 127.0.0.1. Then it checks what the probes, the autoscaler and the
failure handling rely on: the leader answers grpc.health.v1 SERVING on --port; the router's
/healthz and /readyz; a completion with the key (and 401 without); the HPA's metric on
/metrics; a follower killed makes the leader exit non-zero (the container exit that makes
LeaderWorkerSet recreate the group) and the router take the group out (/readyz 503); the
group started again is found again; and every process exits 0 on SIGTERM within its
terminationGracePeriodSeconds.
Prints "smoke: N passed, M failed"; --counts FILE receives "N M".
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

LOOPBACK = "127.0.0.1"


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def rewrite(args, replace):
    out, i = [], 0
    while i < len(args):
        arg = str(args[i])
        out.append(arg)
        if arg in replace and i + 1 < len(args):
            out.append(replace[arg](str(args[i + 1])))
            i += 1
        i += 1
    return out


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def http(method, url, body=None, key=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None, ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rendered", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--counts")
    a = parser.parse_args()

    with open(a.rendered, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    lws = next(d for d in docs if d["kind"] == "LeaderWorkerSet")
    lwt = lws["spec"]["leaderWorkerTemplate"]
    size = lwt["size"]
    templates = [lwt["leaderTemplate"]["spec"]] + [lwt["workerTemplate"]["spec"]] * (size - 1)
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    router_spec = deploy["spec"]["template"]["spec"]
    router_c = router_spec["containers"][0]
    job = next(d for d in docs if d["kind"] == "Job")
    job_c = job["spec"]["template"]["spec"]["containers"][0]
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    hpa_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]
                   if m["type"] == "Pods"]

    os.makedirs(a.work, exist_ok=True)
    models = os.path.join(a.work, "models")
    os.makedirs(models, exist_ok=True)
    env_base = dict(os.environ, PATH=a.bin_dir + os.pathsep + os.environ.get("PATH", ""))
    env_base.pop("EXPERTMESH_INTERNAL_TOKEN", None)
    internal_token = os.urandom(32).hex()
    passed = failed = 0
    procs = []

    def check(ok, label, detail=""):
        nonlocal passed, failed
        passed, failed = passed + bool(ok), failed + (not ok)
        print(f"  {'PASS' if ok else 'FAIL'} {label}" + (f": {detail}" if detail and not ok
                                                        else ""))
        return ok

    def start(name, command, env):
        log = open(os.path.join(a.work, f"{name}.log"), "a", encoding="utf-8")
        p = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        procs.append((name, p, log))
        return p

    def log_text(name):
        with open(os.path.join(a.work, f"{name}.log"), encoding="utf-8") as f:
            return f.read()

    try:
        # 1. The model job's own script, with /models under --work.
        script = job_c["command"][2].replace("/models", models)
        r = subprocess.run(["/bin/sh", "-c", script], env=env_base, capture_output=True,
                           text=True, timeout=120, check=False)
        leader_c = templates[0]["containers"][0]
        model_flag = leader_c["args"][leader_c["args"].index("--model") + 1]
        model_dir = model_flag.replace("/models", models, 1)
        check(r.returncode == 0 and os.path.isfile(os.path.join(model_dir, "config.json")),
              f"model job writes {model_flag}", r.stderr[-500:])
        staging = [n for n in os.listdir(models) if n.startswith(".staging")]
        check(not staging, "model job leaves no staging directory", str(staging))
        r = subprocess.run(["/bin/sh", "-c", script], env=env_base, capture_output=True,
                           text=True, timeout=60, check=False)
        check(r.returncode == 0 and "already" in r.stdout, "model job is idempotent", r.stdout)

        # The Secrets the pods read their environment from, as the cluster would hold them.
        secrets = {("expertmesh-internal-token", "token"): internal_token}

        def container_env(c):
            env = dict(env_base)
            for e in c.get("env", []):
                source = e.get("valueFrom", {})
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
                    env[e["name"]] = LOOPBACK
                elif "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    env[e["name"]] = secrets[(ref["name"], ref["key"])]
            return env

        # 2. One group: every rank with its template's command, args and environment.
        worker_port, rendezvous, http_port, grpc_port, admin_port = free_ports(5)
        worker_replace = {
            "--model": lambda v: v.replace("/models", models, 1),
            "--port": lambda v: str(worker_port),
            "--host": lambda v: LOOPBACK,
        }
        def start_group(generation):
            """The group's pods, as LeaderWorkerSet (re)creates them: all ranks at once."""
            started = []
            for index, spec in enumerate(templates):
                c = spec["containers"][0]
                env = container_env(c)
                env["EXPERTMESH_LEADER_PORT"] = str(rendezvous)
                env.update(LWS_LEADER_ADDRESS=LOOPBACK, LWS_GROUP_SIZE=str(size),
                           LWS_WORKER_INDEX=str(index))
                command = [os.path.join(a.bin_dir, os.path.basename(c["command"][0]))]
                started.append(start(f"rank{index}", command + rewrite(c["args"],
                                                                       worker_replace), env))

            def leader_up():
                if any(p.poll() is not None for p in started):
                    raise RuntimeError("a rank exited: " + log_text("rank0")[-1000:])
                return len(re.findall(r"listening on \S+:(\d+)", log_text("rank0"))) > generation

            wait_for(leader_up, 120, "the leader to listen")
            return started

        ranks = start_group(0)
        check(f"group of {size} ranks" in log_text("rank0") or size == 1,
              f"the leader formed a group of {size} from the LeaderWorkerSet environment",
              log_text("rank0")[-500:])
        channel = grpc.insecure_channel(f"{LOOPBACK}:{worker_port}")
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10).status
        check(status == health_pb2.HealthCheckResponse.SERVING,
              "the leader answers grpc.health.v1 SERVING on --port (startup/readiness probe)")
        with socket.create_connection((LOOPBACK, worker_port), timeout=5):
            check(True, "the leader accepts TCP on --port (liveness probe)")
        # The Worker API asks for the group's token (the health check above needs none).
        get_load = channel.unary_unary("/expertmesh.internal.v1.Worker/GetLoad",
                                       request_serializer=None, response_deserializer=None)
        try:
            get_load(b"", timeout=10)
            check(False, "the Worker API refuses a call without the internal token")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.UNAUTHENTICATED,
                  "the Worker API refuses a call without the internal token", str(e.code()))
        try:
            get_load(b"", timeout=10,
                     metadata=(("authorization", f"Bearer {internal_token}"),))
            check(True, "the Worker API serves a call with the internal token")
        except grpc.RpcError as e:
            check(False, "the Worker API serves a call with the internal token", str(e))

        # 3. The router, with an API key file as the Secret would mount it.
        key = "sk-smoke-" + os.urandom(8).hex()
        key_file = os.path.join(a.work, "api-keys")
        with open(key_file, "w", encoding="utf-8") as f:
            f.write("# test key\n" + key + "\n")
        router_replace = {
            "--model-dir": lambda v: v.replace("/models", models, 1),
            "--workers": lambda v: re.sub(r"^dns:///[^:]+:\d+$",
                                          f"dns:///localhost:{worker_port}", v),
            "--host": lambda v: LOOPBACK,
            "--http-port": lambda v: str(http_port),
            "--grpc-port": lambda v: str(grpc_port),
            "--admin-host": lambda v: LOOPBACK,
            "--admin-port": lambda v: str(admin_port),
            "--api-key-file": lambda v: key_file,
        }
        router_cmd = [os.path.join(a.bin_dir, os.path.basename(router_c["command"][0]))]
        router = start("router", router_cmd + rewrite(router_c["args"], router_replace),
                       container_env(router_c))
        base = f"http://{LOOPBACK}:{http_port}"
        # Prometheus scrapes the admin port (the pod's annotation); the public port asks for a key.
        admin = f"http://{LOOPBACK}:{admin_port}"
        wait_for(lambda: router.poll() is None and http("GET", base + "/healthz")[0] == 200,
                 60, "router /healthz")
        check(True, "router /healthz (liveness probe)")
        ready = wait_for(lambda: http("GET", base + "/readyz")[0] == 200 or None, 60,
                         "router /readyz")
        check(ready, "router /readyz once the group is up (readiness probe)")
        name = router_c["args"][router_c["args"].index("--model-name") + 1]
        body = {"model": name, "prompt": "Kubernetes says hello", "max_tokens": 4}
        code, text = http("POST", base + "/v1/completions", body, key)
        ok = code == 200 and json.loads(text)["usage"]["completion_tokens"] >= 1
        check(ok, "a completion with the API key", f"{code} {text[:300]}")
        code, _ = http("POST", base + "/v1/completions", body)
        check(code == 401, "401 without the API key", str(code))
        code, _ = http("GET", base + "/metrics")
        check(code == 401, "/metrics on the public port asks for the API key", str(code))
        code, metrics = http("GET", admin + "/metrics")
        for metric in hpa_metrics:
            check(code == 200 and re.search(rf"^{metric} ", metrics, re.M),
                  f"/metrics exports the HPA's metric {metric}")

        # 4. A follower dies: the group breaks, the router takes it out; LeaderWorkerSet
        #    recreates the group, the router finds it again.
        if size > 1:
            ranks[1].kill()
            try:
                rc = ranks[0].wait(timeout=60)
            except subprocess.TimeoutExpired:
                rc = None
            check(rc not in (0, None), "the leader exits non-zero when a follower dies "
                  "(LeaderWorkerSet then recreates the group)", f"exit status {rc}")
            down = wait_for(lambda: http("GET", base + "/readyz")[0] == 503 or None, 30,
                            "router /readyz 503")
            code, metrics = http("GET", admin + "/metrics")
            check(down and re.search(r"^expertmesh_worker_group_up\{[^}]*\} 0$", metrics, re.M),
                  "the router takes the broken group out (/readyz 503, group_up 0)")
            ranks = start_group(1)
            up = wait_for(lambda: http("GET", base + "/readyz")[0] == 200 or None, 60,
                          "router /readyz after the group is back")
            code, text = http("POST", base + "/v1/completions", body, key)
            check(up and code == 200, "the recreated group serves again", f"{code} {text[:300]}")

        # 5. Termination as Kubernetes does it: SIGTERM to every pod of the group and the router.
        live = [(name, p) for name, p, _ in procs if p.poll() is None]
        for _, p in live:
            p.send_signal(signal.SIGTERM)
        periods = {"router": router_spec.get("terminationGracePeriodSeconds", 30)}
        for index, spec in enumerate(templates):
            periods[f"rank{index}"] = spec.get("terminationGracePeriodSeconds", 30)
        for name, p in live:
            try:
                rc = p.wait(timeout=periods[name])
            except subprocess.TimeoutExpired:
                rc = "still running"
            check(rc == 0, f"{name} exits 0 on SIGTERM within {periods[name]} s",
                  f"{rc}: {log_text(name)[-500:]}")
    except Exception as e:  # report, then clean up below
        check(False, "smoke run", f"{type(e).__name__}: {e}")
    finally:
        for name, p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()

    print(f"smoke: {passed} passed, {failed} failed")
    if a.counts:
        with open(a.counts, "w", encoding="utf-8") as f:
            f.write(f"{passed} {failed}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
