"""Native unwind tables from DWARF CFI for the BPF walker (`bpf/hp_unwind.h`): compile, cache, load."""
