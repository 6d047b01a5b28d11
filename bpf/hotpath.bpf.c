/* Hotpath's BPF side: on-CPU samples (perf cpu-clock) and off-CPU blocked time (sched_switch).
 *
 * Counts are aggregated in the kernel by (process, thread, comm, cgroup, stacks) so only unique
 * stacks cross to user space. Two counts buffers per type: user space flips control[BUFFER] and
 * drains the inactive one, so no increment lands between reading and clearing a map. Two stack
 * maps selected by the parity of control[STACKGEN]: user space recycles a stack map only after
 * flipping away from it, so stacks referenced by pending off-CPU spans stay valid.
 *
 * Options (cflags): -DFILTER_PIDS (only tgids in pid_filter), -DINCLUDE_IDLE, -DOFFCPU,
 * -DMIN_BLOCK_NS=<ns>, -DHP_OFFCPU_MIN_P=<1..65536>, -DHP_OFFCPU_DECAY_SHIFT=<n>,
 * -DHP_OFFCPU_BUDGET=<spans/s> and -DHP_OFFCPU_FLOOR_MIN=<1..MIN_P> (off-CPU stack sampling, see
 * hotpath.h), map sizes as in hotpath.h; -DHP_UNWIND: user stacks by the table unwinder
 * (below) rather than bpf_get_stack's frame-pointer walk, with -DHP_UNWIND_ROWS,
 * -DHP_ROW_STEPS, -DHP_PROC_ENTRIES; -DPYTHON: CPython frames of registered processes
 * (hp_python.h).
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include "hotpath.h"

BPF_ARRAY(control, u64, 2);
BPF_PERCPU_ARRAY(stats, u64, HP_STAT_SLOTS);
BPF_HASH(pid_filter, u32, u8, HP_FILTER_ENTRIES);

/* Allocated as used (a stack is 1 KiB): max_entries bounds them, sized by the agent. */
BPF_F_TABLE("hash", u64, struct hp_stack, stacks0, HP_STACK_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, struct hp_stack, stacks1, HP_STACK_ENTRIES, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(scratch, struct hp_stack, 2);  /* slot 0: on-CPU, 1: sched_switch */

BPF_HASH(cpu_counts0, struct hp_key, u64, HP_COUNTS_ENTRIES);
BPF_HASH(cpu_counts1, struct hp_key, u64, HP_COUNTS_ENTRIES);

static __always_inline void hp_stat_add(int slot, u64 n)
{
    int idx = slot;
    u64 *v = stats.lookup(&idx);
    if (v)
        *v += n;
}

static __always_inline void hp_stat(int slot)
{
    hp_stat_add(slot, 1);
}

static __always_inline u64 hp_control(int slot)
{
    int idx = slot;
    u64 *v = control.lookup(&idx);
    return v ? *v : 0;
}

static __always_inline int hp_wanted(u32 tgid)
{
#ifdef FILTER_PIDS
    return pid_filter.lookup(&tgid) != NULL;
#else
    return 1;
#endif
}

static __always_inline void hp_add(struct hp_key *key, u64 value, u64 buffer, int offcpu);

/* Hash a stack (leaf first) and store it in stack map `map` unless there already.
 * Returns 0 with *hash set (0 for an empty stack), or -ENOMEM when the map is full. */
static __always_inline int hp_store_stack(struct hp_stack *st, u32 map, u64 *hash)
{
    u64 n = st->n;
    *hash = 0;
    if (n == 0)
        return 0;
    u64 h = 0xcbf29ce484222325ULL ^ n;
    for (int i = 0; i < HP_MAX_DEPTH; i++) {
        if (i >= n)
            break;
        h = (h ^ st->ips[i]) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    if (h == 0)
        h = 1;
    *hash = h;
    int err;
    if (map) {
        if (stacks1.lookup(&h))
            return 0;
        err = stacks1.update(&h, st);
    } else {
        if (stacks0.lookup(&h))
            return 0;
        err = stacks0.update(&h, st);
    }
    return err ? -12 : 0; /* map full: report as -ENOMEM, like the kernel's stack maps */
}

/* Take one stack with bpf_get_stack into the scratch slot and store it (hp_store_stack).
 * Returns 0 with *hash set (0 for an empty stack), or a negative errno. */
static __always_inline int hp_take_stack(void *ctx, int slot, u64 flags, u32 map, u64 *hash)
{
    int idx = slot;
    struct hp_stack *st = scratch.lookup(&idx);
    *hash = 0;
    if (!st)
        return -12;
    long len = bpf_get_stack(ctx, st->ips, sizeof(st->ips), flags);
    if (len < 0)
        return (int)len;
    st->n = (u64)len / 8;
    return hp_store_stack(st, map, hash);
}

#ifdef HP_UNWIND
/* The native user-stack unwinder (x86_64), built with -DHP_UNWIND.
 *
 * A walk starts from the task's saved user registers (bpf_task_pt_regs: at a cpu-clock sample in
 * user mode they are the interrupted registers, in kernel mode and at sched_switch the ones saved
 * at kernel entry) and steps frame by frame: the pc's mapping by binary search in the process's
 * `proc_maps` entry, the pc's row by binary search of its table in `unwind_rows`, then CFA, return
 * address (CFA - 8) and rbp by the row's rules (hp_unwind.h); a mapping without a table takes the
 * frame-pointer step. BCC 0.26 cannot relocate bpf_loop callbacks, so each program walks
 * HP_FRAMES_PER_PROG frames and tail-calls itself for the next ones (the walk's state lives in a
 * per-CPU `walks` slot): the verifier sees a small body, not HP_MAX_DEPTH frames of binary
 * searches. This code lives here, not in a header: BCC rewrites map calls (`map.lookup(...)`)
 * only in the main file; in a header they compile to calls through a null struct's function
 * pointer (`callx`, opcode 0x8d), which the kernel rejects.
 * Return addresses are looked up at pc - 1 (the call instruction), so a call that ends a function
 * (noreturn callee) finds its own row, not the next function's.
 */
#ifndef HP_UNWIND_ROWS
#define HP_UNWIND_ROWS 4194304
#endif
#ifndef HP_ROW_STEPS
#define HP_ROW_STEPS 23       /* binary-search steps: enough for HP_UNWIND_ROWS rows in one table */
#endif
#ifndef HP_PROC_ENTRIES
#define HP_PROC_ENTRIES 1024  /* processes with a mapping table (8 KiB each, allocated on use) */
#endif
#ifndef HP_FRAMES_PER_PROG
#define HP_FRAMES_PER_PROG 8
#endif
#define HP_MAP_STEPS 9        /* log2(HP_MAX_MAPPINGS) + 1 */
#if HP_MAX_MAPPINGS != 256
#error "HP_MAP_STEPS assumes HP_MAX_MAPPINGS 256"
#endif
#define HP_USER_TOP 0x800000000000ULL /* x86_64 user addresses are below this */

struct hp_walk {
    u64 pc;
    u64 sp;
    u64 bp;
    u64 task;        /* off-CPU: the thread switched out (its `threads` key) */
    u32 tgid;
    u32 bp_ok;       /* rbp is known (an UNSUPPORTED rbp rule makes it unknown) */
    u32 progs;       /* programs run for this walk (tail calls are limited to 33) */
    u32 lo;          /* a binary search's position, passed through memory (hp_forget) */
    u32 pending;     /* a frame was in a mapping whose table is not loaded yet (FP step there) */
    u32 pad;
    struct hp_key key;   /* on-CPU: the sample's key, stacks filled in as they are taken */
    struct hp_stack st;  /* the user stack so far, leaf first */
};

BPF_ARRAY(unwind_rows, struct hp_unwind_row, HP_UNWIND_ROWS);
/* Allocated on use: most of max_entries * 8 KiB is never needed. Written only by user space. */
BPF_F_TABLE("hash", u32, struct hp_proc_maps, proc_maps, HP_PROC_ENTRIES, BPF_F_NO_PREALLOC);
BPF_PERCPU_ARRAY(walks, struct hp_walk, 2);  /* slot 0: on-CPU, 1: sched_switch */
/* tgids whose walks found no `proc_maps` entry: user space registers them and deletes the key. */
BPF_HASH(unwind_wanted, u32, u32, 1024);

/* Start a walk from the current task's saved user registers. Returns 0, or -EFAULT when the
 * task has no user registers (a kernel thread). */
static __always_inline int hp_walk_start(struct hp_walk *w, u32 tgid)
{
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    u64 r[20];
    if (!regs || bpf_probe_read_kernel(r, sizeof(r), regs))
        return -14;
    /* x86_64 uapi struct pt_regs: rbp is word 4, rip 16, rsp 19. */
    w->pc = r[16];
    w->bp = r[4];
    w->sp = r[19];
    if (w->pc == 0 || w->pc >= HP_USER_TOP)
        return -14;
    w->tgid = tgid;
    w->bp_ok = 1;
    w->progs = 0;
    w->pending = 0;
    w->st.n = 0;
    return 0;
}

/* v, with the verifier's knowledge of it dropped (stored to and reloaded from the map value):
 * a binary search's position is used as an index, so the verifier tracks it exactly and each
 * step's two outcomes double the states it explores (2^9 per mapping search, 2^21 per row
 * search). Reloaded from memory it is just a bounded unknown, and both outcomes merge. */
static __always_inline u32 hp_forget(struct hp_walk *w, u32 v)
{
    *(volatile u32 *)&w->lo = v;
    return *(volatile u32 *)&w->lo;
}

static __always_inline u64 hp_read_user_u64(u64 addr, int *err)
{
    u64 v = 0;
    if (bpf_probe_read_user(&v, sizeof(v), (void *)addr))
        *err = 1;
    return v;
}

/* One frame: record the pc, find its caller. 0 = go on, else an HP_END_* reason. */
static __always_inline int hp_step(struct hp_walk *w, struct hp_proc_maps *pm)
{
    u64 n = w->st.n;
    if (n >= HP_MAX_DEPTH)
        return HP_END_DEPTH;
    u64 pc = w->pc;
    w->st.ips[n] = pc;
    w->st.n = n + 1;
    u64 look = n ? pc - 1 : pc;

    u32 cnt = pm->n;
    if (cnt == 0)
        return HP_END_NOT_COVERED;
    if (cnt > HP_MAX_MAPPINGS)
        cnt = HP_MAX_MAPPINGS;
    /* The last mapping starting at or before `look`: the answer stays in [lo, lo + len). */
    u32 lo = 0, len = cnt;
    for (int s = 0; s < HP_MAP_STEPS; s++) {
        if (len <= 1)
            break;
        u32 half = len >> 1;
        if (pm->m[(lo + half) & (HP_MAX_MAPPINGS - 1)].start <= look)
            lo += half;
        lo = hp_forget(w, lo);
        len -= half;
    }
    struct hp_mapping *m = &pm->m[lo & (HP_MAX_MAPPINGS - 1)];
    if (look < m->start || look >= m->end)
        return HP_END_NOT_COVERED;

    int fault = 0;
    u64 sp = w->sp, bp = w->bp, cfa, ra;
    u32 count = m->table_count;
    if (count == 0) {
        /* A table not loaded yet: the frame-pointer step meanwhile (as without the unwinder),
         * and the walk will say so (hp_walk_end). */
        if (m->table_first == HP_MAP_PENDING)
            w->pending = 1;
        else if (m->table_first != HP_MAP_FP)
            return HP_END_NOT_COVERED;
        /* The frame-pointer step: [rbp] = caller's rbp, [rbp + 8] = return address. A chain
         * ends with rbp 0 (_start clears it). */
        if (!w->bp_ok)
            return HP_END_UNSUPPORTED;
        if (bp == 0)
            return HP_END_OK;
        cfa = bp + 16;
        ra = hp_read_user_u64(bp + 8, &fault);
        bp = hp_read_user_u64(bp, &fault);
    } else {
        u64 x = look - m->bias;
        if (x >> 32)
            return HP_END_NOT_COVERED;
        u32 first = m->table_first;
        u32 rlo = 0, rlen = count;
        for (int s = 0; s < HP_ROW_STEPS; s++) {
            if (rlen <= 1)
                break; /* log2(rows of this table) steps, not HP_ROW_STEPS */
            u32 half = rlen >> 1;
            u32 idx = first + rlo + half;
            struct hp_unwind_row *r = unwind_rows.lookup(&idx);
            if (r && r->pc <= (u32)x)
                rlo += half;
            rlo = hp_forget(w, rlo);
            rlen -= half;
        }
        u32 idx = first + rlo;
        struct hp_unwind_row *r = unwind_rows.lookup(&idx);
        if (!r || r->pc > (u32)x)
            return HP_END_NOT_COVERED;
        u8 rule = r->cfa_rule;
        if (rule == HP_CFA_END) {
#ifdef HP_ROW_END_GAP
            if (r->cfa_off == HP_ROW_END_GAP)
                return HP_END_NOT_COVERED; /* between FDEs: no CFI says where the caller is */
#endif
            return HP_END_OK;
        }
        if (rule == HP_CFA_RSP) {
            cfa = sp + (s64)r->cfa_off;
        } else if (rule == HP_CFA_RBP) {
            if (!w->bp_ok)
                return HP_END_UNSUPPORTED;
            cfa = bp + (s64)r->cfa_off;
        } else if (rule == HP_CFA_PLT10 || rule == HP_CFA_PLT11) {
            /* The .plt expression reads the real rip (a PLT stub is never a return address). */
            u64 lim = rule == HP_CFA_PLT10 ? 10 : 11;
            cfa = sp + 8 + (((pc - m->bias) & 15) >= lim ? 8 : 0);
        } else {
            return HP_END_UNSUPPORTED;
        }
        ra = hp_read_user_u64(cfa - 8, &fault);
        u8 brule = r->rbp_rule;
        if (brule == HP_RBP_CFA) {
            bp = hp_read_user_u64(cfa + (s64)r->rbp_off, &fault);
            w->bp_ok = 1;
        } else if (brule != HP_RBP_SAME) {
            w->bp_ok = 0;
        }
    }
    if (fault)
        return HP_END_READ_FAULT;
    if (cfa <= sp || ra == 0 || ra >= HP_USER_TOP)
        return HP_END_BAD_FRAME;
    w->pc = ra;
    w->sp = cfa;
    w->bp = bp;
    return 0;
}

/* Up to HP_FRAMES_PER_PROG frames of the walk: 0 = more to do (tail-call again), else why it
 * ended. */
static __always_inline int hp_walk_some(void *ctx, struct hp_walk *w)
{
    u32 tgid = w->tgid;
    struct hp_proc_maps *pm = proc_maps.lookup(&tgid);
    if (!pm) {
        /* Not registered yet: ask user space for it, and meanwhile walk by frame pointer as
         * without the unwinder (the reason still says the stack may be incomplete). */
        u32 one = 1;
        unwind_wanted.update(&tgid, &one);
        if (w->st.n == 0) {
            long len = bpf_get_stack(ctx, w->st.ips, sizeof(w->st.ips), BPF_F_USER_STACK);
            w->st.n = len > 0 ? (u64)len / 8 : 0;
            if (w->st.n == 0) {
                w->st.ips[0] = w->pc; /* keep the leaf */
                w->st.n = 1;
            }
        }
        return HP_END_NO_PROC;
    }
    w->progs++;
    for (int i = 0; i < HP_FRAMES_PER_PROG; i++) {
        int end = hp_step(w, pm);
        if (end)
            return w->pending ? HP_END_PENDING : end;
    }
    return 0;
}
BPF_PROG_ARRAY(unwind_cpu, 1);  /* [0] = unwind_cpu_step, set by the loader */

/* The end of an on-CPU sample's walk: store its user stack, count the sample. */
static __always_inline void hp_walk_cpu_done(struct hp_walk *w, int end)
{
    w->key.user_end = end;
    w->key.user_err = hp_store_stack(&w->st, w->key.stack_map, &w->key.user_stack);
    hp_add(&w->key, 1, hp_control(HP_CTL_BUFFER), 0);
}

int unwind_cpu_step(struct bpf_perf_event_data *ctx)
{
    int zero = 0;
    struct hp_walk *w = walks.lookup(&zero);
    if (!w)
        return 0;
    int end = hp_walk_some(ctx, w);
    if (!end) {
        unwind_cpu.call(ctx, 0);
        end = HP_END_DEPTH; /* the tail-call limit: cannot happen below HP_MAX_DEPTH frames */
    }
    hp_walk_cpu_done(w, end);
    return 0;
}
#endif

#ifdef PYTHON
/* CPython frames (hp_python.bpf.h; maps and lookups here: BCC rewrites map calls only in the
 * main file). `py_new` announces each Python stack the first time it is stored, so user space
 * reads its code objects while the process lives (`py_announced` remembers which were). */
#include "hp_python.bpf.h"
BPF_HASH(py_procs, u32, struct hp_py_proc, HP_PY_PROCS);
BPF_HASH(py_threads, u32, u64, HP_PY_THREADS);
BPF_PERCPU_ARRAY(py_scratch, struct hp_py_scratch, 1);
BPF_TABLE("lru_hash", u64, u32, py_announced, HP_PY_ANNOUNCED);
BPF_QUEUE(py_new, struct hp_py_new, HP_PY_NEW);
/* Processes to look at now: each exec (a Python process is registered within ~0.1 s of starting
 * rather than at the next /proc poll: a 2-second process lost an eighth of its Python frames),
 * and registered processes with a thread not in py_threads yet (its thread list is re-read). */
BPF_QUEUE(py_execs, u32, HP_PY_NEW);

RAW_TRACEPOINT_PROBE(sched_process_exec)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    py_execs.push(&tgid, BPF_EXIST);
    return 0;
}

/* The current thread's Python stack, stored in stack map `map` (scratch `slot` is overwritten).
 * Returns an HP_PY_END_* reason with *hash set (0: no frames). */
static __always_inline int hp_py_stack(u32 tgid, u32 tid, int slot, u32 map, u64 *hash)
{
    *hash = 0;
    struct hp_py_proc *pp = py_procs.lookup(&tgid);
    if (!pp)
        return HP_PY_END_NONE;
    u64 *tstate = py_threads.lookup(&tid);
    if (!tstate) {
        py_execs.push(&tgid, BPF_EXIST);
        return HP_PY_END_NO_THREAD;
    }
    int zero = 0, idx = slot;
    struct hp_py_scratch *s = py_scratch.lookup(&zero);
    struct hp_stack *st = scratch.lookup(&idx);
    if (!s || !st)
        return HP_PY_END_READ_FAULT;
    int end = hp_py_walk(pp, *tstate, s, st);
    if (hp_store_stack(st, map, hash))
        return HP_PY_END_MAP_FULL;
    if (*hash && !py_announced.lookup(hash)) {
        py_announced.update(hash, &tgid);
        struct hp_py_new ev = {.hash = *hash, .tgid = tgid, .map = map};
        py_new.push(&ev, BPF_EXIST);
    }
    return end;
}
#endif

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    u32 tid = (u32)id;
    hp_stat(HP_STAT_SAMPLES);
    if (tid == 0) {
        hp_stat(HP_STAT_IDLE);
#ifndef INCLUDE_IDLE
        return 0;
#endif
    }
    if (!hp_wanted(tgid))
        return 0;

#ifdef HP_UNWIND
    int zero = 0;
    struct hp_walk *w = walks.lookup(&zero);
    if (!w)
        return 0;
    struct hp_key *k = &w->key;
    __builtin_memset(k, 0, sizeof(*k));
#else
    struct hp_key key = {};
    struct hp_key *k = &key;
#endif
    k->tgid = tgid;
    k->tid = tid;
    k->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&k->comm, sizeof(k->comm));
    u64 gen = hp_control(HP_CTL_STACKGEN);
    k->stack_map = gen & 1;
    k->kernel_err = hp_take_stack(ctx, 0, 0, k->stack_map, &k->kernel_stack);
