"""The checkers of check_invariants.py: each takes the documents of one rendered overlay and
the context read from the sources (ctx), and returns a list of problems (empty: it holds)."""
import os
import re
import shlex

from manifests import (GPU, LWS_INDEX_LABEL, LWS_NAME_LABEL, RENDEZVOUS_DEFAULT_PORT,
                       byte_size, container_port, int_flag, leaders, objects,
                       pods, probe_budget, probe_port, quantity, routers, selects, workers)


def check_resources(docs, ctx):
    problems = []
    for pod in pods(docs):
        for c in pod.containers():
            r = c.get("resources") or {}
            where = f"{pod.where()} container {c['name']}"
            for part in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in (r.get(part) or {}):
                        problems.append(f"{where}: no resources.{part}.{res}")
            req, lim = r.get("requests") or {}, r.get("limits") or {}
            for res in set(req) & set(lim):
                if quantity(req[res]) > quantity(lim[res]):
                    problems.append(f"{where}: {res} request {req[res]} above limit {lim[res]}")
            if GPU in req or GPU in lim:
                if req.get(GPU) != lim.get(GPU):
                    problems.append(f"{where}: {GPU} requests and limits differ")
    return problems


def check_probes(docs, ctx):
    problems = []
    for pod in pods(docs):
        if pod.kind == "Job":
            continue  # runs to completion
        if pod.role == "follower":
            # A follower rank serves nothing: a probe of the leader's server would never pass
            # and would restart the group forever. It exits when its group breaks.
            for c in pod.containers(init=False):
                for name in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if name in c:
                        problems.append(f"{pod.where()} container {c['name']}: {name} on a "
                                        "follower rank, which has no server")
            continue
        for c in pod.containers(init=False):
            where = f"{pod.where()} container {c['name']}"
            if "readinessProbe" not in c:
                problems.append(f"{where}: no readinessProbe")
            if "livenessProbe" not in c and "startupProbe" not in c:
                problems.append(f"{where}: neither livenessProbe nor startupProbe")
            for name in ("readinessProbe", "livenessProbe", "startupProbe"):
                if name in c:
                    kind, port = probe_port(c, c[name])
                    if kind is None or port is None:
                        problems.append(f"{where}: {name} has no port of this container")
    for pod in leaders(docs):
        c, flags = pod.main(), pod.flags()
        where = pod.where()
        port = int(flags.get("--port", 0))
        for name in ("readinessProbe", "startupProbe"):
            probe = c.get(name)
            if probe is None:
                problems.append(f"{where}: worker without {name} (weights take time to load)")
                continue
            kind, at = probe_port(c, probe)
            if kind != "grpc" or at != port:
                problems.append(f"{where}: {name} is {kind} on {at}, not grpc.health.v1 on "
                                f"--port {port}")
        gpus = int((c.get("resources", {}).get("limits") or {}).get(GPU, 0))
        startup = c.get("startupProbe")
        need = 1800 if gpus else 300
        if startup and probe_budget(startup) < need:
            problems.append(f"{where}: startupProbe allows {probe_budget(startup)} s to load "
                            f"weights, less than {need} s")
        join = float(flags.get("--comm-timeout-s", 30))
        if startup and pod.size > 1 and probe_budget(startup) <= join:
            problems.append(f"{where}: startupProbe allows {probe_budget(startup)} s, not more "
                            f"than the group join may take (--comm-timeout-s {join})")
        live = c.get("livenessProbe")
        if live and "grpc" in live:
            grace = float(flags.get("--grace-s", 30))
            if probe_budget(live) - live.get("initialDelaySeconds", 0) <= grace:
                problems.append(f"{where}: gRPC liveness fails while draining (NOT_SERVING for "
                                f"up to --grace-s {grace}) and would kill the drain")
    for pod in routers(docs):
        c = pod.main()
        paths = {name: c.get(name, {}).get("httpGet", {}).get("path")
                 for name in ("readinessProbe", "livenessProbe")}
        if paths["readinessProbe"] not in ctx["router_paths"]:
            problems.append(f"{pod.where()}: readiness path {paths['readinessProbe']} is not "
                            "served by router/http_server.cc")
        if paths["readinessProbe"] != "/readyz":
            problems.append(f"{pod.where()}: readiness is not /readyz (no healthy group → 503)")
        if paths["livenessProbe"] not in ctx["router_paths"]:
            problems.append(f"{pod.where()}: liveness path {paths['livenessProbe']} is not "
                            "served by router/http_server.cc")
    return problems


