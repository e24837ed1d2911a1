/*
 * The Multiboot prologue: 32-bit code that turns a Multiboot v1 start into
 * the long-mode start nestdbg's own VMM gives a built-in L1
 * (OwnVMTarget.longModeL1), so that one ELF file (MultibootImage.swift
 * writes it) runs the same L1 under QEMU's -kernel and under nestdbg's
 * --image loader.
 *
 * Layout, fixed: the prologue runs at MB_BASE (0x100000, its quad
 * load_address says so to the writer); its boot page tables follow its code
 * inside it; the payload (the L1's image) starts at the prologue's end
 * (nestdbg_multiboot_end), in the same ELF segment. The writer patches the
 * quads payload_destination, payload_length, payload_entry, zero_start,
 * zero_end and stack_top.
 *
 * Entered as Multiboot v1 says: 32-bit protected mode, paging off, flat
 * segments, GDTR and ESP unknown, EAX/EBX the loader's. It loads its own
 * GDT, zeroes [zero_start, zero_end) (QEMU leaves SeaBIOS's data and its
 * Multiboot information below 1 MiB, nestdbg's VM has zeros: now both have
 * zeros), copies the payload, enables PAE, EFER.LME and paging on an
 * identity-mapped first 2 MiB, and enters the payload in 64-bit mode with
 * what the own VMM sets: CS 0x08, data 0x10, CR0 0x80000011, CR4 PAE, EFER
 * LME|LMA, RSP stack_top, RFLAGS 2, every other GPR 0, GDTR and IDTR at
 * KVM's reset value (base 0, limit 0xFFFF). The L1 sees its boot tables
 * here rather than at 0x10000, and the prologue's bytes at MB_BASE.
 * No bytes 0F 01 D8 (a VMRUN) anywhere: the scan for VMRUN sites finds none.
 */
        .intel_syntax noprefix

        .equ MB_BASE,       0x100000
        .equ SEL_CODE64,    0x08        /* the own VMM's selectors */
        .equ SEL_DATA,      0x10
        .equ SEL_CODE32,    0x18
        .equ CR0_LONG,      0x80000011  /* PG ET PE */
        .equ CR4_PAE,       0x20
        .equ MSR_EFER,      0xC0000080
        .equ EFER_LME,      0x100
        .equ RFLAGS_RESET,  2           /* only the always-one bit */

/* Where a label of the prologue runs: its code is not position-independent in 32-bit mode.
   (Memory operands take one symbol: the 32-bit code names these through .set.) */
#define AT(label) (MB_BASE + ((label) - .Lstart))

        .section .rodata.nestdbg_multiboot, "a"
        .p2align 12
        .globl nestdbg_multiboot_start
nestdbg_multiboot_start:
.Lstart:
        .set GDTR_AT, AT(.Lgdtr)
        .set ZERO_START_AT, AT(.Lzero_start)
        .set ZERO_END_AT, AT(.Lzero_end)
        .set END_AT, AT(.Lend)
        .set PAYLOAD_DESTINATION_AT, AT(.Lpayload_destination)
        .set PAYLOAD_LENGTH_AT, AT(.Lpayload_length)
        .set PML4_AT, AT(.Lpml4)
        .code32
        .globl nestdbg_multiboot_entry
nestdbg_multiboot_entry:
        cli
        cld
        lgdt [GDTR_AT]
        .byte 0xEA                                                  /* jmp far SEL_CODE32:.Lflat */
        .long AT(.Lflat)
        .word SEL_CODE32
