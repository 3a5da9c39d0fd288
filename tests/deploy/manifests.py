"""Reading rendered manifests for check_invariants.py: the pods of each workload (a
LeaderWorkerSet's leader and follower templates with the labels its controller adds), their
programs and flags, label selectors, quantities and ports."""
import os
import re

LWS_API = "leaderworkerset.x-k8s.io/v1"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"
GPU = "nvidia.com/gpu"
RENDEZVOUS_DEFAULT_PORT = 29400  # worker/comm/group_config.h kDefaultRendezvousPort

# ---------------------------------------------------------------------------------------------
# Reading the manifests


def parse_flags(args):
    """["--a", "1", "--b", "x"] -> {"--a": "1", "--b": "x"}; a flag without value -> True."""
    flags, i = {}, 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
                flags[name] = value
            elif i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
                flags[arg] = str(args[i + 1])
                i += 1
            else:
                flags[arg] = True
        i += 1
    return flags


class Pod:
    """One pod template of a workload: where it comes from and what it runs."""

    def __init__(self, owner, spec, labels, size=1, role=None):
        self.owner = owner  # the Deployment / Job / LeaderWorkerSet object
        self.kind = owner["kind"]
        self.name = owner["metadata"]["name"]
        self.spec = spec
        self.labels = dict(labels or {})
        self.size = size  # pods per LeaderWorkerSet group
        self.role = role  # "leader" / "follower" for LeaderWorkerSet pods

    def __eq__(self, other):
        return isinstance(other, Pod) and self.spec is other.spec

    def __hash__(self):
        return id(self.spec)

    def containers(self, init=True):
        out = list(self.spec.get("containers", []))
        if init:
            out += self.spec.get("initContainers", [])
        return out

    def main(self):
        return self.spec["containers"][0]

    def program(self):
        command = self.main().get("command") or []
        return os.path.basename(str(command[0])) if command else ""

    def flags(self):
        return parse_flags(self.main().get("args") or [])

    def where(self):
        return f"{self.kind}/{self.name}" + (f" ({self.role})" if self.role else "")


def pods(docs):
    out = []
    for d in docs:
        kind = d.get("kind")
        if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            t = d["spec"]["template"]
            out.append(Pod(d, t["spec"], t.get("metadata", {}).get("labels")))
        elif d.get("apiVersion") == LWS_API and kind == "LeaderWorkerSet":
            lwt = d["spec"]["leaderWorkerTemplate"]
            size = lwt.get("size", 1)
            # Without a leaderTemplate the leader is made from the workerTemplate too.
            roles = ([("leaderTemplate", "leader"), ("workerTemplate", "follower")]
                     if "leaderTemplate" in lwt else [("workerTemplate", "leader")])
            for template, role in roles:
                labels = dict(lwt[template].get("metadata", {}).get("labels") or {})
                # What the LeaderWorkerSet controller adds to every pod it creates.
                labels[LWS_NAME_LABEL] = d["metadata"]["name"]
                labels[LWS_INDEX_LABEL] = "0" if role == "leader" else "1"
                out.append(Pod(d, lwt[template]["spec"], labels, size, role))
    return out


def workers(docs):
    return [p for p in pods(docs) if p.program() == "expertmesh-worker"]


def leaders(docs):
    return [p for p in workers(docs) if p.role == "leader"]


def followers(docs):
    return [p for p in workers(docs) if p.role == "follower"]


def routers(docs):
    return [p for p in pods(docs) if p.program() == "expertmesh-router"]


def objects(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def selects(selector, labels):
    """A label selector (matchLabels / matchExpressions) or a plain map (a Service's
    selector) against a pod's labels. An empty or missing selector selects nothing here."""
    if not selector:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        match, exprs = selector.get("matchLabels", {}), selector.get("matchExpressions", [])
    else:
        match, exprs = selector, []
    if any(labels.get(key) != value for key, value in match.items()):
        return False
    for expr in exprs:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20,
          "Gi": 2**30, "Ti": 2**40}


def quantity(value):
    m = QUANTITY.match(str(value))
    if not m or m.group(2) not in SUFFIX:
        raise ValueError(f"not a quantity: {value!r}")
    return float(m.group(1)) * SUFFIX[m.group(2)]


def byte_size(text):
    """The worker's --kv-budget syntax (worker/startup/byte_size.h): 512MiB, 2GiB, 1GB."""
    m = re.match(r"^([0-9.]+)\s*([KMGT]i?B|B)?$", str(text))
    if not m:
        raise ValueError(f"not a byte size: {text!r}")
    unit = (m.group(2) or "B").replace("B", "")
    return float(m.group(1)) * SUFFIX[unit]


def container_port(container, port):
    """The number of a named or numbered port of a container, or None."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def probe_port(container, probe):
    for kind in ("grpc", "httpGet", "tcpSocket"):
        if kind in probe:
            return kind, container_port(container, probe[kind]["port"])
    return None, None


def probe_budget(probe):
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
        "failureThreshold", 3)


def int_flag(flags, name, where):
    if name not in flags:
        raise KeyError(f"{where}: no {name}")
    return int(flags[name])
