#include "cdemoguest.h"

extern const unsigned char nestdbg_demo_start[], nestdbg_demo_end[];
extern const unsigned char nestdbg_demo_l1_entry[], nestdbg_demo_vmrun[], nestdbg_demo_after_vmrun[],
    nestdbg_demo_l2_entry[], nestdbg_demo_l2_cpuid[], nestdbg_demo_l2_in[], nestdbg_demo_l2_out[],
    nestdbg_demo_l2_rdmsr[], nestdbg_demo_l2_wrmsr[], nestdbg_demo_l2_ud[], nestdbg_demo_l2_npf[],
    nestdbg_demo_l2_cr4[], nestdbg_demo_l2_hlt[], nestdbg_demo_l2_vmmcall[], nestdbg_demo_l2_passthrough[],
    nestdbg_demo_l1_32_entry[], nestdbg_demo_vmrun32[], nestdbg_demo_l2_32_cpuid[], nestdbg_demo_h_cpuid[],
    nestdbg_demo_l2_32_out[], nestdbg_demo_events_entry[], nestdbg_demo_events_vmrun[], nestdbg_demo_events_l2_out[],
    nestdbg_demo_events_l2_ud_handler[], nestdbg_demo_timer_entry[], nestdbg_demo_timer_vmrun[], nestdbg_demo_timer_l2[];

static const struct { const char *name; const unsigned char *at; } symbols[] = {
    {"l1_entry", nestdbg_demo_l1_entry}, {"vmrun", nestdbg_demo_vmrun}, {"after_vmrun", nestdbg_demo_after_vmrun},
    {"l2_entry", nestdbg_demo_l2_entry}, {"l2_cpuid", nestdbg_demo_l2_cpuid}, {"l2_in", nestdbg_demo_l2_in},
    {"l2_out", nestdbg_demo_l2_out}, {"l2_rdmsr", nestdbg_demo_l2_rdmsr}, {"l2_wrmsr", nestdbg_demo_l2_wrmsr},
    {"l2_ud", nestdbg_demo_l2_ud}, {"l2_npf", nestdbg_demo_l2_npf}, {"l2_cr4", nestdbg_demo_l2_cr4},
    {"l2_hlt", nestdbg_demo_l2_hlt}, {"l2_vmmcall", nestdbg_demo_l2_vmmcall},
    {"l2_passthrough", nestdbg_demo_l2_passthrough},
    {"l1_h_cpuid", nestdbg_demo_h_cpuid}, {"l1_32_entry", nestdbg_demo_l1_32_entry}, {"vmrun32", nestdbg_demo_vmrun32}, {"l2_32_cpuid", nestdbg_demo_l2_32_cpuid},
    {"l2_32_out", nestdbg_demo_l2_32_out}, {"events_entry", nestdbg_demo_events_entry},
    {"events_vmrun", nestdbg_demo_events_vmrun}, {"events_l2_out", nestdbg_demo_events_l2_out},
    {"events_l2_ud_handler", nestdbg_demo_events_l2_ud_handler},
    {"timer_entry", nestdbg_demo_timer_entry}, {"timer_vmrun", nestdbg_demo_timer_vmrun}, {"timer_l2", nestdbg_demo_timer_l2},
};

const unsigned char *nestdbg_demo_image(size_t *length) {
    *length = (size_t)(nestdbg_demo_end - nestdbg_demo_start);
    return nestdbg_demo_start;
}
size_t nestdbg_demo_symbol_count(void) { return sizeof symbols / sizeof symbols[0]; }
const char *nestdbg_demo_symbol_name(size_t i) { return i < nestdbg_demo_symbol_count() ? symbols[i].name : 0; }
size_t nestdbg_demo_symbol_offset(size_t i) {
    return i < nestdbg_demo_symbol_count() ? (size_t)(symbols[i].at - nestdbg_demo_start) : 0;
}

extern const unsigned char nestdbg_selfcheck_start[], nestdbg_selfcheck_end[];
extern const unsigned char nestdbg_selfcheck_l1_entry[], nestdbg_selfcheck_l1_panic[], nestdbg_selfcheck_l2_entry[],
    nestdbg_selfcheck_l2_passthrough[], nestdbg_selfcheck_l2_cpuid0[], nestdbg_selfcheck_l2_cpuid1[],
    nestdbg_selfcheck_l2_in[], nestdbg_selfcheck_l2_out[], nestdbg_selfcheck_l2_rdmsr[], nestdbg_selfcheck_l2_ud[],
    nestdbg_selfcheck_l2_hlt[], nestdbg_selfcheck_l2_vmmcall[], nestdbg_selfcheck_iteration_limit[];

