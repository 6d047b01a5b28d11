"""Benchmark: pprof decode + merge throughput (samples/s) vs raw protobuf ParseFromString.

Why: the server decodes every ingested batch and merges batches per query; the ratio against
protobuf's own parse of the same bytes shows what validation and model conversion cost.
Run: .venv/bin/python bench/pprof_decode_merge.py [--batches 50 --samples 2000 --depth 40]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiler import pprof, transforms
from profiler import profile_pb2 as pb
from profiler.model import Frame, FrameKind, Sample, make_labels
from profiler.types import new_cpu_profile


def make_batches(n: int, samples: int, depth: int, seed: int = 7) -> list[bytes]:
    """Realistic batches: shared function vocabulary, skewed stacks, a few labels per sample."""
    rng = random.Random(seed)
    funcs = [Frame(f"pkg{i % 37}.func{i}", f"/usr/lib/lib{i % 11}.so", FrameKind.NATIVE) for i in range(3000)]
    kern = [Frame(f"kfunc{i}", "[kernel.kallsyms]", FrameKind.KERNEL) for i in range(200)]
    out = []
    for b in range(n):
        p = new_cpu_profile(99, time_nanos=b * 10**10, duration_nanos=10**10)
        for _ in range(samples):
            d = max(3, int(rng.gauss(depth, depth / 4)))
            stack = [funcs[min(int(rng.expovariate(1 / 300)), 2999)] for _ in range(d - 3)]
            stack += [kern[rng.randrange(200)] for _ in range(3)]
            p.samples.append(Sample(tuple(stack), (1, 10_101_010),
                                    make_labels({"pid": str(rng.randrange(50)), "thread": f"t{rng.randrange(8)}"})))
        out.append(pprof.encode(p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=40)
    args = ap.parse_args()
    batches = make_batches(args.batches, args.samples, args.depth)
    total = args.batches * args.samples
    size = sum(map(len, batches))
    print(f"input: {args.batches} batches x {args.samples} samples, depth ~{args.depth}, {size / 1e6:.1f} MB gzipped")

    t0 = time.perf_counter()
    for data in batches:
        m = pb.Profile()
        m.ParseFromString(zlib.decompress(data, 16 + zlib.MAX_WBITS))
    base = time.perf_counter() - t0

    t0 = time.perf_counter()
    profiles = [pprof.decode(data) for data in batches]
    dec = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = transforms.merge(profiles)
    mer = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = pprof.encode(merged)
    enc_t = time.perf_counter() - t0

    print(f"baseline gunzip+ParseFromString: {total / base:12,.0f} samples/s ({base:.3f} s)")
    print(f"pprof.decode (validate+model):   {total / dec:12,.0f} samples/s ({dec:.3f} s)  "
          f"= {dec / base:.1f}x baseline time")
    print(f"transforms.merge:                {total / mer:12,.0f} samples/s ({mer:.3f} s) -> {len(merged.samples)} samples")
    print(f"decode+merge:                    {total / (dec + mer):12,.0f} samples/s  "
          f"= {(dec + mer) / base:.1f}x baseline time")
    print(f"pprof.encode of merged:          {len(merged.samples) / enc_t:12,.0f} samples/s ({enc_t:.3f} s, "
          f"{len(enc) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