#ifdef PYTHON
    k->py_end = hp_py_stack(tgid, tid, 0, k->stack_map, &k->py_stack);
#endif
#ifdef HP_UNWIND
    k->user_err = hp_walk_start(w, tgid);
    if (k->user_err == 0) {
        unwind_cpu.call(ctx, 0);
        /* No unwinder program (not set): the frame-pointer walk, as without HP_UNWIND. */
    } else {
        hp_add(k, 1, hp_control(HP_CTL_BUFFER), 0);
        return 0;
    }
#endif
    k->user_err = hp_take_stack(ctx, 0, BPF_F_USER_STACK, k->stack_map, &k->user_stack);
    hp_add(k, 1, hp_control(HP_CTL_BUFFER), 0);
    return 0;
}

#ifdef OFFCPU
#if HP_OFFCPU_MIN_P < 1 || HP_OFFCPU_MIN_P > HP_P_ONE
#error "HP_OFFCPU_MIN_P must be in 1..65536"
#endif
#if HP_OFFCPU_FLOOR_MIN < 1 || HP_OFFCPU_FLOOR_MIN > HP_OFFCPU_MIN_P
#error "HP_OFFCPU_FLOOR_MIN must be in 1..HP_OFFCPU_MIN_P"
#endif
#if HP_TASK_SLOTS & (HP_TASK_SLOTS - 1)
#error "HP_TASK_SLOTS must be a power of two"
#endif
BPF_HASH(offcpu_counts0, struct hp_key, u64, HP_COUNTS_ENTRIES);
BPF_HASH(offcpu_counts1, struct hp_key, u64, HP_COUNTS_ENTRIES);
/* Per-thread state, open span included (hotpath.h). LRU: a task that exits while switched out
 * never switches back in; its entry must age out instead of filling the map (a separate span
 * map did, on a busy host, within a minute). One map, not a span map beside it: that cost a
 * sampled span an LRU update, lookup and delete more, ~1.7 us here (every span sampled, no
 * user stack: 2.4-2.7 vs 0.8-0.9 us a switch-out). */
