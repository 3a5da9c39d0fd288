#!/usr/bin/env python3
"""Side-by-side markdown tables of the expertmesh and transformers benchmark lines on one GPU,
for tools/gpu-check.sh's results file.

Reads the one-line records ("kind key=value ...") that cuda_model_bench, cuda_serving_bench and
hf_bench.py print, from any number of log files, and prints:
  - decode (tokens/s per batch, expertmesh with CUDA graphs and without; at batch 1 the weight
    bandwidth ratio to the copy bandwidth),
  - prefill (tokens/s),
  - serving per schedule (output tokens/s, TTFT and TPOT p50/p99),
each with expertmesh / transformers ratios (throughput: higher is better for expertmesh when
> 1; latency: transformers / expertmesh, so also > 1 when expertmesh is faster).

  compare.py model_bench.log serving_bench.log hf_bench.log
"""
import re
import sys

FIELD = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')


def parse(paths):
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            kind = line.split(" ", 1)[0].strip()
            fields = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
                      for m in FIELD.finditer(line)}
            records.append((kind, fields))
    return records


def num(fields, key):
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def main() -> int:
    recs = parse(sys.argv[1:])
    ours = {int(f["batch"]): f for k, f in recs if k == "decode" and "batch" in f}
    eager = {int(f["batch"]): f for k, f in recs if k == "decode_eager" and "batch" in f}
    hf = {int(f["batch"]): f for k, f in recs if k == "hf_decode" and "batch" in f}
    out = ["### Decode (greedy steps after the same context; expertmesh with CUDA graphs, and "
           "op by op)", "",
           "| batch | expertmesh tok/s | expertmesh no-graph tok/s | transformers tok/s | ratio | "
           "expertmesh BW/copy | transformers BW/copy |", "|---|---|---|---|---|---|---|"]
    for b in sorted(set(ours) | set(hf)):
        o, e, h = ours.get(b, {}), eager.get(b, {}), hf.get(b, {})
        out.append(f"| {b} | {fmt(num(o, 'tokens_per_s'))} | {fmt(num(e, 'tokens_per_s'))} | "
                   f"{fmt(num(h, 'tokens_per_s'))} | "
                   f"{ratio(num(o, 'tokens_per_s'), num(h, 'tokens_per_s'))} | "
                   f"{fmt(num(o, 'ratio_vs_copy'), 3)} | {fmt(num(h, 'ratio_vs_copy'), 3)} |")
    pre_o = {(f.get("seqs"), f.get("tokens_per_seq")): f for k, f in recs if k == "prefill"}
    pre_h = {(f.get("seqs"), f.get("tokens_per_seq")): f for k, f in recs if k == "hf_prefill"}
    out += ["", "### Prefill", "", "| seqs x tokens | expertmesh tok/s | transformers tok/s | "
            "ratio |", "|---|---|---|---|"]
    for key in sorted(set(pre_o) | set(pre_h), key=str):
        o, h = pre_o.get(key, {}), pre_h.get(key, {})
        out.append(f"| {key[0]} x {key[1]} | {fmt(num(o, 'tokens_per_s'), 0)} | "
                   f"{fmt(num(h, 'tokens_per_s'), 0)} | "
                   f"{ratio(num(o, 'tokens_per_s'), num(h, 'tokens_per_s'))} |")
    serv = {}
    for k, f in recs:
        if k == "serving" and "engine" in f:
            serv.setdefault(f.get("schedule", "?"), {})[f["engine"]] = f
    out += ["", "### Serving (same schedules, prompts and output lengths)", "",
            "| schedule | engine | output tok/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | "
            "TPOT p99 ms |", "|---|---|---|---|---|---|---|"]
    for sched in serv:
        for engine in sorted(serv[sched]):
            f = serv[sched][engine]
            out.append(f"| {sched} | {engine} | {fmt(num(f, 'output_tok_s'))} | "
                       f"{fmt(num(f, 'ttft_ms_p50'))} | {fmt(num(f, 'ttft_ms_p99'))} | "
                       f"{fmt(num(f, 'tpot_ms_p50'), 2)} | {fmt(num(f, 'tpot_ms_p99'), 2)} |")
        o, h = serv[sched].get("expertmesh_cuda"), serv[sched].get("hf_transformers")
        if o and h:
            out.append(f"| {sched} | ratio | {ratio(num(o, 'output_tok_s'), num(h, 'output_tok_s'))}"
                       f" | {ratio(num(h, 'ttft_ms_p50'), num(o, 'ttft_ms_p50'))} | "
                       f"{ratio(num(h, 'ttft_ms_p99'), num(o, 'ttft_ms_p99'))} | "
                       f"{ratio(num(h, 'tpot_ms_p50'), num(o, 'tpot_ms_p50'))} | "
                       f"{ratio(num(h, 'tpot_ms_p99'), num(o, 'tpot_ms_p99'))} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
