/* Shared definitions for Hotpath's BPF programs (on-CPU sampling and off-CPU blocking time).
 *
 * Only uapi types and tracepoint arguments are used: the kernel headers on the build hosts may be
 * from another kernel, so no kernel struct layout may leak in here.
 * Python reads these layouts through collector/bpf_abi.py (checked by tests/collector/test_bpf_abi.py).
 */
#ifndef HOTPATH_H
#define HOTPATH_H

#include "hp_unwind.h"

#ifndef HP_COMM_LEN
#define HP_COMM_LEN 16
#endif

/* Map sizes: unique (process, thread, stack) keys per interval and unique stacks per generation. */
#ifndef HP_COUNTS_ENTRIES
#define HP_COUNTS_ENTRIES 16384
#endif
#ifndef HP_STACK_ENTRIES
#define HP_STACK_ENTRIES 16384
#endif
#ifndef HP_THREAD_ENTRIES
#define HP_THREAD_ENTRIES 32768
#endif
#ifndef HP_FILTER_ENTRIES
#define HP_FILTER_ENTRIES 1024
#endif
#ifndef MIN_BLOCK_NS
#define MIN_BLOCK_NS 1000000ULL
#endif

/* control[] slots, written by user space. */
#define HP_CTL_BUFFER 0   /* which counts buffer (0/1) the programs add to */
#define HP_CTL_STACKGEN 1 /* stack-map generation; parity selects the stack map */

/* stats[] slots (per-CPU counters, summed by user space). */
#define HP_STAT_IDLE 0          /* on-CPU samples of the idle task (excluded, but known) */
#define HP_STAT_MAP_FULL 1      /* increments lost because a counts map was full */
#define HP_STAT_THREADS_FULL 2  /* switch-outs not tracked: the threads map took no entry */
#define HP_STAT_STALE_STACK 3   /* off-CPU spans whose stacks were from a recycled stack map */
#define HP_STAT_SAMPLES 4       /* on-CPU samples seen (including filtered/idle) */
#define HP_STAT_SHORT_BLOCKS 5  /* measured off-CPU spans shorter than MIN_BLOCK_NS (skipped by design;
                                 * sampled-out spans are not measured, see slot 6) */
#define HP_STAT_SAMPLED_OUT 6   /* switch-outs whose span the predictor did not sample (no stacks,
                                 * not timed); their time is carried, in expectation, by the 1/p
                                 * weights of the sampled spans. The cheap path counts them in
                                 * `cpu_last`, flushed here at that CPU's next other switch-out */
#define HP_STAT_LOST_SPANS 7    /* off-CPU spans dropped: their switch-in was not seen (the kernel
                                 * skipped a run of the program: see its recursion misses) */
#define HP_STAT_SAMPLED 8       /* off-CPU spans sampled (timed, stacks taken) */
#define HP_STAT_SLOTS 9

/* Off-CPU span sampling. Taking stacks at every switch-out dominated the cost of a context
 * switch (in-program ~2.3 us with the user stack; `perf bench sched pipe` +32%, with the kernel
 * stack +83%, while the bare tracepoint costs ~1%), yet nearly all switches in that worst case are
 * blocks of microseconds, far below MIN_BLOCK_NS, which are never reported. So each thread keeps
 * a decaying maximum of its recent (sampled) off-CPU span lengths, and each of its switch-outs is
 * sampled (timed, stacks taken) with probability
 *   p = clamp(recent / MIN_BLOCK_NS, HP_OFFCPU_MIN_P / 65536, 1)   (then scaled: see below);
 * a reported span is weighted by 1/p (Horvitz-Thompson: unbiased, as p is fixed before the span's
 * length is known). A thread that blocked long lately, or was never seen, has p = 1, so its spans
 * are exact. HP_OFFCPU_MIN_P=65536 samples every span (the old behaviour).
 * HP_OFFCPU_DECAY_SHIFT: each sampled span lets the maximum decay by 1/2^shift (3: ~22 short
 * spans bring a 20 ms maximum under 1 ms). Only spans the thread blocked for can raise it: a
 * runqueue wait after preemption says how busy the CPU is, not how the thread blocks, and on a
 * loaded host those kept ping-pong threads at p = 1 (they are still sampled, at p, and weighted).
 * Known cost of the per-span decay: a thread with ~50 short blocks between long ones meets each
 * long one at p near the floor (lower still under a switch storm), so its own off-CPU total is
 * noisy (unbiased; about +-40% per 2 s for one such thread); a wall-time half-life fixed that
 * but let runqueue waits on a busy host keep every thread at p = 1 (sched pipe in-program
 * 221 -> 1938 ns per switch). */
