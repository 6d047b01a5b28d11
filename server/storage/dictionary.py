"""Function and stack dictionaries: content-hash deduplication and id assignment with caches.

Ids are small sequential integers assigned by the database (they delta-pack into ~2 bytes per
entry in batches); identity is a 16-byte blake2b of the symbolized frames (function, binary,
kind) — never addresses — so the same stack maps to the same id from every host. Concurrent
writers insert with ON CONFLICT DO NOTHING and read the winner's id back. Caches are filled only
after the caller's transaction committed, so a rolled-back insert never leaves a dangling id.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from profiler.model import Frame, FrameKind
from server import deadline
from server.models import functions, stacks

CHUNK = 500
CACHE_LIMIT = 1_000_000  # entries per cache by default (DICT_CACHE_ENTRIES); a stack key is 8 bytes per frame


def function_hash(frame: Frame) -> bytes:
    return key_hash(frame_key(frame))


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


FlatStacks = tuple[np.ndarray, np.ndarray]  # ProfileTable.flat_stacks(): frame indexes, depths
FrameKey = tuple[str, str, str]  # (function, binary, kind): a function's identity
_frame_key_fast = operator.attrgetter("function", "binary", "kind._value_")  # not .value: a Python-level property


def frame_key(frame: Frame) -> FrameKey:
    kind = frame.kind.value if isinstance(frame.kind, FrameKind) else str(frame.kind)
    return (frame.function, frame.binary, kind)


def _frame_keys(frames: Sequence[Frame]) -> list[FrameKey]:
    try:  # all at C speed when every kind is a FrameKind (always, from the decoders)
        return list(map(_frame_key_fast, frames))
    except AttributeError:
        return [frame_key(f) for f in frames]


def key_hash(key: FrameKey) -> bytes:
    """`function_hash` of the frame with this key."""
    text = f"{key[0]}\0{key[1]}\0{key[2]}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(text, digest_size=16).digest()


class Assignment:
    """Stack ids of one batch, and the functions/stacks a transaction must insert first (misses).

    Built by `Dictionary.plan` from the caches alone; when `complete` is false, `Dictionary.fill`
    inserts the misses inside the caller's transaction and `Dictionary.committed` publishes them.
    """

    __slots__ = ("fids", "keys", "new_functions", "new_stacks", "stack_ids", "stack_keys")

    def __init__(self, fids: list[int | None], keys: list[FrameKey]) -> None:
        self.fids = fids  # function id per table frame (None: not cached)
        self.keys = keys
        self.stack_keys: list[bytes] = []  # per sample: its function ids root first, as '<i8' bytes
        self.stack_ids: list[int | None] = []
        self.new_functions: dict[FrameKey, tuple[int, bytes]] = {}
        self.new_stacks: dict[bytes, int] = {}

    @property
    def complete(self) -> bool:
        return None not in self.fids and None not in self.stack_ids


def _stack_tuple(key: bytes) -> tuple[int, ...]:
    """Root-first function ids of a stack cache key."""
    return struct.unpack(f"<{len(key) // 8}q", key)


class Dictionary:
    """Per-process caches over the `functions` and `stacks` tables (shared by all requests).

    Write side: function identity (function, binary, kind) -> id, and a stack's function ids
    (root first, as '<i8' bytes: built for all samples at once with numpy, hashed at C speed) ->
    stack id. For a steady fleet nearly every stack hits, so a batch costs one key per distinct
    frame and one dict lookup per sample; content hashes are computed only on a miss.
    """

    def __init__(self, cache_limit: int = CACHE_LIMIT) -> None:
        self.cache_limit = max(1, cache_limit)
        self.function_ids: dict[FrameKey, int] = {}
        self.function_hashes: dict[int, bytes] = {}  # id -> content hash, to hash new stacks
        self.stack_ids: dict[bytes, int] = {}
        self.function_rows: dict[int, Frame] = {}
        self.stack_rows: dict[int, bytes] = {}  # uint32 function ids, root first

    # -- write side ---------------------------------------------------------------------------
    def plan(self, frames: Sequence[Frame], stacks_in: FlatStacks) -> Assignment:
        """Stack ids from the caches (`stacks_in`: `ProfileTable.flat_stacks()`, indexes into `frames`)."""
        keys = _frame_keys(frames)
        fids = list(map(self.function_ids.get, keys))
        out = Assignment(fids, keys)
        if None not in fids:
            self._stack_ids(out, stacks_in)
        else:
            out.stack_ids = [None] * len(stacks_in[1])
        return out

    def _stack_ids(self, a: Assignment, stacks_in: FlatStacks) -> None:
        flat, depths = stacks_in
        buf = np.asarray(a.fids, dtype="<i8")[flat].tobytes() if a.fids else b""
        offsets = (np.concatenate(([0], np.cumsum(depths))) * 8).tolist()
        a.stack_keys = list(map(buf.__getitem__, map(slice, offsets[:-1], offsets[1:])))
        a.stack_ids = list(map(self.stack_ids.get, a.stack_keys))

    def fill(self, conn: Connection, a: Assignment, stacks_in: FlatStacks) -> None:
        """Insert the functions and stacks `a` misses (inside the caller's transaction)."""
        if None in a.fids:
            missing = {k for k, fid in zip(a.keys, a.fids) if fid is None}
            hashes = {k: key_hash(k) for k in missing}
            got = _insert_ids(conn, functions, [
                {"hash": h, "name": k[0], "binary": k[1], "kind": k[2]} for k, h in hashes.items()])
            a.new_functions = {k: (got[h], h) for k, h in hashes.items()}
            a.fids = [fid if fid is not None else a.new_functions[k][0] for k, fid in zip(a.keys, a.fids)]
            self._stack_ids(a, stacks_in)
        if None not in a.stack_ids:
            return
        fresh = dict(a.new_functions.values())
        known = self.function_hashes
        # Read into a dict of this call's own: another request's `committed` may empty the bounded
        # cache at any time, and the hashes it no longer holds are read back from the table.
        by_fid = {f: fresh.get(f) or known.get(f) for f in set(a.fids)}
        gone = sorted(f for f, h in by_fid.items() if h is None and f is not None)
        for i in range(0, len(gone), CHUNK):
            query = select(functions.c.id, functions.c.hash).where(functions.c.id.in_(gone[i:i + CHUNK]))
            by_fid.update((int(f), bytes(h)) for f, h in conn.execute(query))
        hash_of = by_fid.__getitem__

        new: dict[bytes, tuple[tuple[int, ...], bytes]] = {}
        for key, sid in zip(a.stack_keys, a.stack_ids):
            if sid is None and key not in new:
                ids = _stack_tuple(key)
                new[key] = (ids, stack_hash(map(hash_of, ids)))
        got = _insert_ids(conn, stacks, [
            {"hash": h, "depth": len(ids), "function_ids": pack_function_ids(ids)} for ids, h in new.values()])
        a.new_stacks = {key: got[h] for key, (_ids, h) in new.items()}
        a.stack_ids = [sid if sid is not None else a.new_stacks[key] for key, sid in zip(a.stack_keys, a.stack_ids)]

    def committed(self, a: Assignment) -> None:
        """Publish ids learned in a transaction that has now committed."""
        if not (a.new_functions or a.new_stacks):
            return
        if len(self.function_ids) + len(a.new_functions) > self.cache_limit:
            self.function_ids.clear()
            self.function_hashes.clear()
        if len(self.stack_ids) + len(a.new_stacks) > self.cache_limit:
            self.stack_ids.clear()
        for key, (fid, h) in a.new_functions.items():
            self.function_ids[key] = fid
            self.function_hashes[fid] = h
        self.stack_ids.update(a.new_stacks)

    # -- read side ----------------------------------------------------------------------------
    def load(self, conn: Connection, stack_ids: Iterable[int]) -> tuple[dict[int, bytes], dict[int, Frame]]:
        """The packed stacks and their functions for `stack_ids` (cache hits plus one query per chunk
        of misses), as mappings of their own: the caches are bounded and may be emptied while this
        runs, so an answer is never read back from them (a limit may cost time, never correctness)."""
        cached, blobs = self.stack_rows, {}
        missing = []
        for s in map(int, stack_ids):
            blob = cached.get(s)
            if blob is None:
                missing.append(s)
            else:
                blobs[s] = blob
        fetched: dict[int, bytes] = {}
        for i in range(0, len(missing), CHUNK * 4):
            deadline.check()
            part = missing[i : i + CHUNK * 4]
            for sid, packed in conn.execute(select(stacks.c.id, stacks.c.function_ids).where(stacks.c.id.in_(part))):
                packed = bytes(packed)
                fetched[int(sid)] = (packed[1:] if packed[0] == 4
                                     else np.frombuffer(packed, "<i8", offset=1).astype("<u4").tobytes())
        blobs.update(fetched)
        self._remember(self.stack_rows, fetched)
        fids = np.unique(np.frombuffer(b"".join(blobs.values()), dtype="<u4")).tolist() if blobs else []
        known = self.function_rows
        funcs: dict[int, Frame] = {}
        missing_f = []
        for f in fids:
            fr = known.get(f)
            if fr is None:
                missing_f.append(f)
            else:
                funcs[f] = fr
        new_funcs: dict[int, Frame] = {}
        for i in range(0, len(missing_f), CHUNK * 4):
            deadline.check()
            part = missing_f[i : i + CHUNK * 4]
            query = select(functions.c.id, functions.c.name, functions.c.binary, functions.c.kind)
            for fid, name, binary, kind in conn.execute(query.where(functions.c.id.in_(part))):
                try:
                    fkind = FrameKind(kind)
                except ValueError:
                    fkind = FrameKind.UNKNOWN
                new_funcs[int(fid)] = Frame(name, binary, fkind)
        funcs.update(new_funcs)
        self._remember(self.function_rows, new_funcs)
        return blobs, funcs

    def _remember(self, cache: dict, new: dict) -> None:  # type: ignore[type-arg]
        """Add `new` to a read cache, emptying it first when it would pass the limit (then keeping at
        most `cache_limit` of `new`)."""
        if not new:
            return
        if len(cache) + len(new) > self.cache_limit:
            cache.clear()
        if len(new) <= self.cache_limit:
            cache.update(new)
        else:
            cache.update(itertools.islice(new.items(), self.cache_limit))

    def flat(self, conn: Connection, stack_ids: np.ndarray) -> tuple[list[Frame], np.ndarray, np.ndarray, np.ndarray]:
        """(frames, flat local frame ids, lengths, kept mask) for `build_tree_ids`, vectorized."""
        ids = stack_ids.tolist()
        blobs, funcs = self.load(conn, ids)
        kept = np.fromiter((s in blobs for s in ids), dtype=bool, count=len(ids))
        parts = [blobs[s] for s in ids if s in blobs]
        lengths = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)) // 4
        flat = np.frombuffer(b"".join(parts), dtype="<u4").astype(np.int64)
        uniq, local = dense_unique(flat)
        frames = [funcs.get(int(f)) or Frame(f"unknown function {int(f)}") for f in uniq]
        return frames, local.astype(np.int64), lengths, kept

    def resolve(self, conn: Connection, stack_ids: Iterable[int]) -> dict[int, tuple[Frame, ...]]:
        """Frames (root first) for each stack id."""
        wanted = [int(s) for s in stack_ids]
        blobs, funcs = self.load(conn, wanted)
        out = {}
        for s in wanted:
            blob = blobs.get(s)
            if blob is not None:
                out[s] = tuple(funcs.get(f) or Frame(f"unknown function {f}")
                               for f in struct.unpack(f"<{len(blob) // 4}I", blob))
        return out
