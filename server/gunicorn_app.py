"""Running the app under gunicorn programmatically (the production server, also for one worker)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from server.buffering_worker import BufferingWorker, RequestLimits
from server.config import MULTIPROC_ENV
from server.heap import keep_freed_memory


def serve(overrides: dict[str, Any], bind: str, workers: int, config_file: str | None = None,
          threads: int = 4, limits: RequestLimits | None = None, heap_idle_trim_s: float = 0.0) -> int:
    """Serve `create_app(overrides)` with gunicorn and BufferingWorker; returns when stopped."""
    from gunicorn.app.base import BaseApplication

    # prometheus_client picks per-process or file-backed metric values when it is first imported;
    # the workers inherit the master's modules, so an import here would silently make /metrics
    # per-worker again. Fail loudly instead (the cli import chain is kept free of it).
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before serve(): /metrics could not sum the workers")
    # Multiprocess metrics always, also for one worker: one code path, and counters survive a worker
    # that gunicorn replaces (timeout, crash) instead of restarting from zero. A private 0700
    # directory per server run (any inherited PROMETHEUS_MULTIPROC_DIR is replaced): files of an
    # earlier run or of another server would otherwise be summed in.
    master_pid = os.getpid()
    metrics_dir = tempfile.mkdtemp(prefix="hotpath-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir

    def child_exit(_arbiter: Any, worker: Any) -> None:
        from prometheus_client import multiprocess

        # Drops the dead worker's live* gauge files (its pool is gone); its counters stay counted.
        multiprocess.mark_process_dead(worker.pid, metrics_dir)

    class HotpathApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", max(1, workers))
            # Requests are read whole by the worker's event loop before a thread serves them:
            # slow clients cost no thread (server/buffering_worker.py).
            self.cfg.set("worker_class", type("HotpathWorker", (BufferingWorker,),
                                              {"limits": limits or RequestLimits(),
                                               "heap_idle_trim_s": heap_idle_trim_s}))
            self.cfg.set("threads", max(1, threads))
            # One thread: no keep-alive, as gunicorn's sync worker had it. A worker accepts only
            # while a thread is free, so with each request on a new connection a few busy clients
            # spread over every worker instead of staying on the one that accepted them.
            self.cfg.set("keepalive", 0 if threads <= 1 else 2)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", None)
            self.cfg.set("preload_app", False)  # each worker opens its own database pool after fork
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 26 listens on one fixed per-user path ($HOME/.gunicorn/gunicorn.ctl):
                # two servers on a host (`hotpath up` next to `hotpath server`, parallel tests)
                # would fight over it, and nothing here uses it.
                self.cfg.set("control_socket_disable", True)
            self.cfg.set("child_exit", child_exit)

        def load(self) -> Any:
            from server.app import create_app

            keep_freed_memory()  # per worker: load() runs after the fork
            if config_file:
                os.environ["HOTPATH_CONFIG"] = config_file
            return create_app(overrides)

    try:
        HotpathApplication().run()
    finally:  # gunicorn's master leaves by SystemExit; only the master gets here (workers os._exit)
        if os.getpid() == master_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            if previous is None:
                os.environ.pop(MULTIPROC_ENV, None)
            else:
                os.environ[MULTIPROC_ENV] = previous
    return 0
