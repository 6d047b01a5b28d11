"""Running the app under gunicorn programmatically (the production server, also for one worker)."""

from __future__ import annotations

from typing import Any

from server.heap import keep_freed_memory


def serve(overrides: dict[str, Any], bind: str, workers: int, config_file: str | None = None,
          threads: int = 4) -> int:
    """Serve `create_app(overrides)` with gunicorn's threaded workers; returns when stopped."""
    from gunicorn.app.base import BaseApplication

    class HotpathApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", max(1, workers))
            # One thread: the sync worker, which accepts only when idle, so connections spread
            # over workers; gthread keeps keep-alive connections on the worker that accepted them.
            self.cfg.set("worker_class", "gthread" if threads > 1 else "sync")
            self.cfg.set("threads", max(1, threads))
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 10)
            self.cfg.set("accesslog", None)
            self.cfg.set("preload_app", False)  # each worker opens its own database pool after fork

        def load(self) -> Any:
            import os

            from server.app import create_app

            keep_freed_memory()  # per worker: load() runs after the fork
            if config_file:
                os.environ["HOTPATH_CONFIG"] = config_file
            return create_app(overrides)

    HotpathApplication().run()
    return 0