#ifndef HP_OFFCPU_MIN_P
#define HP_OFFCPU_MIN_P 1024    /* 1/64 */
#endif
/* Under a context-switch storm the sampled spans themselves are the cost: each takes a user stack
 * (~2 us here, as walking a binary built without frame pointers faults), and at a pinned sched
 * pipe's ~260k switches/s, with p at 1/64..1/40 (a thread's recent maximum is set by its rare
 * longer spans), that was ~45 ns of every switch spent on spans nearly all microseconds long.
 * So each CPU multiplies p < 1 by a scale (<= 1) that keeps the spans it samples with p < 1
 * under HP_OFFCPU_BUDGET per second, down to HP_OFFCPU_FLOOR_MIN:
 *   p = max(p * scale of this CPU, HP_OFFCPU_FLOOR_MIN / 65536), for p < 1.
 * The scale is set from the previous window's sampled count, before the spans it applies to
 * begin, so the 1/p weights stay unbiased; threads with p = 1 (long blocks lately) stay exact.
 * A sampled span cost ~2.7 us here (opened and closed, user stack included, before its state
 * moved into `threads`), so 250/s is under 0.1 % of a CPU; 1000/s cost ~20 ns of every switch of
 * that pipe (in-program 133 vs 113 ns). */
#ifndef HP_OFFCPU_BUDGET
#define HP_OFFCPU_BUDGET 250
#endif
/* Threads at p = 1 (they blocked long lately) are sampled exactly, until a CPU samples more than
 * HP_OFFCPU_EXACT_BUDGET of them per second: then a second scale applies to p = 1 as well, down
 * to HP_OFFCPU_MIN_P. A host with many threads that block often and long would otherwise pay
 * a stack walk for each of their spans: 48 threads in nanosleep(2 ms) loops, ~14k switch-outs/s
 * a CPU (bench/bpf_overhead.py --only blockers), cost 5.1 us a switch-out before this budget
 * (and the span state in `threads`), +42 % of their CPU time; 1.0 us and +14 % with them. */
#ifndef HP_OFFCPU_EXACT_BUDGET
#define HP_OFFCPU_EXACT_BUDGET 1000
#endif
#ifndef HP_OFFCPU_FLOOR_MIN
#define HP_OFFCPU_FLOOR_MIN 64  /* 1/1024 */
#endif
#define HP_SCALE_WINDOW_NS 20000000ULL
#ifndef HP_OFFCPU_DECAY_SHIFT
#define HP_OFFCPU_DECAY_SHIFT 3
#endif
#define HP_P_ONE 65536
/* Task slots (map `slots`, a power of two): tasks are hashed into them by pointer (hp_slot).
 * Two busy threads in one slot send each other to the slow path: 16384 slots keep that to ~6 %
 * of threads on a host with 1,000 of them. */
#ifndef HP_TASK_SLOTS
#define HP_TASK_SLOTS 16384
#endif

/* The raw sched_switch tracepoint's prev_state argument is the task's state word; these are the
 * bits tracefs prints for it ("print fmt" of sched_switch), not a struct layout. TASK_DEAD marks a
 * task's last switch-out; the low bits a task that blocked (rather than was preempted). */
#define HP_TASK_DEAD 0x80
#define HP_TASK_BLOCKED_BITS 0x0f /* INTERRUPTIBLE, UNINTERRUPTIBLE, STOPPED, TRACED */

