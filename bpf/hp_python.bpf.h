/* The CPython frame walk (contract: hp_python.h), included by hotpath.bpf.c with -DPYTHON.
 * One entry point, hp_py_walk, called where a sample or a switch-out takes its stacks; the maps
 * (`py_procs`, `py_threads`, `py_scratch`) and their lookups live in the including file.
 *
 * Per frame two user reads: a window of the _PyInterpreterFrame (code object, previous frame,
 * instruction pointer, entry marker) and the code object's 8-byte stamp. Offsets come from the
 * process's `py_procs` entry (any CPython version user space has a layout for). Names are not
 * read here: user space resolves code objects through /proc/PID/mem, right after each drain and
 * when a process is seen to exit (collector/python/). */
#ifndef HP_PYTHON_BPF_H
#define HP_PYTHON_BPF_H

#include "hp_python.h"

#if 2 * HP_PY_MAX_FRAMES > HP_MAX_DEPTH
#error "HP_PY_MAX_FRAMES frames take two words each of a struct hp_stack"
#endif

/* Per-CPU scratch for a frame's window (map `py_scratch`, defined by the includer). */
struct hp_py_scratch {
    u8 win[HP_PY_WINDOW];
};

static __always_inline u64 hp_py_word(struct hp_py_scratch *s, u32 off)
{
    if (off > HP_PY_WINDOW - 8)
        return 0;
    return *(u64 *)(s->win + off);
}

/* Walk the Python frames of the thread whose PyThreadState is at `tstate`, in a process laid out
 * as `pp`, innermost first into `st` (scratch: overwritten; st->n words, two per frame), for the
 * caller to store like a native stack. Returns an HP_PY_END_* reason; st->n is 0 when no frame
 * was recorded. The includer looks up the maps: BCC rewrites map calls only in the main file. */
static __always_inline int hp_py_walk(struct hp_py_proc *pp, u64 tstate, struct hp_py_scratch *s,
                                      struct hp_stack *st)
{
    st->n = 0;
    u64 p = tstate, frame = 0;
    if (pp->tstate_cframe != HP_PY_NONE_OFF &&
        bpf_probe_read_user(&p, sizeof(p), (void *)(p + pp->tstate_cframe)))
        return HP_PY_END_READ_FAULT;
    if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(p + pp->cframe_current_frame)))
        return HP_PY_END_READ_FAULT;
    u32 window = pp->frame_window;
    if (window > HP_PY_WINDOW)
        window = HP_PY_WINDOW;
    u32 n = 0;
    int end = HP_PY_END_OK;
    for (int i = 0; i < HP_PY_MAX_FRAMES; i++) {
        if (!frame)
            break;
        if (bpf_probe_read_user(s->win, window, (void *)(frame + pp->frame_code))) {
            end = HP_PY_END_READ_FAULT;
            break;
        }
        u64 code = hp_py_word(s, 0);
        u64 previous = hp_py_word(s, pp->frame_previous);
        u64 instr = hp_py_word(s, pp->frame_instr);
        /* Entry marker: is_entry (3.11), or a C-stack shim frame (3.12+: owner == owner_cstack),
         * recorded as a frame with code 0 that user space folds into the frame before it (no
         * skipping here: one frame recorded per step keeps the verifier's states few). */
        u64 entry = 0;
        if (pp->frame_is_entry != HP_PY_NONE_OFF)
            entry = s->win[pp->frame_is_entry & (HP_PY_WINDOW - 1)] != 0;
        else if (s->win[pp->frame_owner & (HP_PY_WINDOW - 1)] == pp->owner_cstack)
            code = 0;
        u64 stamp = 0;
        if (code && bpf_probe_read_user(&stamp, sizeof(stamp), (void *)(code + pp->code_firstlineno))) {
            end = HP_PY_END_READ_FAULT;
            break;
        }
        s64 lasti = ((s64)(instr - code - pp->code_bytecode)) >> 1;
        if (pp->instr_is_next)
            lasti -= 1;
        u32 w = 2 * i;
        st->ips[w] = code;
        st->ips[w + 1] = ((stamp ^ (stamp >> 32)) << 32) | (entry << HP_PY_ENTRY_BIT) |
                         ((u64)lasti & 0x7fffffffULL);
        n = i + 1;
        frame = previous;
    }
    if (end == HP_PY_END_OK && frame)
        end = HP_PY_END_TRUNCATED;
    st->n = 2 * n;
    return end;
}

#endif
