// The built-in demo L1/L2 (demo.S), the self-checking L1 (selfcheck.S) and the Multiboot prologue that starts
// either from a Multiboot loader (multiboot_entry.S): their bytes and symbols, by name.
#ifndef CDEMOGUEST_H
#define CDEMOGUEST_H
#include <stddef.h>
#include <stdint.h>

/// The image bytes and their length.
const unsigned char *nestdbg_demo_image(size_t *length);
/// Number of exported symbols, and the i-th one's name and offset in the image.
size_t nestdbg_demo_symbol_count(void);
const char *nestdbg_demo_symbol_name(size_t index);
size_t nestdbg_demo_symbol_offset(size_t index);

/// The same for the self-checking L1.
const unsigned char *nestdbg_selfcheck_image(size_t *length);
size_t nestdbg_selfcheck_symbol_count(void);
const char *nestdbg_selfcheck_symbol_name(size_t index);
size_t nestdbg_selfcheck_symbol_offset(size_t index);

/// The same for the Multiboot prologue.
const unsigned char *nestdbg_multiboot_image(size_t *length);
size_t nestdbg_multiboot_symbol_count(void);
const char *nestdbg_multiboot_symbol_name(size_t index);
size_t nestdbg_multiboot_symbol_offset(size_t index);

/// The VMM-check L1 (vmmcheck.S): its bytes, run at 0x100000, and its entry's offset in them.
const unsigned char *nestdbg_vmmcheck_image(size_t *length, size_t *entry_offset);

#endif
