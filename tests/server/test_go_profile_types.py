"""Real Go runtime profiles (heap, allocs, mutex, block, goroutine) over HTTP: every sample type queryable.

A Go program (standard library only) holds a known live heap, parks a known number of goroutines in a
known function and makes known lock contention, then writes its runtime/pprof profiles. The oracle
for each (profile, sample type) total is `go tool pprof -raw` on the same file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.profiler.go_profile import go_env, go_pprof
from tests.server.conftest import bearer
from tests.server.protocol_helpers import pprof_raw_totals

LIVE_MIB = 64
PARKED = 100

GO_MAIN = r"""
package main

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

var live [][]byte
var sink []byte

//go:noinline
func holdHeap(mib int) {
	for i := 0; i < mib; i++ {
		live = append(live, make([]byte, 1<<20))
	}
}

//go:noinline
func churn() {
	for i := 0; i < 256; i++ {
		sink = make([]byte, 64<<10)
	}
}

//go:noinline
func parked(ch chan struct{}, wg *sync.WaitGroup) { wg.Done(); <-ch }

//go:noinline
func contend(mu *sync.Mutex, wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < 20; i++ {
		mu.Lock()
		time.Sleep(2 * time.Millisecond)
		mu.Unlock()
	}
}

func write(dir, name, file string) {
	f, err := os.Create(filepath.Join(dir, file))
	if err != nil {
		panic(err)
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		panic(err)
	}
	f.Close()
}

func main() {
	dir := os.Args[1]
	runtime.MemProfileRate = 1
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	holdHeap(LIVE)
	ch := make(chan struct{})
	var ready sync.WaitGroup
	for i := 0; i < PARKED; i++ {
		ready.Add(1)
		go parked(ch, &ready)
	}
	ready.Wait()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go contend(&mu, &wg)
	}
	wg.Wait()
	for i := 0; i < 3; i++ {
		churn()
		runtime.GC()
		write(dir, "heap", "heap"+string(rune('0'+i))+".pb.gz")
		time.Sleep(300 * time.Millisecond)
	}
	write(dir, "allocs", "allocs.pb.gz")
	write(dir, "mutex", "mutex.pb.gz")
	write(dir, "block", "block.pb.gz")
	write(dir, "goroutine", "goroutine.pb.gz")
	runtime.KeepAlive(live)
	close(ch)
}
""".replace("LIVE", str(LIVE_MIB)).replace("PARKED", str(PARKED))

# file -> (?type= sent, profile name stored); no type: inferred from the sample types
FILES = {"heap0": ("", "memory"), "allocs": ("", "memory"), "mutex": ("mutex", "mutex"),
         "block": ("block", "block"), "goroutine": ("", "goroutine")}


@pytest.fixture(scope="module")
def go_profiles(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    tmp = tmp_path_factory.mktemp("gotypes")
    src = tmp / "src"
    src.mkdir()
    (src / "main.go").write_text(GO_MAIN)
    (src / "go.mod").write_text("module gotypes\n\ngo 1.19\n")
    env = go_env(tmp)
    subprocess.run([go_bin, "build", "-o", str(tmp / "gotypes"), "."], cwd=src, env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([str(tmp / "gotypes"), str(tmp)], env=env, check=True, capture_output=True, timeout=60)
    return go_bin, tmp


def ingest(client: Any, token: str, path: Path, service: str, ptype: str) -> None:
    args = f"service={service}" + (f"&type={ptype}" if ptype else "")
    resp = client.post(f"/api/v1/ingest?{args}", data=path.read_bytes(), headers=bearer(token),
                       content_type="application/octet-stream")
    assert resp.status_code == 200, resp.get_json()


def top(client: Any, token: str, query: str) -> dict[str, Any]:
    resp = client.get("/api/v1/top", query_string={"query": query, "from": "now-1h", "until": "now+5m",
                                                   "limit": "100000"}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def test_every_sample_type_of_go_profiles_equals_go_tool_pprof(client: Any, tokens: dict[str, str],
                                                              go_profiles: tuple[str, Path]) -> None:
    go, tmp = go_profiles
    checked = 0
    for stem, (sent, name) in FILES.items():
        path = tmp / f"{stem}.pb.gz"
        ingest(client, tokens["ingest"], path, f"go-{stem}", sent)
        types, totals, _names = pprof_raw_totals(go_pprof(go, tmp, "-raw", str(path)))
        for type_unit, want in zip(types, totals):
            sample_type, unit = type_unit.removesuffix("[dflt]").split("/")
            got = top(client, tokens["read"], f'{name}:{sample_type}{{service="go-{stem}"}}')
            assert (got["total"], got["unit"]) == (want, unit), (stem, type_unit)
            checked += 1
    assert checked == 4 + 4 + 2 + 2 + 1
    listed = {t["name"] for t in client.get("/api/v1/profile-types", headers=bearer(tokens["read"])).get_json()["types"]}
    assert {"memory:alloc_space", "memory:inuse_objects", "mutex:delay", "block:contentions",
            "goroutine:goroutine"} <= listed


def test_known_goroutines_contention_and_live_heap(client: Any, tokens: dict[str, str],
                                                   go_profiles: tuple[str, Path]) -> None:
    _go, tmp = go_profiles
    ingest(client, tokens["ingest"], tmp / "goroutine.pb.gz", "go-known", "")
    ingest(client, tokens["ingest"], tmp / "mutex.pb.gz", "go-known", "mutex")
    parked = [f for f in top(client, tokens["read"], 'goroutine{service="go-known"}')["functions"]
              if f["name"] == "main.parked"]
    assert parked and parked[0]["total"] == PARKED
    delay = top(client, tokens["read"], 'mutex:delay{service="go-known"}')
    by_name = {f["name"]: f for f in delay["functions"]}
    # 4 goroutines x 20 locks held 2 ms: the waiters queue for at least a share of ~160 ms
    assert by_name["main.contend"]["total"] >= 0.5 * delay["total"] > 50_000_000, delay["total"]
    # three heap snapshots of the same live heap: the range reads it once, not three times
    for i in range(3):
        ingest(client, tokens["ingest"], tmp / f"heap{i}.pb.gz", "go-live", "")
    live = top(client, tokens["read"], 'memory:inuse_space{service="go-live"}')
    assert live["aggregation"] == "average"
    assert abs(live["total"] - LIVE_MIB * (1 << 20)) <= 0.1 * LIVE_MIB * (1 << 20), live["total"]
    hold = [f for f in live["functions"] if f["name"] == "main.holdHeap"]
    assert hold and abs(hold[0]["total"] - LIVE_MIB * (1 << 20)) <= 0.01 * LIVE_MIB * (1 << 20)
