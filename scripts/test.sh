#!/usr/bin/env bash
# Set everything up on a fresh machine, start a throwaway PostgreSQL, and run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/profiler -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ -z "${HOTPATH_TEST_PG_URL:-}" ] && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$ver" ]; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='hotpath'\"" | grep -q 1 ||
      su postgres -c "psql -qc \"CREATE ROLE hotpath LOGIN SUPERUSER PASSWORD 'hotpath'\""
    su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='hotpath_test'\"" | grep -q 1 ||
      su postgres -c "createdb -O hotpath hotpath_test"
    export HOTPATH_TEST_PG_URL="postgresql+psycopg://hotpath:hotpath@127.0.0.1:5432/hotpath_test"
  fi
fi
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pytest -q -ra "$@"