// No symbol for the VMRUN: it exists only at run time, outside the image.
static const struct { const char *name; const unsigned char *at; } selfcheck_symbols[] = {
    {"l1_entry", nestdbg_selfcheck_l1_entry}, {"l1_panic", nestdbg_selfcheck_l1_panic},
    {"l2_entry", nestdbg_selfcheck_l2_entry}, {"l2_passthrough", nestdbg_selfcheck_l2_passthrough},
    {"l2_cpuid0", nestdbg_selfcheck_l2_cpuid0}, {"l2_cpuid1", nestdbg_selfcheck_l2_cpuid1},
    {"l2_in", nestdbg_selfcheck_l2_in}, {"l2_out", nestdbg_selfcheck_l2_out}, {"l2_rdmsr", nestdbg_selfcheck_l2_rdmsr},
    {"l2_ud", nestdbg_selfcheck_l2_ud}, {"l2_hlt", nestdbg_selfcheck_l2_hlt}, {"l2_vmmcall", nestdbg_selfcheck_l2_vmmcall},
    {"iteration_limit", nestdbg_selfcheck_iteration_limit},
};

const unsigned char *nestdbg_selfcheck_image(size_t *length) {
    *length = (size_t)(nestdbg_selfcheck_end - nestdbg_selfcheck_start);
    return nestdbg_selfcheck_start;
}
size_t nestdbg_selfcheck_symbol_count(void) { return sizeof selfcheck_symbols / sizeof selfcheck_symbols[0]; }
const char *nestdbg_selfcheck_symbol_name(size_t i) {
    return i < nestdbg_selfcheck_symbol_count() ? selfcheck_symbols[i].name : 0;
}
size_t nestdbg_selfcheck_symbol_offset(size_t i) {
    return i < nestdbg_selfcheck_symbol_count() ? (size_t)(selfcheck_symbols[i].at - nestdbg_selfcheck_start) : 0;
}

extern const unsigned char nestdbg_multiboot_start[], nestdbg_multiboot_end[];
extern const unsigned char nestdbg_multiboot_entry[], nestdbg_multiboot_long_mode[], nestdbg_multiboot_load_address[],
    nestdbg_multiboot_payload_destination[], nestdbg_multiboot_payload_length[], nestdbg_multiboot_payload_entry[],
    nestdbg_multiboot_zero_start[], nestdbg_multiboot_zero_end[], nestdbg_multiboot_stack_top[];

// The code's two entries, then the quads the writer reads or patches.
static const struct { const char *name; const unsigned char *at; } multiboot_symbols[] = {
    {"entry", nestdbg_multiboot_entry}, {"long_mode", nestdbg_multiboot_long_mode},
    {"load_address", nestdbg_multiboot_load_address}, {"payload_destination", nestdbg_multiboot_payload_destination},
    {"payload_length", nestdbg_multiboot_payload_length}, {"payload_entry", nestdbg_multiboot_payload_entry},
    {"zero_start", nestdbg_multiboot_zero_start}, {"zero_end", nestdbg_multiboot_zero_end},
    {"stack_top", nestdbg_multiboot_stack_top},
};

const unsigned char *nestdbg_multiboot_image(size_t *length) {
    *length = (size_t)(nestdbg_multiboot_end - nestdbg_multiboot_start);
    return nestdbg_multiboot_start;
}
size_t nestdbg_multiboot_symbol_count(void) { return sizeof multiboot_symbols / sizeof multiboot_symbols[0]; }
const char *nestdbg_multiboot_symbol_name(size_t i) {
    return i < nestdbg_multiboot_symbol_count() ? multiboot_symbols[i].name : 0;
}
size_t nestdbg_multiboot_symbol_offset(size_t i) {
    return i < nestdbg_multiboot_symbol_count() ? (size_t)(multiboot_symbols[i].at - nestdbg_multiboot_start) : 0;
}

extern const unsigned char nestdbg_vmmcheck_start[], nestdbg_vmmcheck_end[], nestdbg_vmmcheck_entry[];

const unsigned char *nestdbg_vmmcheck_image(size_t *length, size_t *entry_offset) {
    *length = (size_t)(nestdbg_vmmcheck_end - nestdbg_vmmcheck_start);
    *entry_offset = (size_t)(nestdbg_vmmcheck_entry - nestdbg_vmmcheck_start);
    return nestdbg_vmmcheck_start;
}