.Lflat:
        mov eax, SEL_DATA
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov fs, ax
        mov gs, ax
        /* The L1's memory to zeros, then its image in place */
        mov edi, dword ptr [ZERO_START_AT]
        mov ecx, dword ptr [ZERO_END_AT]
        sub ecx, edi
        xor eax, eax
        rep stosb
        lea esi, [END_AT]
        mov edi, dword ptr [PAYLOAD_DESTINATION_AT]
        mov ecx, dword ptr [PAYLOAD_LENGTH_AT]
        rep movsb
        /* Long mode, with the exact control register values of the own VMM's start */
        mov eax, CR4_PAE
        mov cr4, eax
        lea eax, [PML4_AT]
        mov cr3, eax
        mov ecx, MSR_EFER
        mov eax, EFER_LME
        xor edx, edx
        wrmsr
        mov eax, CR0_LONG
        mov cr0, eax
        .byte 0xEA                                                  /* jmp far SEL_CODE64:long_mode */
        .long AT(.Llong_mode)
        .word SEL_CODE64

        .code64
        .globl nestdbg_multiboot_long_mode
nestdbg_multiboot_long_mode:
.Llong_mode:
        mov eax, SEL_DATA
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov fs, ax
        mov gs, ax
        /* The segment caches are loaded: the tables' registers go to KVM's reset value, as in the own VM */
        lgdt [rip + .Lreset_table]
        lidt [rip + .Lreset_table]
        mov rsp, qword ptr [rip + .Lstack_top]
        xor eax, eax
        xor ebx, ebx
        xor ecx, ecx
        xor edx, edx
        xor esi, esi
        xor edi, edi
        xor ebp, ebp
        xor r8d, r8d
        xor r9d, r9d
        xor r10d, r10d
        xor r11d, r11d
        xor r12d, r12d
        xor r13d, r13d
        xor r14d, r14d
        xor r15d, r15d
        /* Flags last (the XORs set ZF and PF); the stack slot back to zero with a MOV, which keeps them */
        push RFLAGS_RESET
        popfq
        mov qword ptr [rsp - 8], 0
        jmp qword ptr [rip + .Lpayload_entry]

        .p2align 3
.Lgdt:
        .quad 0
        .quad 0x00AF9B000000FFFF                                    /* 0x08: 64-bit code, accessed (no write to the GDT) */
        .quad 0x00CF93000000FFFF                                    /* 0x10: flat data */
        .quad 0x00CF9B000000FFFF                                    /* 0x18: flat 32-bit code */
.Lgdt_end:
        .p2align 3
        .word 0, 0, 0                                               /* .Lgdtr's base 4-aligned */
.Lgdtr:
        .word .Lgdt_end - .Lgdt - 1
        .long AT(.Lgdt)
        .p2align 3
        .word 0, 0, 0
.Lreset_table:
        .word 0xFFFF
        .quad 0

        /* The writer's quads: where the prologue finds its image, where it starts it */
        .p2align 3
        .globl nestdbg_multiboot_load_address
nestdbg_multiboot_load_address:
        .quad MB_BASE                                               /* read by the writer, never patched */
        .globl nestdbg_multiboot_payload_destination
nestdbg_multiboot_payload_destination:
.Lpayload_destination:
        .quad 0
        .globl nestdbg_multiboot_payload_length
nestdbg_multiboot_payload_length:
.Lpayload_length:
        .quad 0
        .globl nestdbg_multiboot_payload_entry
nestdbg_multiboot_payload_entry:
.Lpayload_entry:
        .quad 0
        .globl nestdbg_multiboot_zero_start
nestdbg_multiboot_zero_start:
.Lzero_start:
        .quad 0
        .globl nestdbg_multiboot_zero_end
nestdbg_multiboot_zero_end:
.Lzero_end:
        .quad 0
        .globl nestdbg_multiboot_stack_top
nestdbg_multiboot_stack_top:
.Lstack_top:
        .quad 0

        /* Boot page tables, part of the image so both loaders place them: identity 2 MiB, one page */
        .p2align 12
.Lpml4:
        .quad AT(.Lpdpt) + 3
        .p2align 12
.Lpdpt:
        .quad AT(.Lpd) + 3
        .p2align 12
.Lpd:
        .quad 0x83
        .p2align 12
.Lend:
        .globl nestdbg_multiboot_end
nestdbg_multiboot_end:
        .section .note.GNU-stack, "", @progbits
