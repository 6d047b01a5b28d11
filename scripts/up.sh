#!/usr/bin/env bash
# Set everything up on a fresh machine and run Hotpath locally: server on SQLite + a collector
# profiling this host, UI on a printed localhost URL. Arguments go to `hotpath up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/hotpath up "$@"
