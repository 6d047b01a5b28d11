"""Build a tiny CPU-burning Go program with Debian's Go and return its runtime/pprof CPU profile.

Shared by the pprof and convert tests; the profile is built once per session (cached in tmp).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GO_MAIN = r"""
package main

import (
	"os"
	"runtime/pprof"
	"time"
)

//go:noinline
func leafSpin(n int) int { s := 0; for i := 0; i < n; i++ { s += i * i % 7 }; return s }

//go:noinline
func hotLoop() int { return leafSpin(200000) }

//go:noinline
func coldLoop() int { return leafSpin(50000) }

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil { panic(err) }
	pprof.StartCPUProfile(f)
	deadline := time.Now().Add(1500 * time.Millisecond)
	s := 0
	for time.Now().Before(deadline) { s += hotLoop(); s += coldLoop() }
	pprof.StopCPUProfile()
	f.Close()
	if s == 42 { println(s) }
}
"""


def go_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(GOFLAGS="-mod=mod", GOCACHE=str(tmp / "gocache"), HOME=str(tmp), GOPATH=str(tmp / "gopath"),
               GOPROXY="off", GOTOOLCHAIN="local", GO111MODULE="on")
    return env


def build_go_profile(go: str, tmp: Path) -> Path:
    """Write, build and run the Go program; return the path of its gzipped CPU profile."""
    src = tmp / "burn"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(GO_MAIN)
    (src / "go.mod").write_text("module burn\n\ngo 1.19\n")
    env = go_env(tmp)
    subprocess.run([go, "build", "-o", str(tmp / "burn.bin"), "."], cwd=src, env=env, check=True,
                   capture_output=True, timeout=300)
    out = tmp / "go_cpu.pb.gz"
    subprocess.run([str(tmp / "burn.bin"), str(out)], env=env, check=True, capture_output=True, timeout=60)
    return out


def go_pprof(go: str, tmp: Path, *args: str) -> str:
    """Run `go tool pprof ARGS` and return stdout."""
    res = subprocess.run([go, "tool", "pprof", *args], check=False, env=go_env(tmp), capture_output=True, text=True,
                         timeout=120)
    if res.returncode != 0:
        raise AssertionError(f"go tool pprof {' '.join(args)} failed: {res.stderr}")
    return res.stdout
