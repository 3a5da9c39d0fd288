#!/usr/bin/env python3
"""Helpers of tests/deploy/validate.sh that turn rendered manifests into validator input.

  deploy_tools.py split RENDERED.yaml OUTDIR
      Writes OUTDIR/core.yaml (the objects of Kubernetes itself, for kubernetes-validate),
      OUTDIR/lws-N.json (one LeaderWorkerSet each, for check-jsonschema) and
      OUTDIR/podtemplates.yaml (the pod templates of the LeaderWorkerSets as core PodTemplate
      objects, so kubernetes-validate checks them against Kubernetes' own Pod schema too).
  deploy_tools.py lws-schema CRD.yaml OUT.json
      Extracts the openAPIV3Schema of the LeaderWorkerSet CRD (version v1) as a JSON Schema
      that rejects unknown fields, as `kubectl apply --validate=strict` does.
  deploy_tools.py list-maps CRD.yaml LWS.json...
      Checks what a JSON Schema cannot say: entries of lists the CRD declares as maps
      (x-kubernetes-list-type: map, e.g. containers by name, env by name) are unique by key.
"""
import copy
import json
import os
import sys

import yaml

LWS_API = "leaderworkerset.x-k8s.io/v1"


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def split(rendered, outdir):
    os.makedirs(outdir, exist_ok=True)
    core, templates, lws_count = [], [], 0
    for doc in load_docs(rendered):
        if doc.get("apiVersion") == LWS_API and doc.get("kind") == "LeaderWorkerSet":
            lws_count += 1
            with open(os.path.join(outdir, f"lws-{lws_count}.json"), "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1)
            lwt = doc["spec"]["leaderWorkerTemplate"]
            for role in ("leaderTemplate", "workerTemplate"):
                if role in lwt:
                    templates.append({
                        "apiVersion": "v1",
                        "kind": "PodTemplate",
                        "metadata": {
                            "name": f"{doc['metadata']['name']}-{role.lower()}",
                            "namespace": doc["metadata"].get("namespace", "default"),
                        },
                        "template": copy.deepcopy(lwt[role]),
                    })
        elif "." in doc.get("apiVersion", "").split("/")[0] and not any(
                doc["apiVersion"].startswith(g) for g in CORE_GROUPS):
            raise SystemExit(f"split: no schema for {doc['apiVersion']} {doc.get('kind')}: "
                             "add a validator for it to tests/deploy/validate.sh")
        else:
            core.append(doc)
    with open(os.path.join(outdir, "core.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(core, f, sort_keys=False)
    with open(os.path.join(outdir, "podtemplates.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump_all(templates, f, sort_keys=False)
    print(f"split: {len(core)} core objects, {lws_count} LeaderWorkerSet, "
          f"{len(templates)} pod templates")


# API groups with a dot that kubernetes-validate knows (Kubernetes' own).
CORE_GROUPS = ("networking.k8s.io/", "policy/", "rbac.authorization.k8s.io/",
               "scheduling.k8s.io/", "storage.k8s.io/", "coordination.k8s.io/")


def lws_crd_schema(crd_path):
    docs = load_docs(crd_path)
    if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"{crd_path}: not one CustomResourceDefinition")
    crd = docs[0]
    if crd["spec"]["group"] != "leaderworkerset.x-k8s.io":
        raise SystemExit(f"{crd_path}: group {crd['spec']['group']}, not leaderworkerset.x-k8s.io")
    for version in crd["spec"]["versions"]:
        if version["name"] == "v1":
            return version["schema"]["openAPIV3Schema"]
    raise SystemExit(f"{crd_path}: no version v1")


def strict(node):
    """Closes every object schema that lists its properties (unless the CRD keeps unknown
    fields there), the JSON Schema form of Kubernetes' strict field validation."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("properties", "patternProperties", "definitions"):
                for sub in value.values():
                    strict(sub)
            elif key not in ("enum", "default", "required", "description"):
                strict(value)
        if ("properties" in node and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
    elif isinstance(node, list):
        for item in node:
            strict(item)
    return node


def lws_schema(crd_path, out):
    schema = strict(copy.deepcopy(lws_crd_schema(crd_path)))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["properties"]["apiVersion"] = {"type": "string", "enum": [LWS_API]}
    schema["properties"]["kind"] = {"type": "string", "enum": ["LeaderWorkerSet"]}
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind",
                                                                    "metadata", "spec"})
    with open(out, "w", encoding="utf-8") as f:
        json.dump(schema, f)
    print(f"lws-schema: {out} (strict, from {crd_path})")


def list_map_problems(schema, value, path="$"):
    problems = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                problems += list_map_problems(sub_schema, sub, f"{path}.{key}")
    elif isinstance(value, list):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = set()
            for item in value:
                k = tuple(item.get(name) for name in keys) if isinstance(item, dict) else item
                if k in seen:
                    problems.append(f"{path}: two entries with {'/'.join(keys)} = {k}")
                seen.add(k)
        item_schema = schema.get("items", {})
        for i, item in enumerate(value):
            problems += list_map_problems(item_schema, item, f"{path}[{i}]")
    return problems


def list_maps(crd_path, files):
    schema = lws_crd_schema(crd_path)
    problems = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            problems += [f"{path}: {p}" for p in list_map_problems(schema, json.load(f))]
    for p in problems:
        print(f"list-maps: {p}", file=sys.stderr)
    print(f"list-maps: {len(files)} LeaderWorkerSet file(s), {len(problems)} problem(s)")
    return 1 if problems else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "split":
        split(argv[2], argv[3])
        return 0
    if len(argv) == 4 and argv[1] == "lws-schema":
        lws_schema(argv[2], argv[3])
        return 0
    if len(argv) >= 4 and argv[1] == "list-maps":
        return list_maps(argv[2], argv[3:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
