/*
 * vmmcheck: a 32-bit L1 (no SVM needed) that checks what a VMM gives a
 * Multiboot test kernel, the way kvm-unit-tests' harness uses it, and
 * reports each finding on COM1 (polling the line status):
 *   the Multiboot magic, the command line, module 0's bytes, mem_upper;
 *   fw_cfg's CPU count (0x05) and RAM size (0x03, 8 bytes by REP INSB);
 *   an unclaimed port (0x5555) reading all-ones;
 *   the xAPIC: three periodic APIC timer interrupts (vector 0x40) taken
 *   through an IDT while halted;
 *   INIT/SIPI to every other CPU (trampoline copied to 0x8000, vector 8):
 *   each AP increments AP_COUNT in real mode and halts; all must check in;
 *   a self-SMI, which must come back (the VMM's SMM stub, or a firmware's);
 *   whether it was taken shows in the SMM state save area.
 * Ends with "vmmcheck: PASS" and status 0 on isa-debug-exit (0xF4), or
 * "vmmcheck: FAIL <step>" and status 1.
 *
 * Runs at VC_BASE (0x100000) with paging off, as a Multiboot loader enters
 * it; MultibootImage.vmmCheck() writes it as an ELF file. Absolute
 * references go through AT() (.set: memory operands take one symbol).
 */
        .intel_syntax noprefix

        .equ VC_BASE,     0x100000
        .equ COM1,        0x3F8
        .equ LAPIC,       0xFEE00000
        .equ IDT,         0x6000
        .equ AP_COUNT,    0x7000
        .equ TICKS,       0x7004
        .equ RAM_BUF,     0x7010
        .equ TRAMPOLINE,  0x8000
        .equ STACK_TOP,   0x80000
        .equ TIMER_VEC,   0x40

#define AT(label) (VC_BASE + ((label) - .Lvc_start))

        .section .rodata.nestdbg_vmmcheck, "a"
        .p2align 12
        .globl nestdbg_vmmcheck_start
nestdbg_vmmcheck_start:
.Lvc_start:
        .set M_CMDLINE, AT(.Lm_cmdline)
        .set M_MODULE, AT(.Lm_module)
        .set M_MEM, AT(.Lm_mem)
        .set M_CPUS, AT(.Lm_cpus)
        .set M_RAM, AT(.Lm_ram)
        .set M_PORT, AT(.Lm_port)
        .set M_TIMER, AT(.Lm_timer)
        .set M_APS, AT(.Lm_aps)
        .set M_SMI_TAKEN, AT(.Lm_smi_taken)
        .set M_SMI_DROPPED, AT(.Lm_smi_dropped)
        .set M_PASS, AT(.Lm_pass)
        .set M_FAIL, AT(.Lm_fail)
        .set IDTR_AT, AT(.Lidtr)
        .set ISR_AT, AT(.Ltimer_isr)
        .set TRAMP_AT, AT(.Ltrampoline)
        .set CPUS_AT, AT(.Lcpus)
        .set GDTR_AT, AT(.Lgdtr)
        .set TRAMP_LEN, .Ltrampoline_end - .Ltrampoline
        .code32
        .globl nestdbg_vmmcheck_entry
nestdbg_vmmcheck_entry:
        cli
        cld
        /* Multiboot leaves GDTR undefined: an interrupt gate's selector needs a real GDT */
        lgdt [GDTR_AT]
        .byte 0xEA                                  /* jmp far 0x08:.Lflat */
        .long AT(.Lflat)
        .word 0x08
.Lflat:
        mov ecx, 0x10
        mov ds, cx
        mov es, cx
        mov ss, cx
        mov fs, cx
        mov gs, cx
        mov esp, STACK_TOP
        mov edi, '0'                    /* the failing step's digit */
        cmp eax, 0x2BADB002
        jne .Lfail
        mov ebp, ebx

        /* 1: the command line (flags bit 2) */
        mov edi, '1'
        test dword ptr [ebp], 4
        jz .Lfail
        lea esi, [M_CMDLINE]
        call .Lputs
        mov esi, [ebp + 16]
        call .Lputs
        call .Lnewline

        /* 2: module 0 (flags bit 3), its bytes as text */
        mov edi, '2'
        test dword ptr [ebp], 8
        jz .Lfail
        cmp dword ptr [ebp + 20], 1
        jb .Lfail
        lea esi, [M_MODULE]
        call .Lputs
        mov ebx, [ebp + 24]
        mov esi, [ebx]
        mov ecx, [ebx + 4]
        sub ecx, esi
        jz .Lno_bytes