def check_images(docs, ctx):
    problems = []
    for pod in pods(docs):
        for c in pod.containers():
            image = str(c.get("image", ""))
            where = f"{pod.where()} container {c['name']}"
            if "@sha256:" in image:
                continue
            last = image.rsplit("/", 1)[-1]
            if ":" not in last:
                problems.append(f"{where}: image {image!r} has no tag")
            elif last.rsplit(":", 1)[1] in ("latest", ""):
                problems.append(f"{where}: image {image!r} is not pinned")
    return problems


def check_parallelism(docs, ctx):
    problems = []
    for lws in objects(docs, "LeaderWorkerSet"):
        policy = lws["spec"]["leaderWorkerTemplate"].get("restartPolicy")
        if policy != "RecreateGroupOnPodRestart":
            problems.append(f"LeaderWorkerSet/{lws['metadata']['name']}: restartPolicy "
                            f"{policy}, not RecreateGroupOnPodRestart")
    found = workers(docs)
    if not found:
        problems.append("no expertmesh-worker pods")
    for lws in objects(docs, "LeaderWorkerSet"):
        lwt = lws["spec"]["leaderWorkerTemplate"]
        if "leaderTemplate" not in lwt:
            continue
        lead, follow = lwt["leaderTemplate"]["spec"], lwt["workerTemplate"]["spec"]
        name = lws["metadata"]["name"]
        for key in sorted(set(lead) | set(follow)):
            if key not in ("containers",) and lead.get(key) != follow.get(key):
                problems.append(f"LeaderWorkerSet/{name}: leader and followers differ in {key}")
        for lc, fc in zip(lead.get("containers", []), follow.get("containers", [])):
            for key in sorted(set(lc) | set(fc)):
                if key in ("readinessProbe", "livenessProbe", "startupProbe", "ports"):
                    continue
                if lc.get(key) != fc.get(key):
                    problems.append(f"LeaderWorkerSet/{name}: leader and follower container "
                                    f"{lc.get('name')} differ in {key} (every rank runs the "
                                    "same command)")
        if len(lead.get("containers", [])) != len(follow.get("containers", [])):
            problems.append(f"LeaderWorkerSet/{name}: leader and followers differ in containers")
    for pod in found:
        where, c, flags = pod.where(), pod.main(), pod.flags()
        if pod.kind != "LeaderWorkerSet":
            problems.append(f"{where}: workers run as a LeaderWorkerSet, not a {pod.kind}")
        try:
            tp, ep = int_flag(flags, "--tp", where), int_flag(flags, "--ep", where)
        except (KeyError, ValueError) as e:
            problems.append(str(e))
            continue
        gpus = int((c.get("resources", {}).get("limits") or {}).get(GPU, 0))
        ranks_per_pod = gpus if gpus else 1  # one rank per GPU; a CPU pod is one rank
        # The worker runs that many ranks only when told so (--ranks-per-pod, one process each).
        told = int(flags.get("--ranks-per-pod", "1"))
        if told != ranks_per_pod:
            problems.append(f"{where}: {ranks_per_pod} rank(s) per pod (one per GPU) but "
                            f"--ranks-per-pod {told}")
        if ranks_per_pod * pod.size != tp * ep:
            problems.append(f"{where}: {ranks_per_pod} rank(s) per pod x size {pod.size} = "
                            f"{ranks_per_pod * pod.size}, but --tp {tp} x --ep {ep} = {tp * ep}")
        device = flags.get("--device", "auto")
        if gpus and device == "cpu":
            problems.append(f"{where}: {gpus} GPUs but --device cpu")
        if not gpus and device != "cpu":
            problems.append(f"{where}: no GPU but --device {device} (CPU pods say --device cpu)")
        for flag in ("--rank", "--leader"):
            if flag in flags:
                problems.append(f"{where}: {flag} in the args; ranks come from the "
                                "LeaderWorkerSet environment")
        env = {e["name"]: e for e in c.get("env", [])}
        for var in ("EXPERTMESH_RANK", "EXPERTMESH_LEADER", "EXPERTMESH_WORLD_SIZE",
                    "LWS_WORKER_INDEX", "LWS_GROUP_SIZE", "LWS_LEADER_ADDRESS"):
            if var in env:
                problems.append(f"{where}: sets {var}; LeaderWorkerSet gives each pod its own")
        pod_ip = env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {})
        if pod_ip.get("fieldPath") != "status.podIP":
            problems.append(f"{where}: POD_IP does not come from the downward API status.podIP")
        shm = [m for m in c.get("volumeMounts", []) if m.get("mountPath") == "/dev/shm"]
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        if not shm or volumes.get(shm[0]["name"], {}).get("emptyDir", {}).get(
                "medium") != "Memory":
            problems.append(f"{where}: no memory-backed emptyDir at /dev/shm")
        if not gpus and "--threads" in flags:
            cpu_limit = quantity((c.get("resources", {}).get("limits") or {}).get("cpu", 0))
            if int(flags["--threads"]) > cpu_limit:
                problems.append(f"{where}: --threads {flags['--threads']} above its CPU limit")
        try:
            byte_size(flags.get("--kv-budget", "1GiB"))
        except ValueError as e:
            problems.append(f"{where}: --kv-budget: {e}")
    return problems