BPF_TABLE("lru_hash", u64, struct hp_thread, threads, HP_THREAD_ENTRIES);
BPF_PERCPU_ARRAY(cpu_last, struct hp_cpu, 1);
BPF_ARRAY(slots, struct hp_slot_state, HP_TASK_SLOTS);
#ifdef HP_UNWIND
BPF_PROG_ARRAY(unwind_off, 1);  /* [0] = unwind_off_step, set by the loader */
#endif

/* A thread's probability (of HP_P_ONE) of stacks at its next switch-out, before the scale. */
static __always_inline u32 hp_offcpu_p(u64 recent)
{
    if (recent >= MIN_BLOCK_NS)
        return HP_P_ONE;
    u64 p = (recent << 16) / (MIN_BLOCK_NS ? MIN_BLOCK_NS : 1);
    return p < HP_OFFCPU_MIN_P ? HP_OFFCPU_MIN_P : (u32)p;
}

/* p with this CPU's scales applied: p = 1 has its own (1 while under HP_OFFCPU_EXACT_BUDGET). */
static __always_inline u32 hp_scaled(struct hp_cpu *c, u32 p)
{
    if (p >= HP_P_ONE)
        return c->scale_exact ? c->scale_exact : HP_P_ONE;
    if (!c->scale)
        return p;
    u32 q = (u32)(((u64)p * c->scale) >> 16);
    return q < HP_OFFCPU_FLOOR_MIN ? HP_OFFCPU_FLOOR_MIN : q;
}