.Lmodule_byte:
        lodsb
        call .Lputc
        loop .Lmodule_byte
.Lno_bytes:
        call .Lnewline

        /* mem_upper (KiB above 1 MiB) */
        lea esi, [M_MEM]
        call .Lputs
        mov eax, [ebp + 8]
        call .Lputhex
        call .Lnewline

        /* 3: fw_cfg: the CPU count, the RAM size */
        mov edi, '3'
        mov dx, 0x510
        mov ax, 0x05
        out dx, ax
        mov dx, 0x511
        in al, dx
        movzx ecx, al
        in al, dx
        movzx eax, al
        shl eax, 8
        or eax, ecx
        mov [CPUS_AT], eax
        test eax, eax
        jz .Lfail
        lea esi, [M_CPUS]
        call .Lputs
        mov eax, [CPUS_AT]
        call .Lputhex
        call .Lnewline
        mov dx, 0x510
        mov ax, 0x03
        out dx, ax
        mov dx, 0x511
        mov edi, RAM_BUF
        mov ecx, 8
        rep insb
        mov edi, '3'
        lea esi, [M_RAM]
        call .Lputs
        mov eax, [RAM_BUF + 4]
        call .Lputhex
        mov eax, [RAM_BUF]
        call .Lputhex
        call .Lnewline

        /* 4: a port nobody emulates reads all-ones */
        mov edi, '4'
        mov dx, 0x5555
        in eax, dx
        cmp eax, 0xFFFFFFFF
        jne .Lfail
        lea esi, [M_PORT]
        call .Lputs

        /* 5: the APIC timer, periodic, three interrupts taken while halted */
        mov edi, '5'
        mov ax, cs
        movzx ebx, ax
        shl ebx, 16
        mov eax, offset ISR_AT
        mov bx, ax                        /* gate low: selector | offset 15:0 */
        mov dword ptr [IDT + TIMER_VEC * 8], ebx
        and eax, 0xFFFF0000
        or eax, 0x8E00                    /* present, DPL 0, 32-bit interrupt gate */
        mov dword ptr [IDT + TIMER_VEC * 8 + 4], eax
        lidt [IDTR_AT]
        mov dword ptr [TICKS], 0
        mov dword ptr [LAPIC + 0xF0], 0x1FF       /* software-enable, spurious vector 0xFF */
        mov dword ptr [LAPIC + 0x3E0], 0xB        /* divide by 1 */
        mov dword ptr [LAPIC + 0x320], 0x20000 | TIMER_VEC   /* periodic */
        mov dword ptr [LAPIC + 0x380], 1000000
.Lwait_ticks:
        sti
        hlt
        jmp .Lwait_ticks
.Lticked:
        cmp dword ptr [TICKS], 3
        jb .Lwait_ticks
        mov dword ptr [LAPIC + 0x380], 0
        mov dword ptr [LAPIC + 0x320], 0x10000 | TIMER_VEC   /* masked */
        lea esi, [M_TIMER]
        call .Lputs

        /* 6: INIT/SIPI to all the others; each checks in */
        mov edi, '6'
        mov esi, offset TRAMP_AT
        mov edi, TRAMPOLINE
        mov ecx, offset TRAMP_LEN
        rep movsb
        mov edi, '6'
        mov dword ptr [AP_COUNT], 0
        mov dword ptr [LAPIC + 0x310], 0
        mov dword ptr [LAPIC + 0x300], 0xC4500    /* all but self, INIT, assert */
        mov dword ptr [LAPIC + 0x300], 0xC4600 | (TRAMPOLINE >> 12)   /* all but self, SIPI */
        mov ecx, [CPUS_AT]
        dec ecx
        mov ebx, 200000000
.Lwait_aps:
        cmp [AP_COUNT], ecx
        jae .Laps_in
        pause
        dec ebx
        jnz .Lwait_aps
        jmp .Lfail
