#!/usr/bin/env python3
"""Writes a request schedule for the serving benchmarks (bench/cuda/model/cuda_serving_bench and
tools/gpu/hf_bench.py read the same file, so both engines see the same arrivals).

Format: a header line "# rate=<R> count=<N> seed=<S>", then one arrival time in seconds (from
the start of the run) per line, non-decreasing. Arrivals are a Poisson process of rate R
requests/s (exponential gaps, seeded); rate "inf" puts every request at time 0 (offline
throughput).

  schedule.py --rate 8 --count 32 --seed 1 --out sched_8.txt
"""
import argparse
import math
import random
import sys


def arrivals(rate: float, count: int, seed: int) -> list[float]:
    if math.isinf(rate):
        return [0.0] * count
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(count):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", required=True, help="requests per second, or inf")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rate = float(a.rate)
    if not rate > 0 or a.count < 1:
        print("schedule.py: --rate must be > 0 and --count >= 1", file=sys.stderr)
        return 2
    with open(a.out, "w", encoding="ascii") as f:
        f.write(f"# rate={a.rate} count={a.count} seed={a.seed}\n")
        for t in arrivals(rate, a.count, a.seed):
            f.write(f"{t:.6f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
