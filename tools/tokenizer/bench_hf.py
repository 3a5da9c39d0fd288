#!/usr/bin/env python3
"""Measures HF `tokenizers` encode/decode throughput on the committed corpus.

usage: bench_hf.py TOKENIZERS_DIR [--json OUT] [--seconds S]
Prints one line per measurement and optionally writes them as JSON: single-threaded encode
(one document at a time, like a router request), encode_batch (Rust's thread pool over all
documents) and decode. MB/s counts input text bytes, as tokenizer_bench does.
"""
import argparse
import json
import os
import time

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "..", "tests", "model", "tokenizer", "data", "corpus.txt")


def measure(fn, seconds):
    fn()  # warm-up (fills the BPE cache, as the C++ benchmark's first iteration does)
    runs, start = 0, time.perf_counter()
    cpu_start = time.process_time()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / runs, (time.process_time() - cpu_start) / runs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("tokenizers_dir")
    parser.add_argument("--json")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with open(CORPUS, encoding="utf-8", newline="") as f:
        docs = f.read().split("\n<<<DOC>>>\n")
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    results = []
    for name in ("deepseek-v3", "qwen2"):
        tok = Tokenizer.from_file(os.path.join(args.tokenizers_dir, name, "tokenizer.json"))
        encoded = [tok.encode(d, add_special_tokens=False).ids for d in docs]
        cases = {
            "encode": lambda: [tok.encode(d, add_special_tokens=False) for d in docs],
            "encode_batch": lambda: tok.encode_batch(docs, add_special_tokens=False),
            "decode": lambda: [tok.decode(ids) for ids in encoded],
        }
        for case, fn in cases.items():
            wall, cpu = measure(fn, args.seconds)
            r = {"tokenizer": name, "case": case, "mb_per_s": nbytes / wall / 1e6,
                 "mb_per_cpu_s": nbytes / cpu / 1e6 if cpu > 0 else None}
            results.append(r)
            print(f"hf {name:12s} {case:13s} {r['mb_per_s']:8.2f} MB/s (wall)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"corpus_bytes": nbytes, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
