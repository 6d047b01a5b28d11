"""Benchmark: pprof decode + merge throughput (samples/s) vs raw protobuf ParseFromString.

Why: the server decodes every ingested batch and merges batches per query; the ratio against
protobuf's own parse of the same bytes shows what validation and model conversion cost.
Run: .venv/bin/python bench/pprof_decode_merge.py [--batches 50 --samples 2000 --depth 40 --rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from profiler import pprof, transforms
from profiler import profile_pb2 as pb
from profiler.gunzip import gunzip
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


def fleet_batches(n: int) -> list[bytes]:
    """Batches as the fleet simulator sends them (~300 unique stacks, labels, depth 10-120)."""
    from fleet_sim import Fleet, FleetConfig, encode

    fleet = Fleet(FleetConfig())
    return [encode(fleet.batch(host, 1000.0 + host)) for host in range(n)]


def _timed(fn, items: list[bytes]) -> float:
    t0 = time.perf_counter()
    for data in items:
        fn(data)
    return time.perf_counter() - t0


def _parse(data: bytes) -> None:
    pb.Profile().ParseFromString(zlib.decompress(data, 16 + zlib.MAX_WBITS))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=40)
    ap.add_argument("--fleet-batches", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best and median reported)")
    args = ap.parse_args()
    batches = make_batches(args.batches, args.samples, args.depth)
    fleet = fleet_batches(args.fleet_batches)
    total = args.batches * args.samples
    size = sum(map(len, batches))
    print(f"input: {args.batches} batches x {args.samples} samples, depth ~{args.depth}, {size / 1e6:.1f} MB gzipped; "
          f"{args.fleet_batches} fleet batches (~300 stacks each)")
    keys = ("parse", "table", "decode", "merge", "merge_tables", "fleet_parse", "fleet_table", "fleet_decode",
            "fleet_reference")
    res: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.rounds):  # interleaved so a noisy neighbour hits every variant alike
        res["parse"].append(_timed(_parse, batches))
        t0 = time.perf_counter()
        tables = [pprof.decode_table(data) for data in batches]
        res["table"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        merged_table = transforms.merge_tables(tables)
        res["merge_tables"].append(time.perf_counter() - t0)
        del tables
        t0 = time.perf_counter()
        profiles = [pprof.decode(data) for data in batches]
        res["decode"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        merged = transforms.merge(profiles)
        res["merge"].append(time.perf_counter() - t0)
        res["fleet_parse"].append(_timed(_parse, fleet) / len(fleet))
        res["fleet_table"].append(_timed(pprof.decode_table, fleet) / len(fleet))
        res["fleet_decode"].append(_timed(pprof.decode, fleet) / len(fleet))
        # the per-message reference decoder (full schema) that unusual input still takes
        res["fleet_reference"].append(_timed(lambda d: pprof._reference(gunzip(d, pprof.MAX_DECOMPRESSED)), fleet) / len(fleet))
    best = {k: min(v) for k, v in res.items()}
    med = {k: statistics.median(v) for k, v in res.items()}

    def rate(k: str) -> str:
        return f"{total / best[k]:12,.0f} samples/s best, {total / med[k]:12,.0f} median"

    print(f"baseline gunzip+ParseFromString: {rate('parse')}")
    print(f"pprof.decode_table (columnar):   {rate('table')}  = {med['table'] / med['parse']:.1f}x baseline time")
    print(f"pprof.decode (table+to_profile): {rate('decode')}  = {med['decode'] / med['parse']:.1f}x baseline time")
    print(f"transforms.merge:                {rate('merge')} -> {len(merged.samples)} samples")
    print(f"decode+merge:                    {total / (med['decode'] + med['merge']):12,.0f} samples/s median  "
          f"= {(med['decode'] + med['merge']) / med['parse']:.1f}x baseline time")
    print(f"transforms.merge_tables:         {rate('merge_tables')} -> {len(merged_table.stacks)} samples")
    both = med["table"] + med["merge_tables"]
    print(f"decode_table+merge_tables:       {total / both:12,.0f} samples/s median  = {both / med['parse']:.1f}x baseline time")
    t0 = time.perf_counter()
    enc = pprof.encode(merged)
    enc_t = time.perf_counter() - t0
    print(f"pprof.encode of merged:          {len(merged.samples) / enc_t:12,.0f} samples/s ({enc_t:.3f} s, "
          f"{len(enc) / 1e6:.1f} MB)")
    print("fleet batch (ms per batch, best / median; target decode_table <= 2 ms):")
    for k, label in (("fleet_parse", "gunzip+ParseFromString"), ("fleet_table", "decode_table"),
                     ("fleet_decode", "decode"), ("fleet_reference", "reference decoder")):
        print(f"  {label:24s} {best[k] * 1e3:7.3f} / {med[k] * 1e3:7.3f} ms  "
              f"= {med[k] / med['fleet_parse']:.1f}x baseline")


if __name__ == "__main__":
    main()