def router_deployment(docs):
    for d in objects(docs, "Deployment"):
        if any(os.path.basename(str((c.get("command") or [""])[0])) == "expertmesh-router"
               for c in d["spec"]["template"]["spec"]["containers"]):
            return d
    return None


def check_hpa(docs, ctx):
    problems = []
    router = router_deployment(docs)
    hpas = objects(docs, "HorizontalPodAutoscaler")
    if router is None:
        return ["no router Deployment"]
    if not hpas:
        return ["no HorizontalPodAutoscaler"]
    if "replicas" in router["spec"]:
        problems.append("the router Deployment sets replicas: re-applying it would fight the "
                        "HorizontalPodAutoscaler")
    for hpa in hpas:
        where = f"HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        if hpa["apiVersion"] != "autoscaling/v2":
            problems.append(f"{where}: {hpa['apiVersion']}, not autoscaling/v2")
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("apiVersion"), ref.get("kind"), ref.get("name")) != (
                "apps/v1", "Deployment", router["metadata"]["name"]):
            problems.append(f"{where}: scaleTargetRef {ref} is not the router Deployment "
                            f"{router['metadata']['name']}")
        spec = hpa["spec"]
        if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
            problems.append(f"{where}: minReplicas/maxReplicas out of order")
        metrics = spec.get("metrics", [])
        if not any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in metrics):
            problems.append(f"{where}: no CPU metric")
        pod_metrics = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
        if not pod_metrics:
            problems.append(f"{where}: no per-pod custom metric")
        for name in pod_metrics:
            if name not in ctx["router_gauges"]:
                problems.append(f"{where}: metric {name} is not a gauge of router/metrics.cc")
            if name not in ctx["adapter_metrics"]:
                problems.append(f"{where}: metric {name} has no rule in "
                                "deploy/k8s/prometheus-adapter-rules.yaml")
    return problems


def port_in(rule_port, port, protocol="TCP"):
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    if "port" not in rule_port:
        return True
    start = rule_port["port"]
    if not isinstance(start, int):
        return False  # a named port: resolved per pod, checked by name elsewhere
    return start <= port <= rule_port.get("endPort", start)


def peer_pods(peer, all_pods):
    """The pods of this namespace a NetworkPolicy peer admits; None for 'anything'."""
    if "ipBlock" in peer or "namespaceSelector" in peer:
        return None
    selector = peer.get("podSelector", {})
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return None  # podSelector {}: every pod of the namespace, present and future
    return [p for p in all_pods if selects(selector, p.labels)]


def check_networkpolicy(docs, ctx):
    problems = []
    all_pods = pods(docs)
    router_pods = routers(docs)
    policies = objects(docs, "NetworkPolicy")
    for pod in workers(docs):
        where = pod.where()
        mine = [np for np in policies if selects(np["spec"].get("podSelector", {}), pod.labels)
                and "Ingress" in np["spec"].get("policyTypes", ["Ingress"])]
        if not mine:
            problems.append(f"{where}: no NetworkPolicy restricts ingress to the workers")
            continue
        internal = int(pod.flags().get("--port", 0))
        env = {e["name"]: e.get("value") for e in pod.main().get("env", [])}
        rendezvous = int(env.get("EXPERTMESH_LEADER_PORT") or RENDEZVOUS_DEFAULT_PORT)
        router_ok = peers_ok = False
        for np in mine:
            for rule in np["spec"].get("ingress", []):
                ports = rule.get("ports") or [{}]  # no ports: every port
                sources = rule.get("from")
                admitted = [None] if not sources else [peer_pods(p, all_pods) for p in sources]
                if any(port_in(p, internal) for p in ports):
                    for group in admitted:
                        if group is None:
                            problems.append(f"NetworkPolicy/{np['metadata']['name']}: anything "
                                            f"may reach the workers' internal port {internal}")
                        elif any(p not in router_pods for p in group):
                            others = sorted({p.where() for p in group if p not in router_pods})
                            problems.append(f"NetworkPolicy/{np['metadata']['name']}: {others} "
                                            f"may reach the internal port {internal}")
                        elif router_pods and all(p in group for p in router_pods):
                            router_ok = True
                if any(port_in(p, rendezvous) for p in ports):
                    if any(g is not None and any(p.owner is pod.owner for p in g)
                           for g in admitted):
                        peers_ok = True
        if not router_ok:
            problems.append(f"{where}: no NetworkPolicy rule admits the routers to port {internal}")
        if not peers_ok:
            problems.append(f"{where}: the group's own pods may not reach the rendezvous port "
                            f"{rendezvous}")
    return problems