/* A scale that would have brought `sampled` spans in the last window to `allowed`. */
static __always_inline u32 hp_rescale(u32 scale, u64 allowed, u32 sampled, u32 floor)
{
    u64 s = ((u64)(scale ? scale : HP_P_ONE) * allowed) / (sampled ? sampled : 1);
    return s > HP_P_ONE ? HP_P_ONE : s < floor ? floor : (u32)s;
}

/* At a sampled switch-out (the clock was read anyway): once a window has passed, rescale so
 * that this CPU's sampled spans in a window like the last one meet the budgets. exact: the
 * span's p was 1 before the scale. */
static __always_inline void hp_scale_update(struct hp_cpu *c, u64 now, int exact)
{
    if (exact)
        c->win_exact++;
    else
        c->win_sampled++;
    hp_stat(HP_STAT_SAMPLED);
    u64 dt = now - c->win_ts;
    if (dt < HP_SCALE_WINDOW_NS)
        return;
    c->scale = hp_rescale(c->scale, (u64)HP_OFFCPU_BUDGET * dt / 1000000000ULL, c->win_sampled, 1);
    c->scale_exact = hp_rescale(c->scale_exact, (u64)HP_OFFCPU_EXACT_BUDGET * dt / 1000000000ULL,
                                c->win_exact, HP_OFFCPU_MIN_P);
    c->win_ts = now;
    c->win_sampled = 0;
    c->win_exact = 0;
    /* Reseed the draws' PRNG (two helper calls a window, off the cheap path). Seeded only by
     * the map's zeroes, every CPU and every load drew the same sequence, and its first ~50k
     * draws are 5-7 % short of p = 1/64: a reproducible -5 % in off-CPU totals over seconds. */
    c->rng ^= ((u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
}

/* Count the closed sampled span of t, delta ns long, weighting its time by 1/p. */
static __always_inline void hp_offcpu_end(struct hp_thread *t, u64 delta, u64 gen)
{
    if (delta < MIN_BLOCK_NS) {
        hp_stat(HP_STAT_SHORT_BLOCKS);
        return;
    }
    struct hp_key key = t->key;
    u32 p = t->p;
    if (gen - t->gen > 1) {
        /* Its stack map was recycled meanwhile: keep the time, flag the stacks. */
        key.user_stack = 0;
        key.kernel_stack = 0;
        key.user_err = HP_STACK_STALE;
        key.kernel_err = HP_STACK_STALE;
        hp_stat(HP_STAT_STALE_STACK);
    }
    u64 value = delta;
    if (p < HP_P_ONE)
        value = delta / p * HP_P_ONE + (delta % p) * HP_P_ONE / p; /* no overflow of delta << 16 */
    hp_add(&key, value, hp_control(HP_CTL_BUFFER), 1);
}

/* One sampling draw with probability p (of HP_P_ONE). Knuth's MMIX LCG, per CPU, reseeded each
 * scale window (hp_scale_update): the draw only has to be independent of the length of the
 * coming span; no helper call. */
static __always_inline int hp_draw(struct hp_cpu *c, u32 p)
{
    c->rng = c->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (u32)(c->rng >> 48) < p;
}

/* A task's slot in `slots`: task structs are a few KiB apart, so drop the low bits and fold in
 * higher ones. */
static __always_inline u32 hp_slot(u64 task)
{
    return (u32)((task >> 10) ^ (task >> 22)) & (HP_TASK_SLOTS - 1);
}

/* Everything past the cheap path. It reads prev and the tracepoint's arguments again rather than
 * take them from the cheap path: inlined into one body, clang kept such values (and more) on the
 * stack for this part, and spilled them on every switch (BCC cannot call a function that is not
 * inlined). base: prev's p before the scale as the cheap path saw it; p_used: the p the cheap
 * path drew with (the span is sampled), 0 if the cheap path could not draw. */
static __always_inline int hp_switch_out(struct bpf_raw_tracepoint_args *ctx, struct hp_cpu *c,
                                         u64 in_ts, u64 in_task, u32 base, u32 p_used)
{
    if (c->sampled_out) {
        hp_stat_add(HP_STAT_SAMPLED_OUT, c->sampled_out);
        c->sampled_out = 0;
    }
    u64 prev = ctx->args[1];
    u64 state = ctx->args[3];
    u32 pslot = hp_slot(prev);
    struct hp_slot_state *ps = slots.lookup(&pslot);
    if (!ps)
        return 0;
    int exiting = (state & HP_TASK_DEAD) != 0;
    int preempted = ctx->args[0] || (state & HP_TASK_BLOCKED_BITS) == 0;
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    if (tid == 0) {
        c->idle = prev; /* this CPU's idle task, skipped from now on without a helper call */
        return 0;
    }
#ifdef FILTER_PIDS
    if (!hp_wanted(id >> 32))
        return 0;
#endif
    u64 gen = hp_control(HP_CTL_STACKGEN);
    struct hp_thread *t = threads.lookup(&prev);
    if (t) {
        if (t->out_ts) {
            /* Close the open sampled span. A valid switch-in: this CPU's last switch scheduled
             * prev and was timed. Anything else means a run of this program was skipped (the
             * kernel counts those as the program's recursion misses). */
            __sync_fetch_and_add(&ps->open, -1);
            if (in_task == prev && in_ts > t->out_ts) {
                u64 delta = in_ts - t->out_ts;
                hp_offcpu_end(t, delta, gen);
                u64 decayed = t->recent - (t->recent >> HP_OFFCPU_DECAY_SHIFT);
                t->recent = (delta > decayed && !t->preempted) ? delta : decayed;
                t->p = hp_offcpu_p(t->recent);
            } else {
                hp_stat(HP_STAT_LOST_SPANS);
            }
            t->out_ts = 0;
        }
        if (exiting) {
            /* Its last switch-out: forget it, so a task reusing the struct starts fresh. */
            threads.delete(&prev);
            if (ps->task == prev)
                ps->task = 0;
            return 0;
        }
        if (!p_used) {
            base = t->p;
            if (ps->task != prev)
                ps->task = prev;
            ps->p = base;
            u32 p = hp_scaled(c, base);
            if (p < HP_P_ONE && !hp_draw(c, p)) {
                c->sampled_out++;
                return 0;
            }
            p_used = p;
        }
    } else {
        /* A thread never seen (or evicted from the LRU, open span and all): assume it just
         * blocked MIN_BLOCK_NS, so its first span is exact. */
        if (exiting)
            return 0;
        struct hp_thread fresh = {};
        fresh.recent = MIN_BLOCK_NS;
        fresh.p = HP_P_ONE;
        threads.update(&prev, &fresh);
        t = threads.lookup(&prev);
        if (!t) {
            hp_stat(HP_STAT_THREADS_FULL);
            return 0;
        }
        p_used = HP_P_ONE;
        base = HP_P_ONE;
    }
    /* This span's weight is 1/p_used; the next draws use it too, until the span closes. */
    t->p = p_used;
    u64 now = c->ts; /* this switch's time, if the switch-in side read it */
    if (!now)
        now = bpf_ktime_get_ns();
    hp_scale_update(c, now, base >= HP_P_ONE);
    /* The key is hashed as a whole later: every field is written here, or stays as the zeroed
     * entry had it (pad; a stack left out by the options). */
    t->gen = gen;
    t->key.tgid = id >> 32;
    t->key.tid = tid;
    t->key.cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&t->key.comm, sizeof(t->key.comm));
    t->key.stack_map = gen & 1;
#ifndef OFFCPU_NO_KERNEL_STACK
    t->key.kernel_err = hp_take_stack(ctx, 1, 0, t->key.stack_map, &t->key.kernel_stack);
#endif
#ifdef PYTHON
    t->key.py_end = hp_py_stack(t->key.tgid, tid, 1, t->key.stack_map, &t->key.py_stack);
#endif
    t->out_ts = now;
    t->preempted = preempted;
    __sync_fetch_and_add(&ps->open, 1);
#ifndef OFFCPU_NO_USER_STACK
    t->key.user_end = HP_END_NONE;
#ifdef HP_UNWIND
    int one = 1;
    struct hp_walk *w = walks.lookup(&one);
    if (w) {
        t->key.user_err = hp_walk_start(w, id >> 32);
        if (t->key.user_err)
            return 0; /* no user registers: a kernel thread */
        w->task = prev;
        /* The walk ends in unwind_off_step, which fills in the user stack. */
        unwind_off.call(ctx, 0);
    }
#endif
    t->key.user_err = hp_take_stack(ctx, 1, BPF_F_USER_STACK, t->key.stack_map, &t->key.user_stack);
#endif
    return 0;
}

#ifdef HP_UNWIND
/* A sampled switch-out's user-stack walk (tail calls from sched_switch): the open span's key in
 * `threads` gets the stack and why its walk ended. prev has not switched out yet, so nothing
 * else touches its entry meanwhile. */
int unwind_off_step(struct bpf_raw_tracepoint_args *ctx)
{
    int one = 1;
    struct hp_walk *w = walks.lookup(&one);
    if (!w)
        return 0;
    int end = hp_walk_some(ctx, w);
    if (!end) {
        unwind_off.call(ctx, 0);
        end = HP_END_DEPTH;
    }
    u64 task = w->task;
    struct hp_thread *t = threads.lookup(&task);
    if (t) {
        t->key.user_end = end;
        t->key.user_err = hp_store_stack(&w->st, t->key.stack_map, &t->key.user_stack);
    }
    return 0;
}
#endif

/* Every BPF helper call costs ~30-80 ns here (each return goes through the SRSO "safe RET"
 * thunk; bpf_ktime_get_ns also makes a retpolined clocksource call), comparable to the rest of a
 * context switch. So a sampled-out switch makes no call at all (p from the thread's slot, read
 * at its switch-in) or one (`threads`) and reads no clock: array lookups are inlined by the
 * verifier, the PRNG is plain arithmetic.
 * Sampled spans need their switch-in time without a lookup by next at every switch: the
 * switch-out counts the open span in `slots` (by task slot), so a switch-in reads the clock only
 * when `slots` says next may have one, into `cpu_last`; the thread's next switch-out (it has
 * been on this CPU ever since) closes the span with it. So a span is reported at the thread's
 * next switch-out or exit, one on-CPU stretch late.
 * A raw tracepoint, not TRACEPOINT_PROBE: the perf-event tracepoint path formats a trace record
 * (comm strings included) before any program runs; an empty TRACEPOINT_PROBE alone cost +4-9 %
 * on a pinned `perf bench sched pipe`, and this program costs ~2.5 points less than its
 * TRACEPOINT_PROBE form did (bench/bpf_overhead.py --only offcpu --pin 0 --ref f9b4469).
 * Its arguments are task pointers, used only as opaque keys (reading the tasks would need
 * kernel struct layouts); the pid comes from a helper, since prev is the current task, and only
 * off the cheap path. A task struct freed and reused keeps no state: its last switch-out
 * (TASK_DEAD) deletes it. */
RAW_TRACEPOINT_PROBE(sched_switch)
{
    int zero = 0;
    struct hp_cpu *c = cpu_last.lookup(&zero);
    if (!c)
        return 0;
    u64 in_ts = c->ts;
    u64 in_task = c->task;
    u32 in_p = c->p;
    u64 next = ctx->args[2];
    u32 nslot = hp_slot(next);
    struct hp_slot_state *ns = slots.lookup(&nslot);
    u64 now = 0;
    u32 next_p = 0;
    if (ns) {
        if (ns->open)
            now = bpf_ktime_get_ns();
        if (ns->task == next)
            next_p = ns->p;
    }
    c->ts = now;
    c->task = next;
    c->p = next_p;
    u64 prev = ctx->args[1];
    if (prev == c->idle)
        return 0;
    /* A sampled-out switch-out must not even look up `threads` (a helper call). prev is the
     * thread this CPU's last switch put on (unless a run of this program was skipped), and had
     * no open span if its slot had none then (in_ts 0): draw from the p its slot held for it.
     * A stale p (a slot written by two CPUs at once) only changes how often prev is sampled, not
     * the weight: the sampled span is weighted by the p it was drawn with. */
    u32 p_used = 0;
    if (prev == in_task && in_ts == 0 && in_p && (ctx->args[3] & HP_TASK_DEAD) == 0) {
        u32 p = hp_scaled(c, in_p);
        if (p < HP_P_ONE && !hp_draw(c, p)) {
            c->sampled_out++;
            return 0; /* the common, cheap path: no clock, no stacks, one slot read */
        }
        p_used = p;
    }
    return hp_switch_out(ctx, c, in_ts, in_task, in_p, p_used);
}
#endif

static __always_inline void hp_add(struct hp_key *key, u64 value, u64 buffer, int offcpu)
{
    u64 zero = 0;
    u64 *v;
#ifdef OFFCPU
    if (offcpu) {
        v = buffer ? offcpu_counts1.lookup_or_try_init(key, &zero)
                   : offcpu_counts0.lookup_or_try_init(key, &zero);
    } else
#endif
    {
        v = buffer ? cpu_counts1.lookup_or_try_init(key, &zero)
                   : cpu_counts0.lookup_or_try_init(key, &zero);
    }
    if (!v) {
        hp_stat(HP_STAT_MAP_FULL);
        return;
    }
    __sync_fetch_and_add(v, value);
}
