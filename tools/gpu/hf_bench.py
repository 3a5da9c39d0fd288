#!/usr/bin/env python3
"""PyTorch/transformers reference for the GPU benchmarks: the same checkpoint, prompts and
request schedules as bench/cuda/model/cuda_model_bench and cuda_serving_bench, measured the same
way, printed in the same one-line format (tools/gpu-check.sh puts the two side by side).

Runs on the GPU machine's own python3 (torch + transformers are installed there; nothing is
installed by this script). The model is loaded with transformers in bf16 on cuda, sdpa attention,
and the "grouped_mm" experts backend where this transformers has it (its fastest for MoE; the
line says which one ran).

Measures:
  - copy bandwidth: a 1 GiB device-to-device tensor copy, bytes read + written per second;
  - decode at batch 1, 8, 32, 64 after a `--context`-token prefill: median step time of greedy
    steps (one token per sequence, KV cache reused), tokens/s, and at batch 1 the bytes of
    weights one token reads (every parameter except the embedding, which reads one row, and
    the routed experts, of which top_k of num_experts are read) over the step time, against
    the copy bandwidth;
  - prefill of 1 x 2048 and 4 x 512 prompt tokens: tokens/s;
  - serving: each schedule (tools/gpu/schedule.py) through a static-batching loop (the usual
    way to serve with plain transformers: when the GPU is free, every request that has arrived,
    up to 64, runs as one batch to the end). TTFT, TPOT and output tokens/s as
    cuda_serving_bench defines them.

  hf_bench.py MODEL_DIR --prompt-len 256 --output-len 64 --schedules s1.txt s2.txt [--out r.json]
"""
import argparse
import importlib.util
import json
import statistics
import sys
import time


def prompt_token(r: int, i: int, vocab: int) -> int:
    # Must match bench::PromptToken (bench/cuda/model/model_bench_util.h).
    return 2 + (i * 7919 + r * 104729) % (vocab - 2)


def quantile(values, q):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def read_schedule(path):
    name, times = "", []
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                name = line.lstrip("# ")
            else:
                times.append(float(line))
    if not times:
        raise ValueError(f"{path}: no requests")
    return name, times


class Bench:
    def __init__(self, torch, model, vocab, device):
        self.torch = torch
        self.model = model
        self.vocab = vocab
        self.device = device
        self.records = []

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def emit(self, kind, **fields):
        parts = [kind] + [f'{k}="{v}"' if isinstance(v, str) else
                          (f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}")
                          for k, v in fields.items()]
        print(" ".join(parts), flush=True)
        self.records.append({"kind": kind, **fields})

    def ids(self, rows, start, length, salt):
        return self.torch.tensor(
            [[prompt_token(r + salt, start + i, self.vocab) for i in range(length)]
             for r in range(rows)], device=self.device)

    def forward(self, ids, past=None):
        kw = {"input_ids": ids, "use_cache": True}
        if past is not None:
            kw["past_key_values"] = past
        try:
            out = self.model(**kw, logits_to_keep=1)
        except TypeError:  # a transformers without logits_to_keep
            out = self.model(**kw)
        return out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)

    def copy_bandwidth(self):
        n = 1 << 30
        a = self.torch.ones(n, dtype=self.torch.uint8, device=self.device)
        b = self.torch.empty_like(a)
        ms = []
        for i in range(13):
            if self.device == "cuda":
                start = self.torch.cuda.Event(enable_timing=True)
                stop = self.torch.cuda.Event(enable_timing=True)
                start.record()
                b.copy_(a)
                stop.record()
                stop.synchronize()
                t = start.elapsed_time(stop)
            else:
                t0 = time.perf_counter()
                b.copy_(a)
                t = (time.perf_counter() - t0) * 1e3
            if i >= 3:
                ms.append(t)
        del a, b
        bps = 2 * n / (statistics.median(ms) * 1e-3)
        self.emit("hf_copy_bandwidth", bytes=n, read_plus_write_GBps=bps / 1e9)
        return bps

    def active_weight_bytes(self, config):
        experts = getattr(config, "num_experts", 0) or 0
        top_k = getattr(config, "num_experts_per_tok", 0) or 0
        total = 0.0
        for name, p in self.model.named_parameters():
            nbytes = p.numel() * p.element_size()
            if "embed_tokens" in name:
                total += p.shape[-1] * p.element_size()
            elif ".experts." in name and experts > 0:
                total += nbytes * top_k / experts
            else:
                total += nbytes
        return total

    def decode_ms(self, batch, context, steps):
        past, nxt = self.forward(self.ids(batch, 0, context, batch))
        ms = []
        for s in range(steps + 3):
            self.sync()
            t0 = time.perf_counter()
            past, nxt = self.forward(nxt, past)
            self.sync()
            if s >= 3:
                ms.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ms)

    def prefill_ms(self, seqs, length):
        ids = self.ids(seqs, 0, length, 1000)
        ms = []
        for i in range(4):
            self.sync()
            t0 = time.perf_counter()
            self.forward(ids)
            self.sync()
            if i > 0:
                ms.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(ms)

    def serve(self, name, arrivals, prompt_len, output_len, max_batch=64, emit=True):
        torch = self.torch
        n = len(arrivals)
        first, last = [0.0] * n, [0.0] * n
        nxt_req = 0
        t0 = time.perf_counter()
        while nxt_req < n:
            now = time.perf_counter() - t0
            if arrivals[nxt_req] > now:
                time.sleep(arrivals[nxt_req] - now)
                continue
            take = []
            while nxt_req < n and arrivals[nxt_req] <= now and len(take) < max_batch:
                take.append(nxt_req)
                nxt_req += 1
            ids = torch.tensor([[prompt_token(r, i, self.vocab) for i in range(prompt_len)]
                                for r in take], device=self.device)
            past, tok = self.forward(ids)
            self.sync()
            t = time.perf_counter() - t0
            for r in take:
                first[r] = t
            for _ in range(output_len - 1):
                past, tok = self.forward(tok, past)
            self.sync()
            t = time.perf_counter() - t0
            for r in take:
                last[r] = t
            del past
        if not emit:
            return
        ttft = [(first[i] - arrivals[i]) * 1e3 for i in range(n)]
        tpot = [(last[i] - first[i]) * 1e3 / (output_len - 1) for i in range(n)]
        span = max(last) - arrivals[0]
        self.emit("serving", engine="hf_transformers", schedule=name, requests=n,
                  prompt_len=prompt_len, output_len=output_len, duration_s=span,
                  output_tok_s=n * output_len / span, req_s=n / span,
                  ttft_ms_mean=statistics.fmean(ttft), ttft_ms_p50=quantile(ttft, 0.5),
                  ttft_ms_p99=quantile(ttft, 0.99), tpot_ms_mean=statistics.fmean(tpot),
                  tpot_ms_p50=quantile(tpot, 0.5), tpot_ms_p99=quantile(tpot, 0.99))


