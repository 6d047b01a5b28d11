"""Fuzz pass over what Hotpath parses from the network (issue 15): random and mutated inputs.

  * ingest over HTTP against a real `hotpath server` on PostgreSQL (--no-auth, 2 workers):
    `--n` pprof bodies (mutated valid profiles, raw or gzipped, and random bytes) and `--n` folded
    bodies; every answer must be 2xx/4xx (never 5xx, never no answer), no worker may be lost
    (same worker pids at the end, no gunicorn "WORKER TIMEOUT"/"exited"), worker RSS is sampled;
  * the pprof bodies also through the server's gunzip and `decode_table` in-process (the exception
    types behind a 5xx);
  * the selector parser (`parse_selector`, then render/re-parse and match) and the time parser
    (`parse_time`, `parse_range`) in-process: `--n` inputs each, only the project's own error
    types may come out (classes defined in profiler/, server/, collector/).
Prints counts per outcome, the slowest input's time, and the failures (inputs saved to --save-dir).
The collector's ELF and perf-map readers have their own fuzzing (collector tests).

  python bench/fuzz_inputs.py --n 10000
  python bench/fuzz_inputs.py --n 500 --only selector,time
"""

from __future__ import annotations

import argparse
import collections
import gzip
import http.client
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_sim import Fleet, FleetConfig, encode
from server_common import drop_database, fresh_database

from profiler.gunzip import gunzip
from profiler.pprof import decode_table
from profiler.selector import parse_selector
from server.timeparse import parse_range, parse_time

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
OWN = ("profiler.", "server.", "collector.", "hotpath.")
VARINTS = [b"\x00", b"\x7f", b"\x80\x01", b"\xff\xff\xff\xff\x0f", b"\xff" * 9 + b"\x01", b"\x80" * 10]
SELECTOR_TOKENS = ["{", "}", ",", "=", "!=", "=~", "!~", '"', "\\", "\\\"", "cpu", "service", "(a+)+b", ".*",
                   "(.*a){25}", "[", "]", "(", ")", "*", "?", "|", "^", "$", "\\p{L}", "(?P<x>a)", "\x00", "é",
                   "\n", " ", "a" * 300, "🔥", "\ud800"]
TIME_TOKENS = ["now", "-", "+", "1h", "30m", "7d", "w", "s", "T", ":", "Z", "e", "E", ".", "inf", "nan", "1e400",
               "9" * 30, "2026-12-07", "T12:34:56", "+05:30", "-99999999999999", "1733600000", "1733600000000",
               " ", "\x00", "٣", "２０２６"]
FOLDED_TOKENS = [";", " ", "\n", "\r\n", "#", "_[k]", "0", "-1", "99999999999999999999", "1e9", "main", "\x00",
                 "\t", "é", "\\", "[no stack]", "a" * 5000, "🔥"]


def mutate_bytes(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(8)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[min(at, len(out) - 1)] = rng.choice((0, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x1A))
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op == 3:
            del out[at:at + rng.randint(1, 64)]
        elif op == 4 and out:
            end = min(len(out), at + rng.randint(1, 256))
            out[at:at] = out[at:end] * rng.randint(1, 20)
        elif op == 5:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            out[at:] = other[start:start + rng.randint(1, 4096)]
        elif op == 6:
            out[at:at] = rng.choice(VARINTS)
        else:
            del out[at:]
    return bytes(out)


def mutate_text(rng: random.Random, text: str, tokens: list[str], seeds: list[str]) -> str:
    out = list(text)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        at = rng.randrange(len(out) + 1)
        if op == 0:
            out[at:at] = list(rng.choice(tokens))
        elif op == 1:
            del out[at:at + rng.randint(1, 8)]
        elif op == 2 and out:
            out[min(at, len(out) - 1)] = chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x10FFFF))))
        elif op == 3:
            end = min(len(out), at + rng.randint(1, 40))
            out[at:at] = out[at:end] * rng.randint(1, 30)
        else:
            other = rng.choice(seeds)
            out[at:] = list(other[rng.randrange(len(other) + 1):])
    return "".join(out)


def random_text(rng: random.Random, tokens: list[str]) -> str:
    parts = [rng.choice(tokens) if rng.random() < 0.6 else chr(rng.randrange(0x250)) for _ in range(rng.randint(0, 40))]
    return "".join(parts)


