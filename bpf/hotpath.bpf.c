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
 * hotpath.h), map sizes as in hotpath.h.
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>
#include "hotpath.h"

BPF_ARRAY(control, u64, 2);
BPF_PERCPU_ARRAY(stats, u64, HP_STAT_SLOTS);
BPF_HASH(pid_filter, u32, u8, HP_FILTER_ENTRIES);

BPF_HASH(stacks0, u64, struct hp_stack, HP_STACK_ENTRIES);
BPF_HASH(stacks1, u64, struct hp_stack, HP_STACK_ENTRIES);
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

/* Take one stack into the scratch slot, hash it, store it in stack map `map`.
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
    u64 n = (u64)len / 8;
    st->n = n;
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

    struct hp_key key = {};
    key.tgid = tgid;
    key.tid = tid;
    key.cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 gen = hp_control(HP_CTL_STACKGEN);
    key.stack_map = gen & 1;
    key.kernel_err = hp_take_stack(ctx, 0, 0, key.stack_map, &key.kernel_stack);
    key.user_err = hp_take_stack(ctx, 0, BPF_F_USER_STACK, key.stack_map, &key.user_stack);
    hp_add(&key, 1, hp_control(HP_CTL_BUFFER), 0);
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
#ifndef OFFCPU_NO_USER_STACK
    t->key.user_err = hp_take_stack(ctx, 1, BPF_F_USER_STACK, t->key.stack_map, &t->key.user_stack);
#endif
    t->out_ts = now;
    t->preempted = preempted;
    __sync_fetch_and_add(&ps->open, 1);
    return 0;
}

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
