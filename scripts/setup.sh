#!/usr/bin/env bash
# Install everything Hotpath needs on a fresh Debian 12 machine; idempotent and fast on a second run.
#   - Debian packages (when root): BCC, kernel headers fallback, perf, PostgreSQL, Chromium, Go (go tool pprof),
#     Debian's python3.11 (a second CPython build the Python-frame tests profile)
#   - kernel headers for BCC when the running kernel has none (see ../shared/ENVIRONMENT.md)
#   - tracefs mounted (tracepoints need it)
#   - a virtualenv in .venv with Hotpath installed editable, plus BCC's Debian module on its path
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
log() { printf '[setup] %s\n' "$*" >&2; }

APT_PACKAGES=(gcc python3-dev python3.11 bpfcc-tools python3-bpfcc libbpfcc linux-headers-amd64 linux-perf postgresql chromium golang-go)

if [ "$(id -u)" = 0 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  fi

  # BCC compiles against the running kernel's headers; when the distro has none for this kernel,
  # point the module dir at the newest installed Debian headers (uapi-only BPF code is fine with that).
  moddir=/lib/modules/$(uname -r)
  if [ ! -e "$moddir/build/include" ]; then
    hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$hdr" ]; then
      common=${hdr%-amd64}-common
      mkdir -p "$moddir"
      ln -sfn "$hdr" "$moddir/build"
      ln -sfn "$common" "$moddir/source"
      log "kernel headers: $moddir/build -> $hdr"
    else
      log "warning: no kernel headers found; BPF programs will not compile"
    fi
  fi
  if [ ! -e /sys/kernel/tracing/events ]; then
    mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || log "warning: could not mount tracefs"
  fi
else
  log "not root: skipping Debian packages, kernel headers and tracefs (the collector needs root)"
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.hotpath-installed
want=$(cat pyproject.toml setup.py profiler/*.c server/protocols/*.c | sha256sum | cut -d' ' -f1)  # the C scanner is built by pip
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "pip install -e .[test]"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$want" > "$stamp"
fi

# BCC's Python module is Debian's (PyPI's "bcc" is unrelated): expose only that package to the venv.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -d /usr/lib/python3/dist-packages/bcc ]; then
  mkdir -p .venv/bcc-shim
  ln -sfn /usr/lib/python3/dist-packages/bcc .venv/bcc-shim/bcc
  echo "$root/.venv/bcc-shim" > "$site/hotpath-bcc.pth"
fi
# Real Node clients for the protocol tests (the Pyroscope Node SDK), versions locked in package-lock.json.
node_dir=tests/clients/node
if command -v npm >/dev/null; then
  want_node=$(sha256sum "$node_dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$node_dir/node_modules/.hotpath-installed" 2>/dev/null)" != "$want_node" ]; then
    log "npm ci ($node_dir)"
    (cd "$node_dir" && npm ci --no-audit --no-fund --silent)
    echo "$want_node" > "$node_dir/node_modules/.hotpath-installed"
  fi
else
  log "warning: npm not found; the Node client tests will fail under CI=true"
fi
log "ready: $root/.venv/bin/hotpath"
