"""A bounded on-disk spool of encoded batches waiting to be shipped.

Each batch is written (body, then its metadata, each atomically renamed) before the first send,
so a SIGKILL loses at most the interval in progress. When full, the oldest batches go first, and
every such drop is counted and logged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("hotpath.collector.spool")


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
        return self.body_path.read_bytes()


class Spool:
    """Oldest-first FIFO of batches under `directory`, bounded to `max_bytes` in total."""

    def __init__(self, directory: str | Path, max_bytes: int = 100 * 1024 * 1024,
                 max_rejected: int = 20) -> None:
        self.dir = Path(directory)
        self.rejected_dir = self.dir / "rejected"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rejected_dir.mkdir(exist_ok=True)
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
                meta = json.loads(meta_path.read_text())
                size = body_path.stat().st_size
            except (OSError, ValueError):
                log.warning("spool: unreadable entry %s moved aside", meta_path.name)
                self._move_aside(meta_path, body_path)
                continue
            out.append(SpoolItem(meta_path.stem, meta["key"], meta["params"], size, body_path,
                                 int(meta.get("carried_drops", 0))))
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
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
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
            if path.exists():
                shutil.move(str(path), self.rejected_dir / path.name)
        kept = sorted(self.rejected_dir.iterdir())
        for old in kept[: max(0, len(kept) - 2 * self.max_rejected)]:
            old.unlink(missing_ok=True)

    def reject(self, item: SpoolItem) -> None:
        """Move a batch the server refused (4xx) out of the queue, keeping a few for inspection."""
        self._move_aside(self.dir / f"{item.name}.json", item.body_path)