def load(torch, transformers, model_dir, device):
    """The model in bf16 on `device`, with the first experts backend that loads and runs."""
    # device_map loads straight onto the GPU but needs accelerate; without it, load then move.
    direct = importlib.util.find_spec("accelerate") is not None
    base = {"attn_implementation": "sdpa", **({"device_map": device} if direct else {})}
    last = None
    for dtype_key in ("dtype", "torch_dtype"):
        for experts in ("grouped_mm", None):
            kw = dict(base, **{dtype_key: torch.bfloat16})
            if experts:
                kw["experts_implementation"] = experts
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, **kw)
                if not direct:
                    model = model.to(device)
                with torch.inference_mode():  # a backend may fail only when it runs
                    model(input_ids=torch.tensor([[2, 3, 4]], device=device))
                # What the model actually runs with (this transformers may pick the default).
                used = getattr(model.config, "_experts_implementation", None)
                return model, str(used or experts or "default")
            except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
                last = e
                model = None
                if device == "cuda":
                    torch.cuda.empty_cache()
    raise RuntimeError(f"transformers could not load and run {model_dir}: {last}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model_dir")
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--schedules", nargs="*", default=[])
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--skip-decode", action="store_true", help="serving schedules only")
    p.add_argument("--out", help="also write every record as JSON here")
    p.add_argument("--device", default="cuda",
                   help="cuda; cpu only to check this script on a machine without a GPU")
    a = p.parse_args()

    import torch
    import transformers

    if a.device == "cuda" and not torch.cuda.is_available():
        print("hf_bench: torch sees no CUDA GPU; nothing measured")
        return 1
    t0 = time.perf_counter()
    model, experts = load(torch, transformers, a.model_dir, a.device)
    model.eval()
    load_s = time.perf_counter() - t0
    config = model.config
    bench = Bench(torch, model, config.vocab_size, a.device)
    device_name = torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu"
    bench.emit("hf_model", dir=a.model_dir, torch=torch.__version__,
               transformers=transformers.__version__, experts_implementation=experts,
               device=device_name, layers=config.num_hidden_layers, load_s=load_s)
    with torch.inference_mode():
        bench.serve("warm-up", [0.0] * 4, 16, 4, emit=False)
        if not a.skip_decode:
            copy_bps = bench.copy_bandwidth()
            active = bench.active_weight_bytes(config)
            for batch in (1, 8, 32, 64):
                ms = bench.decode_ms(batch, a.context, a.steps)
                extra = {}
                if batch == 1:
                    bps = active / (ms * 1e-3)
                    extra = {"weight_bytes_per_token": int(active), "weights_GBps": bps / 1e9,
                             "ratio_vs_copy": bps / copy_bps}
                bench.emit("hf_decode", batch=batch, context=a.context, steps=a.steps,
                           median_step_ms=ms, tokens_per_s=batch / (ms * 1e-3), **extra)
            for seqs, length in ((1, 2048), (4, 512)):
                ms = bench.prefill_ms(seqs, length)
                bench.emit("hf_prefill", seqs=seqs, tokens_per_seq=length, median_ms=ms,
                           tokens_per_s=seqs * length / (ms * 1e-3))
        for path in a.schedules:
            name, arrivals = read_schedule(path)
            bench.serve(name, arrivals, a.prompt_len, a.output_len)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(bench.records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