def prestop_sleep(container):
    return container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)


def check_grace(docs, ctx):
    problems = []
    for pod in routers(docs) + workers(docs):
        flags, c = pod.flags(), pod.main()
        grace = float(flags.get("--grace-s", 30))  # both programs default to 30 s
        period = pod.spec.get("terminationGracePeriodSeconds", 30)
        need = grace + prestop_sleep(c)
        if not period > need:
            problems.append(f"{pod.where()}: terminationGracePeriodSeconds {period} does not "
                            f"exceed --grace-s {grace} + preStop {prestop_sleep(c)} s")
    return problems


def check_discovery(docs, ctx):
    problems = []
    lws_names = {d["metadata"]["name"] for d in objects(docs, "LeaderWorkerSet")}
    services = {s["metadata"]["name"]: s for s in objects(docs, "Service")}
    for r in routers(docs):
        flags = r.flags()
        target = str(flags.get("--workers", ""))
        m = re.match(r"^dns:///([a-z0-9-]+)(\.[a-z0-9.-]+)?:([0-9]+)$", target)
        if not m:
            problems.append(f"{r.where()}: --workers {target!r} is not dns:///SERVICE:PORT")
            continue
        svc = services.get(m.group(1))
        port = int(m.group(3))
        if svc is None:
            problems.append(f"{r.where()}: --workers names Service {m.group(1)}, not rendered")
            continue
        spec = svc["spec"]
        if spec.get("clusterIP") != "None":
            problems.append(f"Service/{m.group(1)}: not headless (routers need pod addresses)")
        selector = spec.get("selector", {})
        if selector.get(LWS_INDEX_LABEL) != "0" or selector.get(LWS_NAME_LABEL) not in lws_names:
            problems.append(f"Service/{m.group(1)}: does not select only the group leaders "
                            f"({LWS_NAME_LABEL} + {LWS_INDEX_LABEL}: \"0\")")
        for w in leaders(docs):
            wflags = w.flags()
            if int(wflags.get("--port", -1)) != port:
                problems.append(f"{r.where()}: --workers port {port} is not the workers' "
                                f"--port {wflags.get('--port')}")
            if container_port(w.main(), "grpc") != int(wflags.get("--port", -1)):
                problems.append(f"{w.where()}: containerPort grpc differs from --port")
            for p in spec.get("ports", []):
                if container_port(w.main(), p.get("targetPort", p["port"])) != port:
                    problems.append(f"Service/{m.group(1)}: targetPort {p.get('targetPort')} is "
                                    f"not the workers' port {port}")
            if flags.get("--model-name") != wflags.get("--model-name"):
                problems.append(f"{r.where()}: --model-name {flags.get('--model-name')} differs "
                                f"from the workers' {wflags.get('--model-name')}")
            if flags.get("--model-dir") != wflags.get("--model"):
                problems.append(f"{r.where()}: --model-dir {flags.get('--model-dir')} is not the "
                                f"workers' --model {wflags.get('--model')}")
    for pod in routers(docs) + workers(docs):
        model = str(pod.flags().get(
            "--model-dir" if pod.program() == "expertmesh-router" else "--model"))
        mounts = [m for m in pod.main().get("volumeMounts", [])
                  if model.startswith(m["mountPath"].rstrip("/") + "/")]
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        if not mounts:
            problems.append(f"{pod.where()}: model {model} is on no mounted volume")
        else:
            vol = volumes.get(mounts[0]["name"], {})
            if not mounts[0].get("readOnly") or not vol.get("persistentVolumeClaim", {}).get(
                    "readOnly"):
                problems.append(f"{pod.where()}: the model volume is not mounted read-only")
        for init in pod.spec.get("initContainers", []):
            env = {e["name"]: e.get("value") for e in init.get("env", [])}
            if "MODEL_DIR" in env and env["MODEL_DIR"] != model:
                problems.append(f"{pod.where()}: {init['name']} waits for {env['MODEL_DIR']}, "
                                f"the model is {model}")
    claims = {p["metadata"]["name"] for p in objects(docs, "PersistentVolumeClaim")}
    for pod in pods(docs):
        for v in pod.spec.get("volumes", []):
            claim = v.get("persistentVolumeClaim", {}).get("claimName")
            if claim and claim not in claims:
                problems.append(f"{pod.where()}: PersistentVolumeClaim {claim} not rendered")
    return problems


