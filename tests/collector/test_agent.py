"""Agent loop, batching and durability with a fake stack source, fake /proc and a real HTTP server."""

from __future__ import annotations

import errno
from pathlib import Path

from collector.agent import Agent, AgentConfig
from collector.batch import build_batch
from collector.processes import ProcessTracker
from collector.ship import Shipper
from collector.source import FakeSource, RawCount, RawDrain
from collector.spool import Spool
from collector.symbolize.kallsyms import KernelSymbols
from collector.symbolize.symbolizer import Symbolizer
from profiler import pprof

POD = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
CID = "ab" * 32


def fake_proc(root: Path) -> Path:
    proc = root / "proc"
    p = proc / "4242"
    p.mkdir(parents=True, exist_ok=True)
    # one executable mapping of a binary that does not exist: frames become `app+0x...`
    (p / "maps").write_text("555555554000-555555556000 r-xp 00001000 08:01 99 /opt/app/app\n")
    (p / "comm").write_text("app\n")
    (p / "status").write_text("Name:\tapp\nNSpid:\t4242\t7\n")
    (p / "cgroup").write_text(f"0::/kubepods/burstable/pod{POD.replace('-', '_')}/cri-containerd-{CID}.scope\n")
    k = proc / "2"
    k.mkdir(exist_ok=True)
    (k / "maps").write_text("")
    (k / "comm").write_text("kthreadd\n")
    return proc


def make_symbolizer(tmp_path: Path) -> Symbolizer:
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T _stext\nffffffff81000100 T schedule\nffffffff81000200 T do_idle\n")
    sym = Symbolizer(None, kernel=KernelSymbols(kallsyms), proc=str(tmp_path / "proc"))  # type: ignore[arg-type]
    sym.tracker = ProcessTracker(proc=fake_proc(tmp_path))
    return sym


def count(value: int, **kw) -> RawCount:
    base = {"tgid": 4242, "tid": 4243, "comm": "worker", "cgroup_id": 1,
            "user": (0x555555555100, 0x555555555200), "kernel": (), "value": value, "user_error": 0,
            "kernel_error": -errno.EFAULT}
    base.update(kw)
    return RawCount(**base)


