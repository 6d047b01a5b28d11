/* The contract between the CPython frame walk in BPF (hp_python.bpf.h) and user space
 * (collector/python/). Python reads this file through collector/bpf_abi.py, never a hand copy.
 *
 * User space writes, per CPython process, its struct layout into `py_procs` (by tgid) and, per
 * thread, its PyThreadState address into `py_threads` (by tid), re-walking the thread list every
 * interval (collector/python/tracker.py). At an on-CPU sample or an off-CPU switch-out of such a
 * thread, the walk follows thread state -> current frame -> previous ... and records, per frame,
 * two words in a struct hp_stack (stored and hashed like native stacks; hp_key.py_stack):
 *   word 0: the code object's address
 *   word 1: stamp << 32 | is_entry << 31 | (instruction index & 0x7fffffff)
 * stamp = low ^ high half of the 8 bytes at co_firstlineno (co_firstlineno, co_nlocalsplus): user
 * space resolves names from the address and rejects a code object whose stamp differs (the address
 * was reused). The instruction index is in code units from the bytecode start (-1: not started).
 */
#ifndef HP_PYTHON_H
#define HP_PYTHON_H

#ifndef HP_PY_MAX_FRAMES
#define HP_PY_MAX_FRAMES 63       /* two words each in a struct hp_stack (HP_MAX_DEPTH 127) */
#endif
#ifndef HP_PY_PROCS
#define HP_PY_PROCS 4096
#endif
#ifndef HP_PY_THREADS
#define HP_PY_THREADS 32768
#endif
#ifndef HP_PY_ANNOUNCED
#define HP_PY_ANNOUNCED 16384     /* Python stacks remembered as announced (LRU) */
#endif
#ifndef HP_PY_NEW
#define HP_PY_NEW 4096            /* announcements waiting for user space */
#endif
#define HP_PY_WINDOW 128          /* most bytes of a frame read at once, from frame + frame_code */
#define HP_PY_NONE_OFF 0xffff     /* a layout field this version does not have */
#define HP_PY_ENTRY_BIT 31

/* Why a Python walk ended (hp_key.py_end). */
#define HP_PY_END_NONE 0          /* not a registered CPython process: no walk */
#define HP_PY_END_OK 1            /* reached the thread's first frame */
#define HP_PY_END_NO_THREAD 2     /* a CPython process, but this thread is not in py_threads yet */
#define HP_PY_END_READ_FAULT 3    /* a thread state, frame or code object could not be read */
#define HP_PY_END_TRUNCATED 4     /* HP_PY_MAX_FRAMES frames: the outermost ones are missing */
#define HP_PY_END_MAP_FULL 5      /* the stack map took no new entry */
#define HP_PY_END_SLOTS 6

/* Per process (map `py_procs`, by tgid): byte offsets from collector/python/layout.py. Frame
 * fields are relative to frame_code (the window the walk reads). 32 bytes. */
struct hp_py_proc {
    __u16 tstate_cframe;          /* HP_PY_NONE_OFF: current frame is in the thread state */
    __u16 cframe_current_frame;
    __u16 frame_code;             /* from the frame's start: where the window begins */
    __u16 frame_window;           /* bytes read from frame + frame_code (<= HP_PY_WINDOW) */
    __u16 frame_previous;         /* these four: from frame_code, <= frame_window - 8 */
    __u16 frame_instr;
    __u16 frame_is_entry;         /* HP_PY_NONE_OFF: entries are marked by owner (3.12+) */
    __u16 frame_owner;
    __u16 owner_cstack;
    __u16 code_firstlineno;
    __u16 code_bytecode;
    __u16 instr_is_next;          /* 1: the instruction pointer is the next instruction (3.13) */
    __u16 pad[4];
};

/* A newly stored Python stack (queue `py_new`): user space reads its code objects at once. */
struct hp_py_new {
    __u64 hash;
    __u32 tgid;
    __u32 map;
};

#endif