def check_secrets(docs, ctx):
    problems = []
    found = routers(docs)
    if not found:
        problems.append("no router")
    for pod in found:
        c, flags = pod.main(), pod.flags()
        for arg in c.get("args", []):
            if re.match(r"^--api-keys?(=|$)", str(arg)):
                problems.append(f"{pod.where()}: API keys passed as the flag {arg}")
        env = {e["name"]: e for e in c.get("env", [])}
        key_env = env.get("EXPERTMESH_API_KEYS")
        if key_env is not None and "secretKeyRef" not in key_env.get("valueFrom", {}):
            problems.append(f"{pod.where()}: EXPERTMESH_API_KEYS is not from a Secret")
        key_file = flags.get("--api-key-file")
        if key_file is None and key_env is None:
            problems.append(f"{pod.where()}: no API keys (--api-key-file or "
                            "EXPERTMESH_API_KEYS from a Secret)")
        if key_file is not None:
            volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
            mounts = [m for m in c.get("volumeMounts", [])
                      if str(key_file).startswith(m["mountPath"].rstrip("/") + "/")]
            if not mounts or "secret" not in volumes.get(mounts[0]["name"], {}):
                problems.append(f"{pod.where()}: --api-key-file {key_file} is not in a mounted "
                                "Secret")
    for pod in pods(docs):
        for c in pod.containers():
            for e in c.get("env", []):
                if re.search(r"(KEY|TOKEN|PASSWORD|SECRET)", e["name"]) and "value" in e:
                    problems.append(f"{pod.where()}: {e['name']} has a literal value")
    return problems


def internal_token_source(pod):
    """Where a router or worker pod gets the internal token: ("env", secret name) for
    EXPERTMESH_INTERNAL_TOKEN from a secretKeyRef, ("file", secret name) for
    --internal-token-file in a mounted Secret, or a problem string."""
    c, flags = pod.main(), pod.flags()
    env = {e["name"]: e for e in c.get("env", [])}
    token_env = env.get("EXPERTMESH_INTERNAL_TOKEN")
    token_file = flags.get("--internal-token-file")
    if token_file is not None:
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        mounts = [m for m in c.get("volumeMounts", [])
                  if str(token_file).startswith(m["mountPath"].rstrip("/") + "/")]
        secret = volumes.get(mounts[0]["name"], {}).get("secret") if mounts else None
        if not secret:
            return f"--internal-token-file {token_file} is not in a mounted Secret"
        return ("file", secret.get("secretName"))
    if token_env is None:
        return ("no internal token (EXPERTMESH_INTERNAL_TOKEN from a Secret or "
                "--internal-token-file): the Worker API and the rendezvous would accept anyone")
    ref = token_env.get("valueFrom", {}).get("secretKeyRef")
    if ref is None:
        return "EXPERTMESH_INTERNAL_TOKEN is not from a Secret"
    return ("env", ref.get("name"))


def check_internal_token(docs, ctx):
    """Every router and every rank holds the group credential, all from one Secret."""
    problems = []
    secrets = {}
    for pod in routers(docs) + workers(docs):
        for arg in pod.main().get("args", []):
            if re.match(r"^--internal-token(=|$)", str(arg)):
                problems.append(f"{pod.where()}: the internal token passed as the flag {arg}")
        source = internal_token_source(pod)
        if isinstance(source, str):
            problems.append(f"{pod.where()}: {source}")
        else:
            secrets.setdefault(source[1], []).append(pod.where())
    if len(secrets) > 1:
        problems.append("routers and workers take the internal token from different Secrets: "
                        + "; ".join(f"{name}: {', '.join(w)}" for name, w in secrets.items()))
    return problems