def pprof_inputs(rng: random.Random, n: int) -> list[bytes]:
    fleet = Fleet(FleetConfig(hosts=3, seed=11))
    raw = [gzip.decompress(encode(fleet.batch(h, 1.7e9 + h))) for h in range(3)]
    small = (DATA / "small_cpu.pb.gz").read_bytes()
    seeds = raw + [gzip.decompress(small), (DATA / "unknown_location.pb").read_bytes()]
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            body = rng.randbytes(rng.randint(0, 2048))
        else:
            body = mutate_bytes(rng, rng.choice(seeds), seeds)
        if rng.random() < 0.4:  # gzipped after mutation (the decoder sees the damage), or gzip itself damaged
            body = gzip.compress(body, 1)
            if rng.random() < 0.3:
                body = mutate_bytes(rng, body, seeds)
        out.append(body)
    return out


def folded_inputs(rng: random.Random, n: int) -> list[bytes]:
    seeds = ["main;a;b 10\nmain;c 5\n", "a;b_[k];c 3\r\n# comment\n\n[no stack] 2\n",
             "\\#x;y 1\nroot;" + ";".join(f"f{i}" for i in range(300)) + " 7\n"]
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            text = random_text(rng, FOLDED_TOKENS)
        else:
            text = mutate_text(rng, rng.choice(seeds), FOLDED_TOKENS, seeds)
        body = text.encode("utf-8", "surrogatepass")
        out.append(gzip.compress(body, 1) if rng.random() < 0.2 else body)
    return out


def ingest_params(rng: random.Random, i: int) -> str:
    params = {"service": f"fuzz-{i % 7}", "type": "cpu", "sample_rate": "99"}
    if rng.random() < 0.1:  # the query string is input too
        key = rng.choice(list(params) + ["host", "x" * 200, "1bad", "__name__"])
        params[key] = mutate_text(rng, params.get(key, "v"), FOLDED_TOKENS, ["svc", "99"])
    return urllib.parse.urlencode(params, errors="surrogatepass")


class Outcomes:
    def __init__(self, save_dir: Path, name: str) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self.slowest = (0.0, "")
        self.save_dir, self.name = save_dir, name
        self.lock = threading.Lock()

    def add(self, outcome: str, took: float, data: bytes | str, failed: bool) -> None:
        with self.lock:
            self.counts[outcome] += 1
            if took > self.slowest[0]:
                self.slowest = (took, repr(data[:80]))
            if failed:
                path = self.save_dir / f"{self.name}-{len(self.failures)}.bin"
                path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
                self.failures.append(f"{outcome} ({path})")

    def report(self, total: int) -> None:
        print(f"{self.name}: {total} inputs; " + ", ".join(f"{k} {v}" for k, v in self.counts.most_common(12)))
        print(f"  slowest {self.slowest[0] * 1000:.0f} ms: {self.slowest[1]}")
        print(f"  failures: {len(self.failures)}" + "".join(f"\n    {f}" for f in self.failures[:10]))


def in_process(name: str, inputs: list[Any], call: Callable[[Any], Any], save_dir: Path) -> Outcomes:
    out = Outcomes(save_dir, name)
    for data in inputs:
        started = time.perf_counter()
        try:
            call(data)
            outcome, failed = "ok", False
        except Exception as exc:  # noqa: BLE001 - the point: any type that is not the project's own
            kind = type(exc)
            own = kind.__module__.startswith(OWN)
            outcome, failed = f"{kind.__module__}.{kind.__name__}", not own
            if failed:
                outcome += f": {str(exc)[:120]}"
        out.add(outcome, time.perf_counter() - started, data, failed)
    out.report(len(inputs))
    return out


def check_selector(text: str) -> None:
    sel = parse_selector(text)
    again = parse_selector(str(sel))  # the canonical form parses back to the same selector
    if again != sel:
        raise AssertionError(f"render/parse round trip changed {sel} into {again}")
    sel.matches({"service": "a" * 1024, "host": "web-1"})
    sel.matches({})


def check_time(text: str) -> None:
    now = 1.7e9
    parse_time(text, now)
    parse_range(text, None, now)
    parse_range(None, text, now)


def worker_pids(master: int) -> list[int]:
    return sorted(int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split())


def rss_mb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) // 1024


