"""`hotpath server`, `hotpath db upgrade`, `hotpath token create|list|revoke`, `hotpath up` (imports stay lazy)."""

from __future__ import annotations

import argparse
from typing import Any

from hotpath.command import CommandError, positive_int
from server.config import check_bind
from server.scopes import SCOPES

SERVER_EPILOG = """examples:
  hotpath server                                       # SQLite in ~/.local/share/hotpath, 127.0.0.1:4040
  hotpath server --db postgresql://u:p@db/hotpath --bind 0.0.0.0:4040 --workers 4
  hotpath db upgrade --db postgresql://u:p@db/hotpath
  hotpath token create --scope ingest --name fleet-collectors
  hotpath token list                                   # ids, names, scopes, sessions; never secrets
  hotpath token revoke fleet-collectors                # by name (or id); its sessions end at once
"""


def _db_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database URL (default: SQLite file in the data dir)")
    parser.add_argument("--data-dir", metavar="DIR", help="data directory (default ~/.local/share/hotpath)")
    parser.add_argument("--config", metavar="FILE", help="JSON config file (also HOTPATH_CONFIG)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if getattr(args, "db", None):
        out["DATABASE_URL"] = args.db
    if getattr(args, "data_dir", None):
        out["DATA_DIR"] = args.data_dir
    return out


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from server.config import ConfigError, load_config

    try:
        return load_config({**overrides(args), **(extra or {})}, config_file=getattr(args, "config", None))
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def cmd_server(args: argparse.Namespace) -> int:
    from server import db
    from server.buffering_worker import RequestLimits
    from server.config import database_url
    from server.gunicorn_app import serve

    extra: dict[str, Any] = {}
    if args.bind:
        extra["BIND"] = args.bind
    if args.no_auth:
        extra["AUTH"] = False
    if args.workers:
        extra["WORKERS"] = args.workers
    if args.threads:
        extra["THREADS"] = args.threads
    if args.header_timeout:
        extra["HEADER_TIMEOUT_S"] = args.header_timeout
    if args.body_timeout:
        extra["BODY_TIMEOUT_S"] = args.body_timeout
    if args.auto_upgrade:
        extra["AUTO_UPGRADE"] = True
    cfg = _config(args, extra)
    try:
        check_bind(cfg["BIND"], cfg["AUTH"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    url = database_url(cfg)
    if cfg["AUTO_UPGRADE"]:
        db.upgrade(url)
    engine = db.make_engine(url)
    try:
        db.check_schema(engine)
    except db.SchemaBehindError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    return serve({**overrides(args), **extra, "AUTO_UPGRADE": False}, cfg["BIND"], cfg["WORKERS"],
                 getattr(args, "config", None), threads=cfg["THREADS"], limits=RequestLimits.from_config(cfg),
                 heap_idle_trim_s=cfg["HEAP_IDLE_TRIM_S"])


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from server import db
    from server.config import database_url

    url = database_url(_config(args))
    db.upgrade(url)
    engine = db.make_engine(url)
    print(f"database {engine.url.render_as_string(hide_password=True)} is at revision {db.current_revision(engine)}")
    engine.dispose()
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from server import auth, db
    from server.config import database_url

    engine = db.make_engine(database_url(_config(args)))
    try:
        db.check_schema(engine)
        token = auth.create_token(engine, auth.parse_scopes(args.scope), args.name or "")
    except (db.SchemaBehindError, auth.AuthError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    print(token)  # shown once: only its hash is stored
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    import datetime as dt

    from server import auth, db
    from server.config import database_url

    engine = db.make_engine(database_url(_config(args)))
    try:
        db.check_schema(engine)
        infos = auth.list_tokens(engine)
    except db.SchemaBehindError as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    print(f"{'ID':>5}  {'STATUS':8} {'SCOPES':18} {'SESSIONS':>8}  {'CREATED (UTC)':20} NAME")
    for t in infos:
        created = dt.datetime.fromtimestamp(t.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "revoked" if t.revoked else "active"
        print(f"{t.id:>5}  {status:8} {t.scopes:18} {t.sessions:>8}  {created:20} {t.name}")
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from server import auth, db
    from server.config import database_url

    cfg = _config(args)
    engine = db.make_engine(database_url(cfg))
    try:
        db.check_schema(engine)
        info = auth.revoke(engine, args.token)
    except (db.SchemaBehindError, auth.AuthError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        engine.dispose()
    print(f"revoked token {info.id} ({info.name}); its browser sessions ended now, and servers refuse the "
          f"token within {cfg['AUTH_CACHE_S']} s (AUTH_CACHE_S)")
    return 0


def cmd_scrape(args: argparse.Namespace) -> int:
    """Scrape Go net/http/pprof targets into the database until SIGINT/SIGTERM (one lease per deployment)."""
    import signal
    import threading
    from pathlib import Path

    from hotpath.cli import CommandError
    from server import db
    from server.config import database_url
    from server.scrape import config as scrape_config
    from server.scrape.runner import Scraper, lease
    from server.storage import Storage

    cfg = _config(args)
    try:
        targets = scrape_config.load(Path(args.scrape_config).read_text()) if args.scrape_config else []
        targets += scrape_config.from_urls(args.target or [], float(args.interval))
    except (OSError, scrape_config.ConfigError) as exc:
        raise CommandError(f"scrape config: {exc}") from None
    if not targets:
        raise CommandError("nothing to scrape: give --scrape-config FILE or --target http://host:port")
    engine = db.make_engine(database_url(cfg))
    storage = Storage(engine, retention_days=cfg["RETENTION_DAYS"], rollup_grace_s=cfg["ROLLUP_GRACE_S"])
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    lock_path = str(Path(cfg["DATA_DIR"]) / "scrape.lock") if not db.is_postgres(engine) else None
    with lease(engine, lock_path, wait=lambda: not stop.wait(5)) as held:
        if held:
            print(f"hotpath scrape: {len(targets)} target(s)", flush=True)
            Scraper(storage, targets).run(stop)
    engine.dispose()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from server.up import run_up

    return run_up(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the server's subcommands to the `hotpath` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("server", help="run the Hotpath server (gunicorn)", epilog=SERVER_EPILOG,
                              formatter_class=fmt)
    _db_args(p)
    p.add_argument("--bind", metavar="HOST:PORT", help="listen address (default 127.0.0.1:4040)")
    p.add_argument("--no-auth", action="store_true", help="no tokens needed (loopback binds only)")
    p.add_argument("--workers", type=positive_int, help="gunicorn worker processes (default 1)")
    p.add_argument("--threads", type=positive_int, help="threads per worker (default 4)")
    p.add_argument("--header-timeout", type=positive_int, metavar="SECONDS",
                   help="time a client has to send a request's line and headers (default 10; then 408)")
    p.add_argument("--body-timeout", type=positive_int, metavar="SECONDS",
                   help="time a client has to send a request body after its headers (default 30; then 408)")
    p.add_argument("--auto-upgrade", action="store_true", help="run database migrations at start")
    p.set_defaults(func=cmd_server)

    p = subparsers.add_parser("db", help="database administration", epilog=SERVER_EPILOG, formatter_class=fmt)
    dbsub = p.add_subparsers(dest="db_command", metavar="COMMAND")
    up = dbsub.add_parser("upgrade", help="apply Alembic migrations up to the newest schema")
    _db_args(up)
    up.set_defaults(func=cmd_db_upgrade)

    p = subparsers.add_parser("token", help="API tokens", epilog=SERVER_EPILOG, formatter_class=fmt)
    tsub = p.add_subparsers(dest="token_command", metavar="COMMAND")
    create = tsub.add_parser("create", help="create a token (printed once; stored hashed)")
    _db_args(create)
    create.add_argument("--scope", action="append", required=True, choices=SCOPES,
                        help="scope (repeatable)")
    create.add_argument("--name", help="a name to recognize the token by")
    create.set_defaults(func=cmd_token_create)
    lister = tsub.add_parser("list", help="list tokens: id, status, scopes, live sessions, name (no secrets)")
    _db_args(lister)
    lister.set_defaults(func=cmd_token_list)
    revoke = tsub.add_parser("revoke", help="revoke a token by id or name, and end its browser sessions")
    _db_args(revoke)
    revoke.add_argument("token", metavar="ID|NAME", help="the token's id or name (see `hotpath token list`)")
    revoke.set_defaults(func=cmd_token_revoke)

    p = subparsers.add_parser("scrape", help="scrape Go net/http/pprof endpoints into the database (run once "
                              "per deployment: a second one waits as a standby)", formatter_class=fmt,
                              epilog="examples:\n  hotpath scrape --scrape-config scrape.yml --db postgresql+psycopg://...\n"
                                     "  hotpath scrape --target http://127.0.0.1:6060 --interval 10")
    _db_args(p)
    p.add_argument("--scrape-config", metavar="FILE", help="Prometheus-style scrape_configs (YAML)")
    p.add_argument("--target", action="append", metavar="URL", help="http://host:port serving /debug/pprof (repeatable)")
    p.add_argument("--interval", type=positive_int, default=15, metavar="SECONDS", help="for --target (default 15)")
    p.set_defaults(func=cmd_scrape)

    p = subparsers.add_parser("up", help="server on SQLite + a local collector; prints the UI URL",
                              epilog="example:\n  sudo hotpath up            # then open the printed URL",
                              formatter_class=fmt)
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ~/.local/share/hotpath)")
    p.add_argument("--bind", default="127.0.0.1:4040", metavar="HOST:PORT", help="listen address")
    p.add_argument("--no-collector", action="store_true", help="serve only; do not start the local collector")
    p.add_argument("--scrape", action="append", metavar="URL",
                   help="also scrape this Go net/http/pprof server every 15 s (http://host:port; repeatable)")
    p.set_defaults(func=cmd_up)
