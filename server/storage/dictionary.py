"""Function and stack dictionaries: content-hash deduplication and id assignment with caches.

Ids are small sequential integers assigned by the database (they delta-pack into ~2 bytes per
entry in batches); identity is a 16-byte blake2b of the symbolized frames (function, binary,
kind) — never addresses — so the same stack maps to the same id from every host. Concurrent
writers insert with ON CONFLICT DO NOTHING and read the winner's id back. Caches are filled only
after the caller's transaction committed, so a rolled-back insert never leaves a dangling id.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from profiler.model import Frame, FrameKind
from server.models import functions, stacks

CHUNK = 500
_CACHE_LIMIT = 2_000_000


def function_hash(frame: Frame) -> bytes:
    kind = frame.kind.value if isinstance(frame.kind, FrameKind) else str(frame.kind)
    text = f"{frame.function}\0{frame.binary}\0{kind}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


def stack_hash(function_hashes: Iterable[bytes]) -> bytes:
    return hashlib.blake2b(b"".join(function_hashes), digest_size=16).digest()


def pack_function_ids(ids: Sequence[int]) -> bytes:
    if ids and max(ids) > 0xFFFFFFFF:
        return b"\x08" + struct.pack(f"<{len(ids)}q", *ids)
    return b"\x04" + struct.pack(f"<{len(ids)}I", *ids)


def unpack_function_ids(data: bytes) -> tuple[int, ...]:
    width = data[0]
    count = (len(data) - 1) // width
    return struct.unpack_from(f"<{count}{'I' if width == 4 else 'q'}", data, 1)


def _insert_ids(conn: Connection, table, rows: list[dict]) -> dict[bytes, int]:  # type: ignore[no-untyped-def]
    """Insert dictionary rows (ignoring existing hashes) and return every row's id by hash.

    One multi-row INSERT ... RETURNING per chunk; only hashes another writer stored first need a
    follow-up SELECT. Rows go in hash order so concurrent writers lock index entries in one order.
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    out: dict[bytes, int] = {}
    ordered = sorted(rows, key=lambda r: r["hash"])
    # A cached statement executed with many parameter sets: SQLAlchemy batches it into multi-row
    # INSERT ... RETURNING ("insertmanyvalues") without recompiling per call.
    stmt = dialect.insert(table).on_conflict_do_nothing(index_elements=["hash"]).returning(table.c.hash, table.c.id)
    for h, row_id in conn.execute(stmt, ordered):
        out[bytes(h)] = int(row_id)
    missing = [r["hash"] for r in ordered if r["hash"] not in out]
    if missing:
        out.update(_ids_by_hash(conn, table, missing))
    return out


def _ids_by_hash(conn: Connection, table, hashes: list[bytes]) -> dict[bytes, int]:  # type: ignore[no-untyped-def]
    out: dict[bytes, int] = {}
    for i in range(0, len(hashes), CHUNK):
        part = hashes[i : i + CHUNK]
        for row in conn.execute(select(table.c.hash, table.c.id).where(table.c.hash.in_(part))):
            out[bytes(row[0])] = int(row[1])
    return out


