"""Fuzz the collector's readers of untrusted files: the ELF reader and the perf-map reader.

Every input is a real file (the readers take paths): mutated copies of real binaries (/usr/bin/gzip,
libc; lying header fields, flipped bytes, overwritten regions, truncations, a flipped class or byte
order for the pyelftools path) plus random bytes; perf maps mutated from a valid one plus random
text, and hostile file types (FIFO, links to /dev/zero and to other files, directories, oversized
files, another user's files). Only the project's own error types may come out (`ElfReadError`; the
perf-map reader refuses and counts, it never raises), no input may take more than
`--per-input-timeout` seconds, and RSS must stay bounded.

Prints inputs/s, outcomes by type, and peak RSS; exits 1 on any foreign exception or hang.
A 1M-line perf map (the issue's 2 s / 277 MB case) is timed against the previous reader
(`git show REV:collector/symbolize/perfmap.py`) in the same run when git has it.

    .venv/bin/python bench/fuzz_collector.py                   # 10,000 inputs per reader
    .venv/bin/python bench/fuzz_collector.py --inputs 500      # a quick check
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.symbolize.elf import ElfReadError, load_elf
from collector.symbolize.perfmap import PerfMap

ELF_BASES = ["/usr/bin/gzip", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
INTERESTING = [0, 1, 2, 0x7F, 0xFF, 0x100, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32, 1 << 44, 1 << 62,
               (1 << 63) - 1, 1 << 63, (1 << 64) - 1]
NOBODY = 65534


class Hang(Exception):
    pass


def _alarm(*_: object) -> None:
    raise Hang()


def _kind(message: str) -> str:
    """An error message without its path and numbers: the category it is counted under."""
    text = message.split(": ", 1)[-1]
    text = "".join("N" if c.isdigit() else c for c in text)
    while "NN" in text:
        text = text.replace("NN", "N")
    return text[:60]


def rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class ElfMutator:
    """Patches applied in place to a working copy of one base binary, then reverted."""

    def __init__(self, base: str, work: Path, rng: random.Random) -> None:
        self.data = Path(base).read_bytes()
        self.work = work
        work.write_bytes(self.data)
        self.rng = rng
        d = self.data
        self.phoff, self.shoff = struct.unpack_from("<QQ", d, 32)
        _, self.phnum, _, self.shnum, _ = struct.unpack_from("<HHHHH", d, 54)
        # (offset, width) of every header field worth lying about
        self.fields = [(32, 8), (40, 8), (54, 2), (56, 2), (58, 2), (60, 2), (62, 2)]
        for i in range(self.phnum):
            at = self.phoff + i * 56
            self.fields += [(at, 4), (at + 8, 8), (at + 16, 8), (at + 32, 8)]
        for i in range(self.shnum):
            at = self.shoff + i * 64
            self.fields += [(at, 4), (at + 4, 4), (at + 24, 8), (at + 32, 8), (at + 40, 4), (at + 56, 8)]
        self.hot = [(0, 64), (self.phoff, self.phnum * 56), (self.shoff, self.shnum * 64)]

    def patches(self) -> list[tuple[int, bytes]]:
        rng, n = self.rng, len(self.data)
        kind = rng.random()
        out: list[tuple[int, bytes]] = []
        if kind < 0.5:  # lying header fields
            for _ in range(rng.randint(1, 4)):
                at, width = rng.choice(self.fields)
                value = rng.choice(INTERESTING + [n, n - 1, n + 1, rng.getrandbits(width * 8)])
                out.append((at, (value & ((1 << (width * 8)) - 1)).to_bytes(width, "little")))
        elif kind < 0.8:  # flipped bytes in the headers
            for _ in range(rng.randint(1, 16)):
                start, length = rng.choice(self.hot)
                at = start + rng.randrange(max(1, length))
                out.append((at, bytes([self.data[at] ^ (1 << rng.randrange(8))])))
        elif kind < 0.92:  # overwritten regions anywhere
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(n)
                out.append((at, rng.randbytes(min(n - at, rng.randint(1, 256)))))
        else:  # another class or byte order: the pyelftools path
            out.append((4, bytes([rng.choice([1, 3, 0])])) if rng.random() < 0.5 else (5, bytes([2])))
            for _ in range(rng.randint(0, 3)):
                at, width = rng.choice(self.fields)
                out.append((at, rng.randbytes(width)))
        return out

    def run(self, patches: list[tuple[int, bytes]]) -> None:
        fd = os.open(self.work, os.O_WRONLY)
        try:
            for at, raw in patches:
                os.pwrite(fd, raw, at)
            load_elf(str(self.work))
        finally:
            for at, raw in reversed(patches):
                os.pwrite(fd, self.data[at:at + len(raw)], at)
            os.close(fd)


def fuzz_elf(count: int, rng: random.Random, tmp: Path, timeout: int) -> dict:
    mutators = [ElfMutator(b, tmp / f"base{i}", rng) for i, b in enumerate(ELF_BASES) if os.path.exists(b)]
    outcomes: collections.Counter[str] = collections.Counter()
    foreign: list[str] = []
    rss_samples = []
    t0 = time.perf_counter()
    for i in range(count):
        r = rng.random()
        try:
            signal.alarm(timeout)
            if r < 0.8:
                m = rng.choice(mutators)
                m.run(m.patches())
            else:
                path = tmp / "one"
                if r < 0.9:  # a truncated real binary
                    m = rng.choice(mutators)
                    path.write_bytes(m.data[: rng.randrange(len(m.data))])
                elif r < 0.95:  # a valid identity, then random bytes
                    path.write_bytes(m.data[:16] + rng.randbytes(rng.randint(0, 8192)))
                else:
                    path.write_bytes(rng.randbytes(rng.randint(0, 4096)))
                load_elf(str(path))
            outcomes["ok"] += 1
        except ElfReadError as exc:
            outcomes[f"ElfReadError: {_kind(str(exc))}"] += 1
        except Hang:
            outcomes["HANG"] += 1
            foreign.append(f"input {i}: over {timeout}s")
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcomes[f"FOREIGN {type(exc).__name__}"] += 1
            foreign.append(f"input {i}: {type(exc).__name__}: {exc}"[:200])
        finally:
            signal.alarm(0)
        if i % 1000 == 999:
            rss_samples.append(rss_kb())
    return {"seconds": time.perf_counter() - t0, "outcomes": outcomes, "foreign": foreign, "rss": rss_samples}


VALID_MAP = "".join(f"{0x7f0000000000 + i * 0x100:x} {0x80 + i % 64:x} py::fn_{i}:/app/mod{i % 7}.py\n"
                    for i in range(200))


def _perf_text(rng: random.Random) -> bytes:
    r = rng.random()
    base = bytearray(VALID_MAP.encode())
    if r < 0.5:  # mutated valid map
        for _ in range(rng.randint(1, 20)):
            at = rng.randrange(len(base))
            op = rng.random()
            if op < 0.4:
                base[at] = rng.randrange(256)
            elif op < 0.6:
                base[at:at] = rng.choice([b"\0", b"\x1b[2J", b"\xff\xfe", b"\r", b" ", b"0x", b"\n",
                                          b"f" * rng.randint(1, 40), b"x" * rng.randint(1000, 5000)])
            else:
                del base[at:at + rng.randint(1, 30)]
        return bytes(base)
    if r < 0.8:  # random lines of plausible shape
        lines = []
        for _ in range(rng.randint(0, 300)):
            name = rng.randbytes(rng.randint(0, 60)) if rng.random() < 0.3 else f"fn{rng.random()}".encode()
            lines.append(b"%x %x %s" % (rng.getrandbits(rng.choice([8, 48, 64, 80])),
                                         rng.getrandbits(rng.choice([4, 16, 64])), name))
        return b"\n".join(lines)
    return rng.randbytes(rng.randint(0, 8192))


def fuzz_perfmap(count: int, rng: random.Random, tmp: Path, timeout: int) -> dict:
    outcomes: collections.Counter[str] = collections.Counter()
    foreign: list[str] = []
    rss_samples = []
    secret = tmp / "secret"
    secret.write_text("7f0000000000 100 secret_symbol\n")
    big = tmp / "big-target"
    big.write_bytes(VALID_MAP.encode() * 20)  # ~90 KB, over the 64 KiB cap used below
    t0 = time.perf_counter()
    for i in range(count):
        path = tmp / f"perf-{i}.map"
        r = rng.random()
        try:
            if r < 0.9:
                path.write_bytes(_perf_text(rng))
                if rng.random() < 0.05:
                    os.chown(path, NOBODY, NOBODY)
            else:
                kind = rng.randrange(5)
                if kind == 0:
                    os.mkfifo(path)
                elif kind == 1:
                    path.symlink_to("/dev/zero")
                elif kind == 2:
                    path.symlink_to(secret)
                elif kind == 3:
                    path.mkdir()
                else:
                    path.write_bytes(big.read_bytes())
            signal.alarm(timeout)
            pm = PerfMap(path, owners={0}, max_bytes=64 * 1024)
            usable = pm.refresh()
            for _ in range(8):
                pm.resolve(rng.choice([0x7f0000000000 + rng.randrange(200 * 0x100), rng.getrandbits(64)]))
            counts = pm.take_counts()
            if counts.get("perf_maps_refused"):
                outcomes[f"refused: {_kind(pm.refusal)}"] += 1
            elif usable:
                outcomes["parsed"] += 1
            else:
                outcomes["empty"] += 1
            outcomes["lines refused (sum)"] += counts.get("perf_map_lines_refused", 0)
        except Hang:
            outcomes["HANG"] += 1
            foreign.append(f"input {i}: over {timeout}s")
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcomes[f"FOREIGN {type(exc).__name__}"] += 1
            foreign.append(f"input {i}: {type(exc).__name__}: {exc}"[:200])
        finally:
            signal.alarm(0)
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        if i % 1000 == 999:
            rss_samples.append(rss_kb())
    return {"seconds": time.perf_counter() - t0, "outcomes": outcomes, "foreign": foreign, "rss": rss_samples}


def old_perfmap(rev: str) -> type | None:
    """The perf-map reader as of `rev`, for a same-run baseline (None when git lacks it)."""
    try:
        src = subprocess.run(["git", "show", f"{rev}:collector/symbolize/perfmap.py"], capture_output=True,
                             check=True, cwd=Path(__file__).resolve().parents[1]).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("old_perfmap")
    exec(compile(src, "old_perfmap.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod.PerfMap


def million_lines(tmp: Path, rev: str) -> None:
    path = tmp / "perf-million.map"
    with open(path, "w") as fh:
        fh.writelines(f"{0x7f0000000000 + i * 0x40:x} 40 py::function_{i}:/srv/app/module_{i % 97}.py\n" for i in range(1_000_000))
    size = path.stat().st_size
    print(f"\n1M-line perf map ({size / 2**20:.0f} MiB):")
    rows = []
    candidates = [("previous reader", old_perfmap(rev), {}),
                  ("default cap (refused)", PerfMap, {"owners": {0}}),
                  ("cap raised to 64 MiB", PerfMap, {"owners": {0}, "max_bytes": 64 * 2**20})]
    for label, cls, kw in candidates:
        if cls is None:
            print(f"  {label}: not available (git show {rev} failed)")
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        pm = cls(path, **kw)
        pm.refresh()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        entries = len(pm.starts)
        del pm
        tracemalloc.start()  # a second load, traced: tracing slows every allocation
        pm = cls(path, **kw)
        pm.refresh()
        retained, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del pm
        rows.append((label, cpu, retained))
        print(f"  {label:24s} {seconds:6.2f} s wall {cpu:6.2f} s CPU  retained {retained / 2**20:6.1f} MB  "
              f"peak {peak / 2**20:6.1f} MB  entries {entries}")
    if len(rows) == 3:
        base = rows[0]
        for label, cpu, retained in rows[1:]:
            print(f"  {label}: CPU x{cpu / base[1]:.2f}, retained memory x{retained / max(1, base[2]):.2f} "
                  f"of the previous reader")


def report(name: str, res: dict, count: int) -> bool:
    print(f"\n{name}: {count} inputs in {res['seconds']:.1f} s = {count / res['seconds']:.0f} inputs/s")
    for outcome, n in sorted(res["outcomes"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:8d}  {outcome}")
    if res["rss"]:
        print(f"  RSS every 1000 inputs: {min(res['rss']) / 1024:.0f}..{max(res['rss']) / 1024:.0f} MB")
    for line in res["foreign"][:10]:
        print(f"  FINDING {line}")
    return not res["foreign"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000, help="inputs per reader (default 10000)")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--per-input-timeout", type=int, default=5)
    ap.add_argument("--baseline-rev", default="476ff8d",
                    help="git revision whose perf-map reader is the 1M-line baseline")
    ap.add_argument("--skip-million", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("run as root (the perf-map inputs include other users' files)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGALRM, _alarm)
    rng = random.Random(args.seed)
    start_rss = rss_kb()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        tmp = Path(d)
        ok = report("ELF reader (load_elf)", fuzz_elf(args.inputs, rng, tmp, args.per_input_timeout), args.inputs)
        ok &= report("perf-map reader (PerfMap.refresh + resolve)",
                     fuzz_perfmap(args.inputs, rng, tmp, args.per_input_timeout), args.inputs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"\nRSS at start {start_rss / 1024:.0f} MB, peak over both fuzz passes {peak / 1024:.0f} MB")
        if not args.skip_million:
            million_lines(tmp, args.baseline_rev)
    print("\nresult:", "only the project's own outcomes, no hang" if ok else "FOREIGN ERRORS OR HANGS (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
