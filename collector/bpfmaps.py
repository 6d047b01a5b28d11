"""BPF maps through raw bpf(2) calls (ctypes), so the long-running agent never loads libbcc/LLVM.

The maps are created by the loader subprocess (collector/bpf_loader.py) and reach the agent as
file descriptors; this module only reads, updates and deletes elements.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Iterator

# bpf(2)'s syscall number per architecture (asm-generic for the newer ones).
SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "riscv64": 280, "ppc64le": 361,
           "s390x": 351}.get(platform.machine(), 321)
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
ENOTSUPP = 524  # kernel-internal "not supported", seen by user space for missing batch ops

# bpf_map_type values whose lookups return one value per possible CPU.
PERCPU_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
ATTR_SIZE = 128  # bigger than every union member we use; the kernel checks the tail is zero
BATCH_CHUNK = 2048  # elements per batch call: small reusable buffers (a counts map holds 16384)

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


class BpfError(OSError):
    """A bpf(2) call failed; `errno` says why."""


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """Number of possible CPUs (per-CPU map values have one slot each), from e.g. `0-3,8-11`."""
    with open(path) as fh:
        text = fh.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    ret = _syscall(SYS_BPF, cmd, attr, ATTR_SIZE)
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return ret


class _MapInfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("name", ctypes.c_char * 16), ("rest", ctypes.c_uint8 * 64)]


class BpfMap:
    """One map, by fd: elements are raw bytes (keys of `key_size`, values of `value_size`, or for
    per-CPU maps `round_up(value_size, 8) * possible CPUs`)."""

    def __init__(self, fd: int, name: str = "", ncpus: int | None = None) -> None:
        self.fd = fd
        info = _MapInfo()
        attr = ctypes.create_string_buffer(ATTR_SIZE)
        struct.pack_into("<IIQ", attr, 0, fd, ctypes.sizeof(info), ctypes.addressof(info))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
        self.name = name or info.name.decode()
        self.type = info.type
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.percpu = info.type in PERCPU_TYPES
        self.ncpus = (ncpus or possible_cpus()) if self.percpu else 1
        self.slot_size = (self.value_size + 7) // 8 * 8 if self.percpu else self.value_size
        self.read_size = self.slot_size * self.ncpus
        self._key = ctypes.create_string_buffer(max(self.key_size, 8))
        self._next = ctypes.create_string_buffer(max(self.key_size, 8))
        self._value = ctypes.create_string_buffer(self.read_size)
        self._attr = ctypes.create_string_buffer(ATTR_SIZE)
        self._batch: tuple[ctypes.Array, ctypes.Array] | None = None
        self.batch_ok = True  # cleared when the kernel lacks batch ops for this map type

    def __repr__(self) -> str:
        return f"BpfMap({self.name!r}, fd={self.fd}, type={self.type}, key={self.key_size}, value={self.value_size})"

    def _elem(self, cmd: int, key: bytes, value: ctypes.Array | None, flags: int = 0) -> None:
        ctypes.memmove(self._key, key, self.key_size)
        attr = self._attr
        ctypes.memset(attr, 0, ATTR_SIZE)
        struct.pack_into("<IIQQQ", attr, 0, self.fd, 0, ctypes.addressof(self._key),
                         ctypes.addressof(value) if value is not None else 0, flags)
        _bpf(cmd, attr)

    def lookup(self, key: bytes) -> bytes | None:
        """The value (all CPUs' slots for per-CPU maps), or None when the key is absent."""
        try:
            self._elem(BPF_MAP_LOOKUP_ELEM, key, self._value)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return self._value.raw

    def update(self, key: bytes, value: bytes) -> None:
        buf = ctypes.create_string_buffer(value, max(len(value), self.read_size))
        self._elem(BPF_MAP_UPDATE_ELEM, key, buf)

    def delete(self, key: bytes) -> bool:
        try:
            self._elem(BPF_MAP_DELETE_ELEM, key, None)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def pop(self) -> bytes | None:
        """The oldest element of a queue map, removed from it; None when the queue is empty."""
        attr = self._attr
        ctypes.memset(attr, 0, ATTR_SIZE)
        struct.pack_into("<IIQQQ", attr, 0, self.fd, 0, 0, ctypes.addressof(self._value), 0)
        try:
            _bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, attr)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return self._value.raw[:self.value_size]

    def keys(self) -> list[bytes]:
        """All keys by GET_NEXT_KEY (the fallback when batch ops are missing)."""
        out: list[bytes] = []
        attr = self._attr
        ksize = self.key_size
        prev = 0  # NULL key: the first key
        while True:
            ctypes.memset(attr, 0, ATTR_SIZE)
            struct.pack_into("<IIQQ", attr, 0, self.fd, 0, prev, ctypes.addressof(self._next))
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    return out
                raise
            key = self._next.raw[:ksize]
            out.append(key)
            ctypes.memmove(self._key, key, ksize)
            prev = ctypes.addressof(self._key)

    def _batches(self, chunk: int) -> Iterator[tuple[bytes, bytes, int]]:
        """(keys, values, count) pieces of one pass of BPF_MAP_LOOKUP_BATCH over the map."""
        if self._batch is None or len(self._batch[0]) < chunk * self.key_size:
            self._batch = (ctypes.create_string_buffer(chunk * self.key_size),
                           ctypes.create_string_buffer(chunk * self.read_size))
        keys, values = self._batch
        token_in = ctypes.create_string_buffer(max(self.key_size, 8))
        token_out = ctypes.create_string_buffer(max(self.key_size, 8))
        attr = self._attr
        first = True
        while True:
            ctypes.memset(attr, 0, ATTR_SIZE)
            struct.pack_into("<QQQQII", attr, 0, 0 if first else ctypes.addressof(token_in),
                             ctypes.addressof(token_out), ctypes.addressof(keys), ctypes.addressof(values),
                             chunk, self.fd)
            done = False
            try:
                _bpf(BPF_MAP_LOOKUP_BATCH, attr)
            except BpfError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                done = True  # ENOENT: the last piece (count says how many it still holds)
            count = struct.unpack_from("<I", attr, 32)[0]
            if count:
                yield keys.raw[: count * self.key_size], values.raw[: count * self.read_size], count
            if done:
                return
            ctypes.memmove(token_in, token_out, len(token_out))
            first = False

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value), by batch lookup when the kernel has it, else key by key.

        Not atomic against BPF programs still writing: read maps they no longer write to."""
        if self.batch_ok:
            try:
                out: list[tuple[bytes, bytes]] = []
                ks, vs = self.key_size, self.read_size
                for keys, values, count in self._batches(max(1, min(self.max_entries, BATCH_CHUNK))):
                    out += [(keys[i * ks:(i + 1) * ks], values[i * vs:(i + 1) * vs]) for i in range(count)]
                return out
            except BpfError as exc:
                if exc.errno not in (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP):
                    raise
                self.batch_ok = False
        out = []
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:
                out.append((key, value))
        return out

    def delete_keys(self, keys: list[bytes]) -> int:
        """Delete these keys (batch when possible); returns how many were deleted."""
        if not keys:
            return 0
        if self.batch_ok:
            buf = ctypes.create_string_buffer(b"".join(keys), len(keys) * self.key_size)
            attr = self._attr
            ctypes.memset(attr, 0, ATTR_SIZE)
            struct.pack_into("<QQQQII", attr, 0, 0, 0, ctypes.addressof(buf), 0, len(keys), self.fd)
            try:
                _bpf(BPF_MAP_DELETE_BATCH, attr)
                return len(keys)
            except BpfError as exc:
                done = struct.unpack_from("<I", attr, 32)[0]
                if exc.errno in (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP) and done == 0:
                    self.batch_ok = False
                keys = keys[done:]  # the kernel stopped at the first key it could not delete
        return sum(self.delete(k) for k in keys)

    def update_batch(self, keys: bytes, values: bytes, count: int) -> None:
        """Write `count` elements at once (keys and values packed end to end; array maps take
        them as a whole, one syscall instead of one per element)."""
        if count == 0:
            return
        if len(keys) != count * self.key_size or len(values) != count * self.read_size:
            raise ValueError(f"update_batch of {count} elements: {len(keys)} key bytes, {len(values)} value bytes")
        kbuf = ctypes.create_string_buffer(keys, len(keys))
        vbuf = ctypes.create_string_buffer(values, len(values))
        attr = self._attr
        ctypes.memset(attr, 0, ATTR_SIZE)
        struct.pack_into("<QQQQII", attr, 0, 0, 0, ctypes.addressof(kbuf), ctypes.addressof(vbuf), count, self.fd)
        _bpf(BPF_MAP_UPDATE_BATCH, attr)

    def clear(self) -> int:
        """Delete every element (hash maps); returns how many."""
        return self.delete_keys([k for k, _ in self.items()])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def percpu_u64_sum(value: bytes) -> int:
    """Sum of a per-CPU u64 value over all CPUs."""
    return sum(struct.unpack(f"<{len(value) // 8}Q", value))
