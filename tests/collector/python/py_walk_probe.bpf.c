/* Test harness for the CPython frame walk (bpf/hp_python.bpf.h): at every clock_nanosleep of a
 * registered process, walk the sleeping thread's Python frames and keep the last walk per thread.
 * Deterministic (time.sleep enters clock_nanosleep), so its words can be compared with the
 * user-space reader's frames (collector/python/frames.py) for the same sleeping stack. */
#include <uapi/linux/ptrace.h>
#include "hotpath.h"
#include "hp_python.bpf.h"

BPF_HASH(py_procs, u32, struct hp_py_proc, HP_PY_PROCS);
BPF_HASH(py_threads, u32, u64, HP_PY_THREADS);
BPF_PERCPU_ARRAY(py_scratch, struct hp_py_scratch, 1);

struct walk_out {
    s32 end;
    u32 pad;
    struct hp_stack st;
};
BPF_PERCPU_ARRAY(walk_scratch, struct walk_out, 1);
BPF_HASH(walks, u32, struct walk_out, 64);

TRACEPOINT_PROBE(syscalls, sys_enter_clock_nanosleep)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32, tid = (u32)id;
    struct hp_py_proc *pp = py_procs.lookup(&tgid);
    if (!pp)
        return 0;
    int zero = 0;
    struct walk_out *w = walk_scratch.lookup(&zero);
    struct hp_py_scratch *s = py_scratch.lookup(&zero);
    u64 *ts = py_threads.lookup(&tid);
    if (!w || !s)
        return 0;
    if (ts) {
        w->end = hp_py_walk(pp, *ts, s, &w->st);
    } else {
        w->end = HP_PY_END_NO_THREAD;
        w->st.n = 0;
    }
    walks.update(&tid, w);
    return 0;
}