def check_security(docs, ctx):
    problems = []
    for pod in pods(docs):
        sc = pod.spec.get("securityContext", {})
        if not sc.get("runAsNonRoot"):
            problems.append(f"{pod.where()}: runAsNonRoot is not set")
        for c in pod.containers():
            csc = c.get("securityContext", {})
            if csc.get("allowPrivilegeEscalation", True) or csc.get("privileged"):
                problems.append(f"{pod.where()} container {c['name']}: may escalate privileges")
    return problems


def check_ports_and_disruption(docs, ctx):
    problems = []
    all_pods = pods(docs)
    for svc in objects(docs, "Service"):
        chosen = [p for p in all_pods
                  if p.kind != "Job" and selects(svc["spec"].get("selector"), p.labels)]
        if not chosen:
            problems.append(f"Service/{svc['metadata']['name']}: selects no pod")
        for pod in chosen:
            for p in svc["spec"].get("ports", []):
                if container_port(pod.main(), p.get("targetPort", p["port"])) is None:
                    problems.append(f"Service/{svc['metadata']['name']}: targetPort "
                                    f"{p.get('targetPort')} is no port of {pod.where()}")
    for r in routers(docs):
        flags = r.flags()
        for flag, name in (("--http-port", "http"), ("--grpc-port", "grpc")):
            if container_port(r.main(), name) != int(flags.get(flag, -2)):
                problems.append(f"{r.where()}: containerPort {name} differs from {flag}")
        if flags.get("--host") != "0.0.0.0":
            problems.append(f"{r.where()}: --host {flags.get('--host')}: the router listens on "
                            "127.0.0.1 by default, unreachable from other pods")
    for w in workers(docs):
        # The worker listens on 127.0.0.1 unless told: routers and other ranks could not reach
        # its API or its group's rendezvous.
        if w.flags().get("--host") != "0.0.0.0":
            problems.append(f"{w.where()}: --host {w.flags().get('--host')} is not 0.0.0.0 "
                            "(the worker's default is 127.0.0.1)")
    for role, chosen in (("router", routers(docs)), ("worker", workers(docs))):
        if not any(selects(pdb["spec"]["selector"], p.labels)
                   for pdb in objects(docs, "PodDisruptionBudget") for p in chosen):
            problems.append(f"no PodDisruptionBudget covers the {role} pods")
    return problems


def check_flags(docs, ctx):
    problems = []
    for pod in pods(docs):
        for c in pod.containers():
            command = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
            invocations = []
            if command and os.path.basename(command[0]) in ctx["program_flags"]:
                invocations.append((os.path.basename(command[0]), command[1:]))
            if command[:2] == ["/bin/sh", "-c"]:
                for line in command[2].replace("\\\n", " ").splitlines():
                    words = shlex.split(line, posix=True) if line.strip() else []
                    for i, word in enumerate(words):
                        if word == "expertmesh" and i + 1 < len(words):
                            sub = f"expertmesh {words[i + 1]}"
                            if sub in ctx["program_flags"]:
                                invocations.append((sub, words[i + 2:]))
            for program, args in invocations:
                known = ctx["program_flags"][program]
                for arg in args:
                    flag = arg.split("=", 1)[0]
                    if flag.startswith("--") and flag not in known:
                        problems.append(f"{pod.where()} container {c['name']}: {program} has no "
                                        f"flag {flag}")
    return problems


def check_adapter_rule(docs, ctx):
    problems = []
    if not ctx["adapter_metrics"]:
        problems.append("deploy/k8s/prometheus-adapter-rules.yaml serves no metric")
    for name, rule in ctx["adapter_metrics"].items():
        overrides = rule.get("resources", {}).get("overrides", {})
        if overrides.get("pod", {}).get("resource") != "pod" or overrides.get(
                "namespace", {}).get("resource") != "namespace":
            problems.append(f"adapter rule {name}: does not map the pod and namespace labels")
        if name not in ctx["router_gauges"]:
            problems.append(f"adapter rule {name}: not a gauge of router/metrics.cc")
        if "<<.GroupBy>>" not in rule.get("metricsQuery", ""):
            problems.append(f"adapter rule {name}: metricsQuery does not group by pod")
    return problems


CHECKERS = [check_resources, check_probes, check_images, check_parallelism, check_hpa,
            check_networkpolicy, check_grace, check_discovery, check_secrets,
            check_internal_token, check_security,
            check_ports_and_disruption, check_flags, check_adapter_rule]