/* Per task slot (map `slots`, shared by all CPUs): the open sampled spans of its threads, and
 * the p of the thread that last used it. A switch reads one slot, next's, at the switch-in: it
 * says whether next may have an open span (then the clock is read) and gives next's p for its
 * coming switch-out on this CPU (a per-CPU p cache cost a second line, and an exit count to
 * validate its entries; reading prev's slot too cost ~8 ns a switch).
 * A thread's last switch-out clears its p: a task struct is reused soon after its task exits. */
struct hp_slot_state {
    __u64 task;     /* the thread whose p this is (task pointer); 0 = none */
    __u32 p;        /* its p before the scale (of HP_P_ONE), when last seen by any CPU */
    __u32 open;     /* open sampled spans of threads in this slot */
};

/* Per-CPU state (map `cpu_last`): the last context switch on this CPU, and the sampling scales.
 * The cheap path's fields come first, in one cache line. */
struct hp_cpu {
    __u64 ts;       /* its time if the thread switched in had an open sampled span, else 0 */
    __u64 task;     /* the thread it switched in (task pointer, an opaque key) */
    __u64 idle;     /* this CPU's idle task (pointer), once seen; 0 before */
    __u64 rng;      /* PRNG state for the sampling draws */
    __u64 sampled_out; /* switch-outs not sampled since the last flush into HP_STAT_SAMPLED_OUT
                        * (the cheap path counts here: a `stats` lookup was 15 insns of it) */
    __u32 p;        /* `task`'s p before the scale, copied from its slot when it was switched
                     * in (0 = unknown): its switch-out, the next switch here, draws from it */
    __u32 scale;    /* of HP_P_ONE, applied to p < 1; 0 = 1 (until the first window) */
    __u32 scale_exact; /* of HP_P_ONE, applied to p = 1; 0 = 1 */
    __u32 win_sampled; /* spans sampled with p < 1 since win_ts */
    __u32 win_exact; /* spans sampled with p = 1 (before the scale) since win_ts */
    __u64 win_ts;   /* start of the scale's window, ns (0 before the first) */
};

/* Stack id used when a stack map generation was recycled while a task was blocked. */
#define HP_STACK_STALE (-1000)

#ifndef HP_MAX_DEPTH
#define HP_MAX_DEPTH 127
#endif

/* Stacks are content-hashed by us and stored in a hash map keyed by that 64-bit hash: the
 * kernel's BPF_STACK_TRACE map drops (-EEXIST) every stack whose bucket is taken, which lost
 * a whole call path for a whole interval at ~3% fill. */
struct hp_stack {
    __u64 n;
    __u64 ips[HP_MAX_DEPTH];
};

struct hp_key {
    __u32 tgid;
    __u32 tid;
    __u64 cgroup_id;
    __u64 user_stack;         /* hash of the user stack (0 = none) */
    __u64 kernel_stack;       /* hash of the kernel stack (0 = none) */
    __s32 user_err;           /* negative errno when the user stack was missed */
    __s32 kernel_err;
    __u32 stack_map;          /* which stack map (0/1) the hashes refer to */
    __u32 user_end;           /* why the user-stack walk ended (HP_END_*, hp_unwind.h) */
    char comm[HP_COMM_LEN];
    __u64 py_stack;           /* hash of the CPython frame record (hp_python.h; 0 = none) */
    __s32 py_end;             /* why the CPython walk ended (HP_PY_END_*; 0 = not a Python process) */
    __u32 py_pad;
};

/* Per-thread off-CPU state (map `threads`, BPF side only: user space never reads it): the
 * sampling predictor, and the open sampled span with its stacks. */
struct hp_thread {
    __u64 out_ts;   /* switch-out time of the open sampled span; 0 = none */
    __u64 recent;   /* decaying maximum of recent sampled span lengths, ns */
    __u32 p;        /* while a sampled span is open, the p (of HP_P_ONE) it was drawn with: its
                     * weight is 1/p; after it closes, p from `recent`, before any CPU's scale */
    __u32 preempted; /* the open span began with a preemption (runnable, not blocked) */
    __u64 gen;      /* the stack-map generation of the open span's stacks */
    struct hp_key key; /* the open span's counts key (who, stacks) */
};

#endif
