"""A bounded on-disk spool of encoded batches waiting to be shipped.

Each batch is written (body, then its metadata, each atomically renamed) before the first send,
so a SIGKILL loses at most the interval in progress. When full, the oldest batches go first, and
every such drop is counted and logged.

The agent runs as root and ships what the spool holds: in a directory others could write, a
planted `.tmp` symlink made it overwrite another file and a planted entry made it ship a root-only
file. So the directory must be the agent's own (created 0700; refused if owned by another user or
group/world-writable), and every file is opened without following links.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hotpath.collector.spool")
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class SpoolError(Exception):
    """The spool directory cannot be created or is not safe to use."""


def secure_dir(path: Path) -> None:
    """Create `path` (mode 0700) if missing; refuse a directory another user owns or could write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(path)
    except OSError as exc:
        raise SpoolError(f"cannot create spool directory {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SpoolError(f"spool directory {path} is not a directory")
    if st.st_uid != os.geteuid():
        raise SpoolError(f"spool directory {path} is owned by uid {st.st_uid}, not this user "
                         f"(uid {os.geteuid()}): refusing to read or write batches there")
    if st.st_mode & 0o022:
        raise SpoolError(f"spool directory {path} is writable by group or others "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}): run `chmod 700 {path}`")


def read_regular(path: Path) -> bytes:
    """A regular file's bytes, never through a symbolic link (OSError otherwise)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        return fh.read()


def _write_new(path: Path, data: bytes) -> None:
    """Write `data` to a new file at `path` (0600, fsynced); whatever sits there is removed first,
    never written through."""
    for attempt in (0, 1):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            break
        except FileExistsError:
            if attempt:
                raise
            path.unlink()  # a leftover (or planted) entry: unlink removes a link, not its target
    with open(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True, slots=True)
class SpoolItem:
    """One batch on disk: body file, idempotency key and the ingest query parameters."""

    name: str
    key: str
    params: dict[str, str]
    size: int
    body_path: Path
    carried_drops: int = 0  # spool_dropped_batches reported inside this batch

    def body(self) -> bytes:
        return read_regular(self.body_path)


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


class Spool:
    """Oldest-first FIFO of batches under `directory`, bounded to `max_bytes` in total."""

    def __init__(self, directory: str | Path, max_bytes: int = 100 * 1024 * 1024,
                 max_rejected: int = 20) -> None:
        self.dir = Path(directory)
        self.rejected_dir = self.dir / "rejected"
        secure_dir(self.dir)
        secure_dir(self.rejected_dir)
        self.max_bytes = max_bytes
        self.max_rejected = max_rejected
        self.dropped_batches = 0
        # Drops not yet reported in a batch; a dropped batch hands its own report back here.
        self.unreported_drops = 0
        self._seq = self._next_seq()
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)  # a write interrupted by a crash

    def _next_seq(self) -> int:
        seqs = [int(p.name.split("-", 1)[0]) for p in self.dir.glob("*.json") if p.name[:1].isdigit()]
        return max(seqs, default=0) + 1

    def items(self) -> list[SpoolItem]:
        """Complete batches, oldest first (a body without metadata is an interrupted write)."""
        out = []
        for meta_path in sorted(self.dir.glob("*.json")):
            body_path = meta_path.with_suffix(".pb.gz")
            try:
                meta = json.loads(read_regular(meta_path))
                st = os.lstat(body_path)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(f"{body_path.name}: not a regular file")
                item = SpoolItem(meta_path.stem, _str(meta["key"]), {_str(k): _str(v) for k, v in meta["params"].items()},
                                 st.st_size, body_path, int(meta.get("carried_drops", 0)))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("spool: unreadable entry %s moved aside", meta_path.name)
                self._move_aside(meta_path, body_path)
                continue
            out.append(item)
        return out

    def size_bytes(self) -> int:
        return sum(i.size for i in self.items())

    def put(self, body: bytes, params: dict[str, str], key: str | None = None,
            kind: str = "batch", carried_drops: int = 0) -> SpoolItem:
        """Store a batch durably (fsync), dropping the oldest ones first if over the bound."""
        key = key or str(uuid.uuid4())
        name = f"{self._seq:012d}-{kind}"
        self._seq += 1
        body_path = self.dir / f"{name}.pb.gz"
        meta_path = self.dir / f"{name}.json"
        self.make_room(len(body))
        for path, data in ((body_path, body), (meta_path, json.dumps({"key": key, "params": params, "carried_drops": carried_drops}).encode())):
            tmp = path.with_name(path.name + ".tmp")
            _write_new(tmp, data)
            os.replace(tmp, path)  # replaces a link at `path` itself, never its target
        return SpoolItem(name, key, params, len(body), body_path, carried_drops)

    def make_room(self, incoming: int) -> None:
        items = self.items()
        total = sum(i.size for i in items) + incoming
        for item in items:
            if total <= self.max_bytes:
                break
            self.remove(item)
            total -= item.size
            self.dropped_batches += 1
            self.unreported_drops += 1 + item.carried_drops
            log.warning("spool full (%d bytes max): dropped oldest batch %s (%d dropped so far)",
                        self.max_bytes, item.name, self.dropped_batches)

    def take_unreported_drops(self) -> int:
        n, self.unreported_drops = self.unreported_drops, 0
        return n

    def remove(self, item: SpoolItem) -> None:
        item.body_path.unlink(missing_ok=True)
        (self.dir / f"{item.name}.json").unlink(missing_ok=True)

    def _move_aside(self, *paths: Path) -> None:
        for path in paths:
            if os.path.lexists(path):
                shutil.move(str(path), self.rejected_dir / path.name)
        kept = sorted(self.rejected_dir.iterdir())
        for old in kept[: max(0, len(kept) - 2 * self.max_rejected)]:
            old.unlink(missing_ok=True)

    def reject(self, item: SpoolItem) -> None:
        """Move a batch the server refused (4xx) out of the queue, keeping a few for inspection."""
        self._move_aside(self.dir / f"{item.name}.json", item.body_path)
