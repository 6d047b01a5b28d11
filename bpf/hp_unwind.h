/* The contract between the CFI table compiler (collector/unwind/, user space) and the native
 * unwinder in BPF (x86_64). Both sides read this file: Python through the one ABI module that
 * parses and checks it, never through a hand-made copy.
 *
 * Tables. Each ELF file with CFI (.eh_frame, .debug_frame) compiles into rows sorted by pc. A row
 * covers [pc, next row's pc) and says how to find the caller's frame there:
 *   CFA = rsp + cfa_off   (HP_CFA_RSP)          CFA = rbp + cfa_off   (HP_CFA_RBP)
 *   CFA = rsp + 8 + ((rip & 15) >= 11 ? 8 : 0)  (HP_CFA_PLT11; PLT10 with 10: the glibc/binutils
 *                                               .plt DW_CFA_def_cfa_expression)
 *   return address at CFA - 8 (the only rule gcc and clang emit on x86_64; others are UNSUPPORTED)
 *   caller's rbp: unchanged (HP_RBP_SAME) or saved at CFA + rbp_off (HP_RBP_CFA)
 * HP_CFA_END marks the outermost frame (return address undefined: _start, thread entry) and gaps
 * between FDEs (pc covered by no FDE): a walk that reaches it ends; the compiler emits it at the
 * end of every FDE whose successor does not start right there. Its cfa_off tells the two apart
 * (HP_ROW_END_*).
 * pc is the ELF virtual address (a file's p_vaddr space); the BPF side subtracts the mapping's
 * bias (runtime address - ELF vaddr) before the search.
 *
 * All rows of all loaded tables live in one array map (`unwind_rows`); a table is the contiguous
 * run [first, first + count). A process's executable mappings live in `proc_maps` (by tgid),
 * sorted by start, each naming its table run, or none (frame-pointer step). */
#ifndef HP_UNWIND_H
#define HP_UNWIND_H

#define HP_CFA_END 0
#define HP_CFA_RSP 1
#define HP_CFA_RBP 2
#define HP_CFA_PLT10 3
#define HP_CFA_PLT11 4
#define HP_CFA_UNSUPPORTED 255 /* a DWARF expression or register the walker does not evaluate */

/* cfa_off of an HP_CFA_END row says which end it is, so a walk can tell a complete stack from one
 * that ran into code no FDE covers. */
#define HP_ROW_END_GAP 0         /* no FDE covers this pc: HP_END_NOT_COVERED */
#define HP_ROW_END_OUTERMOST 1   /* return address undefined (_start, thread entry): HP_END_OK */

#define HP_RBP_SAME 0
#define HP_RBP_CFA 1
#define HP_RBP_UNSUPPORTED 255 /* saved by expression or in another register: rbp unknown after */

struct hp_unwind_row {   /* 12 bytes */
    __u32 pc;            /* first ELF vaddr of this row's range (files are < 4 GiB) */
    __s32 cfa_off;
    __s16 rbp_off;
    __u8 cfa_rule;
    __u8 rbp_rule;
};

/* A mapping with table_count 0 has no table; its table_first then says what to do there:
 * HP_MAP_FP (no CFI, e.g. JIT code: the frame-pointer step) or HP_MAP_PENDING (the table is not
 * loaded yet: the frame-pointer step too, and the walk ends with HP_END_PENDING). */
#define HP_MAP_FP 1
#define HP_MAP_PENDING 2

#ifndef HP_MAX_MAPPINGS
#define HP_MAX_MAPPINGS 256   /* executable mappings per process; more are counted, not walked */
#endif

struct hp_mapping {      /* 32 bytes */
    __u64 start;         /* runtime address range [start, end) */
    __u64 end;
    __u64 bias;          /* runtime address - ELF vaddr */
    __u32 table_first;   /* index into unwind_rows */
    __u32 table_count;   /* rows; 0 = no table (see HP_MAP_*) */
};

struct hp_proc_maps {
    __u32 n;             /* mappings in use, sorted by start */
    __u32 pad;
    struct hp_mapping m[HP_MAX_MAPPINGS];
};

/* Why a user-stack walk ended (hp_key.user_end; 0 for frame-pointer walks by bpf_get_stack). */
#define HP_END_NONE 0          /* not an unwinder walk */
#define HP_END_OK 1            /* reached the outermost frame */
#define HP_END_NOT_COVERED 2   /* pc in no known mapping, or in no row of its table */
#define HP_END_UNSUPPORTED 3   /* an UNSUPPORTED rule (expression, signal frame) */
#define HP_END_READ_FAULT 4    /* reading the stack or a saved register faulted */
#define HP_END_DEPTH 5         /* HP_MAX_DEPTH frames */
#define HP_END_PENDING 6       /* a table on the way was not loaded yet (frame-pointer steps there) */
#define HP_END_NO_PROC 7       /* no proc_maps entry for the process yet (frames by frame pointer) */
#define HP_END_BAD_FRAME 8     /* CFA or return address impossible (zero, not increasing) */
#define HP_END_SLOTS 9

#endif