def http_ingest(port: int, bodies: list[tuple[str, bytes, str]], outcomes: Outcomes, threads: int) -> None:
    def run(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for path, body, ctype in bodies[k::threads]:
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": ctype})
                resp = conn.getresponse()
                text = resp.read()
                status = resp.status
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, text = 0, repr(exc).encode()
            failed = status == 0 or status >= 500
            outcome = f"HTTP {status}" + (f": {text[:160]!r}" if failed else "")
            outcomes.add(outcome, time.perf_counter() - started, body, failed)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="inputs per target (default 10000)")
    ap.add_argument("--only", default="ingest,selector,time", help="comma-separated targets")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--threads", type=int, default=4, help="HTTP client threads")
    ap.add_argument("--port", type=int, default=4839)
    ap.add_argument("--save-dir", default="/tmp/hotpath-fuzz", help="where failing inputs are written")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    save_dir = Path(args.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    failures = 0

    if "selector" in only:
        seeds = ['cpu{service="api", host=~"web-.*"}', 'wall{a!="b",c!~"x|y"}', "{}", "cpu", 'cpu{a=~"(a+)+b"}']
        inputs = [random_text(rng, SELECTOR_TOKENS) if rng.random() < 0.2
                  else mutate_text(rng, rng.choice(seeds), SELECTOR_TOKENS, seeds) for _ in range(args.n)]
        failures += len(in_process("selector parser", inputs, check_selector, save_dir).failures)
    if "time" in only:
        seeds = ["now-1h", "now - 30m", "1733600000", "1733600000123", "2026-12-07T12:34:56Z", "2026-12-07",
                 "2026-12-07T12:34:56.123+05:30", "now"]
        inputs = [random_text(rng, TIME_TOKENS) if rng.random() < 0.2
                  else mutate_text(rng, rng.choice(seeds), TIME_TOKENS, seeds) for _ in range(args.n)]
        failures += len(in_process("time parser", inputs, check_time, save_dir).failures)
    if "ingest" in only:
        pprof = pprof_inputs(rng, args.n)
        folded = folded_inputs(rng, args.n)
        failures += len(in_process("pprof decode_table (in-process)", pprof,
                                   lambda b: decode_table(gunzip(b, 64 << 20) if b[:2] == b"\x1f\x8b" else b),
                                   save_dir).failures)
        url = fresh_database("hp_bench_fuzz")
        env = {**os.environ, "HOTPATH_LOG_LEVEL": "WARNING"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = open(save_dir / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
        server = subprocess.Popen([sys.executable, "-m", "hotpath", "server", "--db", url, "--no-auth",
                                   "--bind", f"127.0.0.1:{args.port}", "--workers", "2"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("server did not start; see " + str(save_dir / "server.log"))
                time.sleep(0.2)
            time.sleep(2)  # both workers booted
            pids = worker_pids(server.pid)
            rss0 = [rss_mb(p) for p in pids]
            peak = list(rss0)
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(1.0):
                    for i, p in enumerate(pids):
                        peak[i] = max(peak[i], rss_mb(p))

            sampler = threading.Thread(target=sample)
            sampler.start()
            for name, bodies, ctype in (("ingest pprof (HTTP)", pprof, "application/octet-stream"),
                                        ("ingest folded (HTTP)", folded, "text/plain")):
                requests = [(f"/api/v1/ingest?{ingest_params(rng, i)}", b, ctype) for i, b in enumerate(bodies)]
                outcomes = Outcomes(save_dir, name)
                began = time.monotonic()
                http_ingest(args.port, requests, outcomes, args.threads)
                outcomes.report(len(requests))
                print(f"  {len(requests) / (time.monotonic() - began):.0f} requests/s")
                failures += len(outcomes.failures)
            stop.set()
            sampler.join()
            after = worker_pids(server.pid)
            text = (save_dir / "server.log").read_text(errors="replace")
            lost = [m for m in ("WORKER TIMEOUT", "was sent SIG", "exited with code") if m in text]
            if text.count("Booting worker") > len(pids):
                lost.append(f"{text.count('Booting worker')} workers booted")
            print(f"workers: {pids} before, {after} after; gunicorn log markers: {lost or 'none'}")
            print(f"worker RSS MB: start {rss0}, peak {peak}, end {[rss_mb(p) for p in after]}")
            if after != pids or lost:
                failures += 1
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            drop_database(url)
    print(f"fuzz pass: {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
