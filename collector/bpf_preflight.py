"""Before loading BPF: check root, BPF support, tracefs, kernel headers and lockdown, and say
exactly what is missing and the command that fixes it (LoaderError)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

TRACEFS = Path("/sys/kernel/tracing")


class LoaderError(Exception):
    """The BPF side cannot start; the message says what is missing and the command that fixes it."""


def _headers_hint(release: str) -> str:
    return (
        f"kernel headers for {release} not found (/lib/modules/{release}/build). Fix: "
        "`bash scripts/setup.sh`, or `apt-get install -y linux-headers-amd64` then "
        f"`mkdir -p /lib/modules/{release} && "
        f"ln -sfn /usr/src/linux-headers-<ver>-amd64 /lib/modules/{release}/build && "
        f"ln -sfn /usr/src/linux-headers-<ver>-common /lib/modules/{release}/source`"
    )


def preflight(release: str | None = None) -> None:
    """Check root, BPF, tracefs, headers and lockdown; mount tracefs if needed. Raises LoaderError."""
    release = release or platform.release()
    if os.geteuid() != 0:
        raise LoaderError("BPF needs root (CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN): run with sudo, "
                          "or in a privileged container with `pid: host`")
    if not Path("/sys/kernel/btf").exists() and not Path("/proc/sys/kernel/bpf_stats_enabled").exists():
        raise LoaderError("this kernel has no BPF syscall support (CONFIG_BPF_SYSCALL): "
                          "use a kernel built with CONFIG_BPF_SYSCALL and CONFIG_BPF_EVENTS")
    lockdown = Path("/sys/kernel/security/lockdown")
    if lockdown.exists() and "[confidentiality]" in lockdown.read_text():
        raise LoaderError("kernel lockdown is in confidentiality mode, which forbids BPF reads of "
                          "kernel memory: boot with `lockdown=integrity` (or disable Secure Boot lockdown)")
    if not (TRACEFS / "events").is_dir():
        result = subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACEFS)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0 or not (TRACEFS / "events").is_dir():
            raise LoaderError(f"tracefs is not mounted and mounting failed ({result.stderr.strip()}): "
                              f"run `mount -t tracefs tracefs {TRACEFS}` (in a container, mount "
                              "/sys/kernel/tracing from the host)")
    if not Path(f"/lib/modules/{release}/build").exists():
        raise LoaderError(_headers_hint(release))


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError as exc:
        raise LoaderError("BCC's Python bindings are missing: `apt-get install -y bpfcc-tools "
                          "python3-bpfcc libbpfcc` and make /usr/lib/python3/dist-packages "
                          f"importable (scripts/setup.sh does both) ({exc})") from exc
    return bcc

