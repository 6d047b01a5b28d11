"""Python frames from unmodified CPython processes.

`detect` finds an interpreter in a process and reads its version from the binary; `layout` holds
the struct offsets per CPython minor version (the one table); `procmem` reads a live process's
memory; `threads` maps thread ids to thread states; `frames` walks a thread's Python frames;
`code` and `linetable` turn a code object and an instruction offset into a named frame.
"""