def dense_unique(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(ids, return_inverse=True)` in O(n) for small non-negative ids (no sort)."""
    if ids.size == 0:
        return ids, ids
    top = int(ids.max())
    if top > 8 * ids.size + 1_000_000:
        uniq, inverse = np.unique(ids, return_inverse=True)
        return uniq, inverse.astype(np.int64)
    present = np.zeros(top + 1, dtype=bool)
    present[ids] = True
    uniq = np.flatnonzero(present)
    rank = np.cumsum(present) - 1
    return uniq, rank[ids]


class Dictionary:
    """Per-process caches over the `functions` and `stacks` tables (shared by all requests)."""

    def __init__(self) -> None:
        self.frame_ids: dict[Frame, tuple[int, bytes]] = {}
        self.stack_ids: dict[tuple[int, ...], int] = {}
        self.function_rows: dict[int, Frame] = {}
        self.stack_rows: dict[int, bytes] = {}  # uint32 function ids, root first

    # -- write side ---------------------------------------------------------------------------
    def assign(
        self, conn: Connection, stacks_in: list[tuple[Frame, ...]], by_obj: dict[int, Frame] | None = None
    ) -> tuple[list[int], dict[Frame, tuple[int, bytes]], dict[tuple[int, ...], int]]:
        """Stack ids for `stacks_in` (inserting new functions/stacks); returns pending cache entries."""
        pending_frames: dict[Frame, tuple[int, bytes]] = {}
        frame_ids = self.frame_ids
        # Decoded profiles share one Frame object per location: work per object, not per frame.
        if by_obj is None:
            by_obj = {id(f): f for stack in stacks_in for f in stack}
        new_frames: dict[Frame, bytes] = {}
        for frame in by_obj.values():
            if frame not in frame_ids and frame not in new_frames:
                new_frames[frame] = function_hash(frame)
        if new_frames:
            got = _insert_ids(conn, functions, [
                {"hash": h, "name": f.function, "binary": f.binary,
                 "kind": f.kind.value if isinstance(f.kind, FrameKind) else str(f.kind)}
                for f, h in new_frames.items()
            ])
            for frame, h in new_frames.items():
                pending_frames[frame] = (got[h], h)
        obj_fid: dict[int, int] = {}
        for oid, frame in by_obj.items():
            hit = frame_ids.get(frame) or pending_frames[frame]
            obj_fid[oid] = hit[0]
        fid_of = obj_fid.__getitem__
        keys = [tuple(map(fid_of, map(id, stack))) for stack in stacks_in]
        pending_stacks: dict[tuple[int, ...], int] = {}
        new_stacks: dict[tuple[int, ...], bytes] = {}
        known = self.stack_ids
        for key, stack in zip(keys, stacks_in):
            if key not in known and key not in new_stacks:
                new_stacks[key] = stack_hash((frame_ids.get(f) or pending_frames[f])[1] for f in stack)
        if new_stacks:
            got = _insert_ids(conn, stacks, [
                {"hash": h, "depth": len(key), "function_ids": pack_function_ids(key)}
                for key, h in new_stacks.items()
            ])
            for key, h in new_stacks.items():
                pending_stacks[key] = got[h]
        ids = [known.get(k) or pending_stacks[k] for k in keys]
        return ids, pending_frames, pending_stacks

    def committed(self, frames: dict[Frame, tuple[int, bytes]], stacks_: dict[tuple[int, ...], int]) -> None:
        """Publish ids learned in a transaction that has now committed."""
        if len(self.frame_ids) > _CACHE_LIMIT:
            self.frame_ids.clear()
        if len(self.stack_ids) > _CACHE_LIMIT:
            self.stack_ids.clear()
        self.frame_ids.update(frames)
        self.stack_ids.update(stacks_)

    # -- read side ----------------------------------------------------------------------------
    def load(self, conn: Connection, stack_ids: Iterable[int]) -> None:
        """Make sure the stacks and their functions are cached (one query per chunk of misses)."""
        blobs = self.stack_rows
        missing = [int(s) for s in stack_ids if int(s) not in blobs]
        new_fids: set[int] = set()
        for i in range(0, len(missing), CHUNK * 4):
            part = missing[i : i + CHUNK * 4]
            for sid, packed in conn.execute(select(stacks.c.id, stacks.c.function_ids).where(stacks.c.id.in_(part))):
                packed = bytes(packed)
                blob = packed[1:] if packed[0] == 4 else np.frombuffer(packed, "<i8", offset=1).astype("<u4").tobytes()
                blobs[int(sid)] = blob
                new_fids.update(struct.unpack(f"<{len(blob) // 4}I", blob))
        missing_f = [f for f in new_fids if f not in self.function_rows]
        for i in range(0, len(missing_f), CHUNK * 4):
            part = missing_f[i : i + CHUNK * 4]
            query = select(functions.c.id, functions.c.name, functions.c.binary, functions.c.kind)
            for fid, name, binary, kind in conn.execute(query.where(functions.c.id.in_(part))):
                try:
                    fkind = FrameKind(kind)
                except ValueError:
                    fkind = FrameKind.UNKNOWN
                self.function_rows[int(fid)] = Frame(name, binary, fkind)
        if len(blobs) > _CACHE_LIMIT:
            self.stack_rows = {}

    def flat(self, conn: Connection, stack_ids: np.ndarray) -> tuple[list[Frame], np.ndarray, np.ndarray, np.ndarray]:
        """(frames, flat local frame ids, lengths, kept mask) for `build_tree_ids`, vectorized."""
        ids = stack_ids.tolist()
        self.load(conn, ids)
        blobs = self.stack_rows
        kept = np.fromiter((s in blobs for s in ids), dtype=bool, count=len(ids))
        parts = [blobs[s] for s in ids if s in blobs]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)) // 4
        flat = np.frombuffer(b"".join(parts), dtype="<u4").astype(np.int64)
        uniq, local = dense_unique(flat)
        funcs = self.function_rows
        frames = [funcs.get(int(f)) or Frame(f"unknown function {int(f)}") for f in uniq]
        return frames, local.astype(np.int64), lengths, kept

    def resolve(self, conn: Connection, stack_ids: Iterable[int]) -> dict[int, tuple[Frame, ...]]:
        """Frames (root first) for each stack id."""
        wanted = [int(s) for s in stack_ids]
        self.load(conn, wanted)
        blobs, funcs = self.stack_rows, self.function_rows
        out = {}
        for s in wanted:
            blob = blobs.get(s)
            if blob is not None:
                out[s] = tuple(funcs.get(f) or Frame(f"unknown function {f}")
                               for f in struct.unpack(f"<{len(blob) // 4}I", blob))
        return out