.Laps_in:
        lea esi, [M_APS]
        call .Lputs
        mov eax, [AP_COUNT]
        call .Lputhex
        call .Lnewline

        /* 7: a self-SMI comes back; the state save area says whether it was taken
           (SMBASE 0x30000 written there: 0x3FF00 in the AMD64 layout, 0x3FEF8 in the 32-bit one).
           A KVM without SMM drops it. */
        mov edi, '7'
        mov dword ptr [LAPIC + 0x300], 0x40200    /* self, SMI */
        nop
        lea esi, [M_SMI_TAKEN]
        cmp dword ptr [0x3FF00], 0x30000
        je .Lsmi_said
        cmp dword ptr [0x3FEF8], 0x30000
        je .Lsmi_said
        lea esi, [M_SMI_DROPPED]
.Lsmi_said:
        call .Lputs

        lea esi, [M_PASS]
        call .Lputs
        xor eax, eax
        jmp .Lexit
.Lfail:
        lea esi, [M_FAIL]
        call .Lputs
        mov eax, edi
        call .Lputc
        call .Lnewline
        mov eax, 1
.Lexit:
        mov dx, 0xF4
        out dx, eax
.Lhang:
        cli
        hlt
        jmp .Lhang

/* putc: AL to COM1 once the transmitter holding register is empty (LSR bit 5) */
.Lputc:
        push edx
        push eax
        mov dx, COM1 + 5
.Lputc_wait:
        in al, dx
        test al, 0x20
        jz .Lputc_wait
        pop eax
        mov dx, COM1
        out dx, al
        pop edx
        ret
/* puts: the NUL-terminated string at ESI */
.Lputs:
        push eax
.Lputs_next:
        lodsb
        test al, al
        jz .Lputs_done
        call .Lputc
        jmp .Lputs_next
.Lputs_done:
        pop eax
        ret
.Lnewline:
        mov al, 10
        jmp .Lputc
/* puthex: EAX as 8 hex digits */
.Lputhex:
        push ecx
        push edx
        mov edx, eax
        mov ecx, 8
.Lputhex_digit:
        rol edx, 4
        mov eax, edx
        and eax, 0xF
        add eax, '0'
        cmp eax, '9'
        jbe .Lputhex_out
        add eax, 'a' - '9' - 1
.Lputhex_out:
        call .Lputc
        loop .Lputhex_digit
        pop edx
        pop ecx
        ret

/* The timer's handler. It does not return with IRET: it drops the frame
   and goes on at .Lticked with IF still clear (the gate cleared it). Some
   KVMs cannot run a 32-bit IRET (this project's CI host: kvm_pvm emulates
   it and fails), and returning into the HLT loop needs nothing it gives. */
.Ltimer_isr:
        lock inc dword ptr [TICKS]
        mov dword ptr [LAPIC + 0xB0], 0           /* EOI */
        add esp, 12                               /* EIP, CS, EFLAGS */
        jmp .Lticked

/* An AP after SIPI: real mode at TRAMPOLINE (CS 0x0800, IP 0) */
        .code16
.Ltrampoline:
        xor ax, ax
        mov ds, ax
        lock inc dword ptr ds:[AP_COUNT]
.Lap_halt:
        cli
        hlt
        jmp .Lap_halt
.Ltrampoline_end:
        .code32

        .p2align 3
.Lgdt:
        .quad 0
        .quad 0x00CF9A000000FFFF                    /* 0x08: flat 32-bit code */
        .quad 0x00CF92000000FFFF                    /* 0x10: flat data */
.Lgdtr:
        .word 3 * 8 - 1
        .long AT(.Lgdt)
.Lidtr:
        .word TIMER_VEC * 8 + 7
        .long IDT
.Lcpus:
        .long 0
.Lm_cmdline: .asciz "cmdline: "
.Lm_module:  .asciz "module: "
.Lm_mem:     .asciz "mem_upper KiB: "
.Lm_cpus:    .asciz "fw_cfg cpus: "
.Lm_ram:     .asciz "fw_cfg ram: "
.Lm_port:    .asciz "unclaimed port 0x5555 reads ffffffff\n"
.Lm_timer:   .asciz "apic timer: 3 interrupts\n"
.Lm_aps:     .asciz "aps online: "
.Lm_smi_taken:   .asciz "smi: taken (state saved at SMBASE 0x30000) and returned\n"
.Lm_smi_dropped: .asciz "smi: not taken (no SMM in this KVM)\n"
.Lm_pass:    .asciz "vmmcheck: PASS\n"
.Lm_fail:    .asciz "vmmcheck: FAIL at step "
        .p2align 4
        .globl nestdbg_vmmcheck_end
nestdbg_vmmcheck_end:
        .section .note.GNU-stack, "", @progbits