def test_batch_labels_placeholders_and_counters(tmp_path) -> None:
    sym = make_symbolizer(tmp_path)
    drain = RawDrain(start_ns=1_000, end_ns=10_000_001_000, cpu=[
        count(5),
        count(2, user=(), user_error=-errno.EEXIST),                    # missed user stack
        count(1, kernel=(0xffffffff81000150,), kernel_error=0),        # kernel frames on top
        count(3, tgid=2, tid=2, comm="kthreadd", user=(), user_error=-errno.EFAULT,
              kernel=(0xffffffff81000250,), kernel_error=0),            # kernel thread: not missed
    ], offcpu=[count(7_000_000, kernel=(), kernel_error=-errno.ENOMEM)],
        stats={"idle_samples": 11, "map_full_drops": 1, "lost_offcpu_spans": 4, "sampled_out_spans": 9})
    batch = build_batch(drain, sym, 19, offcpu=True)
    cpu = batch.cpu
    assert batch.samples == 11 and cpu.total(0) == 11
    assert cpu.total(1) == 11 * (1_000_000_000 // 19)
    first = next(s for s in cpu.samples if s.values[0] == 5)
    assert dict(first.labels) == {"pid": "4242", "process": "app", "thread": "worker",
                                  "container_id": CID, "pod_uid": POD}
    # Unsymbolized frames keep basename+offset (ELF vaddr unknown: file offset), root first.
    assert [f.function for f in first.stack] == ["app+0x21ff", "app+0x2100"]  # + mapping offset 0x1000
    missed = next(s for s in cpu.samples if s.values[0] == 2)
    assert missed.stack[-1].function == "[missed user stack]"
    kern = next(s for s in cpu.samples if s.values[0] == 1)
    assert kern.stack[-1].function == "schedule" and kern.stack[-1].binary == "[kernel.kallsyms]"
    kthread = next(s for s in cpu.samples if s.values[0] == 3)
    assert [f.function for f in kthread.stack] == ["do_idle"]
    assert cpu.counters["missed_stacks"] == 2 and cpu.counters["missed_user_stacks"] == 2
    assert cpu.counters["unsymbolized_frames"] == 2 + 2  # the user frames of count(5) and count(1)
    assert cpu.counters["idle_samples"] == 11 and cpu.counters["map_full_drops"] == 1
    off = batch.offcpu
    assert off is not None and off.total(0) == 7_000_000
    assert off.counters["missed_kernel_stacks"] == 1
    assert off.counters["lost_offcpu_spans"] == 4 and off.counters["sampled_out_spans"] == 9
    assert off.samples[0].stack[-1].function == "[missed kernel stack]"


class World:
    """Fake time for the agent: `wait` advances the clock; the server goes down and comes back."""

    def __init__(self, server, down_from: float, down_until: float, stop_at: float) -> None:
        self.now = 0.0
        self.server = server
        self.down = (down_from, down_until)
        self.stop_at = stop_at

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        self.server.mode = "500" if self.down[0] <= self.now < self.down[1] else "ok"
        return self.now >= self.stop_at


def drains(i: int) -> RawDrain:
    return RawDrain(start_ns=i * 10**9, end_ns=(i + 1) * 10**9, cpu=[count(i + 1)],
                    offcpu=[count(1_000_000 * (i + 1))])


def make_agent(tmp_path, server, world: World, spool_max: int = 10**8) -> Agent:
    config = AgentConfig(server=server.url, token="t", interval_s=1.0, service="svc", host="h")
    return Agent(config, FakeSource(drains), make_symbolizer(tmp_path), Spool(tmp_path / "spool", spool_max),
                 Shipper(server.url, "t", clock=world.clock, base_backoff_s=0.5, max_backoff_s=4),
                 clock=world.clock, wait=world.wait, out=lambda _l: None)


def test_outage_then_every_interval_arrives_exactly_once(tmp_path, ingest_server) -> None:
    world = World(ingest_server, down_from=2.5, down_until=40.0, stop_at=60.0)
    agent = make_agent(tmp_path, ingest_server, world)
    assert agent.run() == 0
    ticks = agent.intervals
    assert ticks >= 59  # one-second intervals over 60 s plus the flush on stop
    assert len(ingest_server.stored) == 2 * ticks  # cpu + offcpu per interval, no gaps
    totals = {}
    for body in ingest_server.stored.values():
        p = pprof.decode(body)
        kind = "cpu" if len(p.sample_types) == 2 else "off"
        totals.setdefault(kind, []).append(p.total(0))
    assert sorted(totals["cpu"]) == list(range(1, ticks + 1))
    assert sorted(totals["off"]) == [1_000_000 * i for i in range(1, ticks + 1)]
    assert all(q.count("service=svc") == 1 and "host=h" in q for q in ingest_server.queries)
    assert agent.spool.items() == []


def test_kill_loses_only_the_interval_in_progress(tmp_path, ingest_server) -> None:
    world = World(ingest_server, down_from=0.0, down_until=100.0, stop_at=1000.0)
    ingest_server.mode = "500"
    agent = make_agent(tmp_path, ingest_server, world)
    for _ in range(3):
        agent.tick()  # spooled on disk, server failing
    keys = [i.key for i in agent.spool.items()]
    assert len(keys) == 6
    del agent  # SIGKILL: no flush, nothing in memory survives
    ingest_server.mode = "ok"
    world.down = (0.0, 0.0)
    fresh = make_agent(tmp_path, ingest_server, world)
    fresh.shipper.flush(fresh.spool)
    assert set(keys) <= set(ingest_server.stored)


def test_full_spool_drops_oldest_and_counts_it(tmp_path, ingest_server) -> None:
    world = World(ingest_server, down_from=0.0, down_until=1e9, stop_at=1e9)
    ingest_server.mode = "500"
    agent = make_agent(tmp_path, ingest_server, world, spool_max=1500)
    for _ in range(10):
        agent.tick()
        assert agent.spool.size_bytes() <= 1500
    assert agent.spool.dropped_batches > 0
    ingest_server.mode = "ok"
    world.down = (0.0, 0.0)
    agent.shipper.next_try = 0
    agent.tick()
    reported = [pprof.decode(b).counters.get("spool_dropped_batches", 0) for b in ingest_server.stored.values()]
    assert sum(reported) == agent.spool.dropped_batches


def test_a_failing_interval_does_not_stop_the_agent(tmp_path, ingest_server) -> None:
    def flaky(i: int) -> RawDrain:
        if i == 1:
            raise OSError("exited mid-read")
        return drains(i)

    world = World(ingest_server, down_from=1e9, down_until=1e9, stop_at=4.5)
    agent = make_agent(tmp_path, ingest_server, world)
    agent.source = FakeSource(flaky)
    assert agent.run() == 0
    assert agent.failed_ticks == 1 and agent.intervals >= 3
    assert len(ingest_server.stored) == 2 * agent.intervals


def test_metrics_endpoint_serves_collector_counters(tmp_path, ingest_server) -> None:
    import socket
    import urllib.request

    world = World(ingest_server, down_from=1e9, down_until=1e9, stop_at=1e9)
    agent = make_agent(tmp_path, ingest_server, world)
    agent.tick()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent.metrics.serve(f"127.0.0.1:{port}")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "hotpath_collector_samples_total 1.0" in text
    assert "hotpath_collector_shipped_batches_total 2.0" in text


def test_sigterm_flush_ignores_backoff(tmp_path, ingest_server) -> None:
    world = World(ingest_server, down_from=0.5, down_until=9.9, stop_at=10.0)
    agent = make_agent(tmp_path, ingest_server, world)
    agent.shipper.max = agent.shipper.base = 100.0  # backoff far beyond the stop
    assert agent.run() == 0
    assert len(ingest_server.stored) == 2 * agent.intervals and agent.spool.items() == []
