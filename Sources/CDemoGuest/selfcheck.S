/*
 * The self-checking L1 ("selfcheck"): an L1 SVM hypervisor whose VMRUN no
 * debugger can find in advance and which notices any change to its code.
 * It proves that a stop source neither patches L1 nor needs a VMRUN address
 * (KVM's tracepoints do neither). The VMM copies [nestdbg_selfcheck_start,
 * nestdbg_selfcheck_end) to guest-physical SC_LOAD and enters L1 in long mode
 * at nestdbg_selfcheck_l1_entry (identity-mapped first 2 MiB, CPL 0), like
 * the demo. Only relative branches and fixed addresses are used.
 *
 * Hidden VMRUN: the image holds no bytes 0F 01 D8. L1 builds its own page
 * tables (identity 2 MiB plus STUB_LINEAR -> STUB_PAGE, a 4 KiB page whose
 * linear address is not its physical one), composes the stub "vmrun; ret"
 * (0F 01 D8 C3) arithmetically, stores it at STUB_LINEAR and calls it there
 * through STUB_PTR for every VMRUN.
 *
 * Self-check: the checksum (rol 5, add each qword) over the image and the
 * whole stub page, read through STUB_LINEAR, is taken once after the stub is
 * written (REF_SUM) and again before every VMRUN and at the end (LAST_SUM,
 * CHECK_COUNT). A mismatch ends the run at once: STATUS_TAMPERED on
 * isa-debug-exit (0xF4). An exit L1 does not expect goes to the panic port.
 *
 * vmcb12 (the one setup, so every exit is predictable):
 *   intercepts[2] bit 6 (#UD); intercepts[3] bits 24 HLT, 27 IOIO_PROT,
 *   28 MSR_PROT, and NOT bit 18 CPUID; intercepts[4] bits 0 VMRUN, 1 VMMCALL.
 *   IOPM: port SC_PORT (0x80) only. MSRPM: the read bit of SC_MSR (STAR)
 *   only, its write bit clear. ASID 1, V_INTR_MASKING. Nested paging
 *   (identity 2 MiB) when CPUID 8000_000A EDX[0] offers it (kvm_amd npt=1);
 *   L2 runs in long mode on its own identity page tables either way.
 * L2 loops: OUT PASS_PORT (not in the IOPM: L0 hands it to the VMM), CPUID
 *   twice (not intercepted: L0 answers them), IN and OUT SC_PORT, RDMSR
 *   SC_MSR, UD2, HLT, VMMCALL: six exits reach L1 per iteration.
 * L1 advances L2's RIP itself (no nRIP save under TCG; IOIO exits give the
 *   next RIP in EXITINFO2), counts and logs every exit (EXIT_COUNT, EXIT_LOG)
 *   and, after iteration_limit VMMCALLs, checks once more and writes
 *   STATUS_PASSED to isa-debug-exit. iteration_limit is a quad in the image
 *   (ITERATION_LIMIT unless a writer changed it: write-image --iterations),
 *   so the checksum, taken at start, covers its value whatever it is.
 * DebuggerEngine/Images/SelfCheckImage.swift holds the same facts as data.
 */
        .intel_syntax noprefix
#include "l1_macros.h"

        .equ SC_LOAD,      0x1000
        .equ L1_PML4,      0x13000     /* L1's own page tables */
        .equ L1_PDPT,      0x14000
        .equ L1_PD,        0x15000     /* one 2 MiB page at 0: identity */
        .equ STUB_PD,      0x16000
        .equ STUB_PT,      0x17000
        .equ STUB_PAGE,    0x18000     /* physical page of the VMRUN stub */
        .equ STUB_LINEAR,  0x40000000  /* ...and its L1-linear address */
        .equ STUB_CODE,    0xC3D8010F  /* vmrun; ret */
        .equ STUB_KEY,     0x5A5A5A5A  /* keeps STUB_CODE's bytes out of the image */
        .equ VMCB12,       0x20000
        .equ HSAVE,        0x21000
        .equ IOPM,         0x22000     /* 12 KiB */
        .equ MSRPM,        0x26000     /* 8 KiB */
        .equ NPT_PML4,     0x30000
        .equ NPT_PDPT,     0x31000
        .equ NPT_PD,       0x32000
        .equ L2_PML4,      0x40000
        .equ L2_PDPT,      0x41000
        .equ L2_PD,        0x42000
        .equ L2_STACK,     0x50000
        .equ L2_GPRS,      0x70000     /* L2's GPRs while L1 runs: rbx rcx rdx rsi rdi rbp r8..r15 */
        .equ EXIT_COUNT,   0x70100     /* nested exits that reached L1 */
        .equ ITERATIONS,   0x70108     /* L2 loop iterations (VMMCALLs) */
        .equ REF_SUM,      0x70110     /* checksum taken at start */
        .equ LAST_SUM,     0x70118     /* checksum of the latest check */
        .equ CHECK_COUNT,  0x70120     /* checks made */
        .equ STUB_PTR,     0x70128     /* STUB_LINEAR, for an indirect call that spares L2's GPRs */
        .equ EXIT_LOG,     0x71000     /* exit code of each nested exit, 4 bytes each */
        .equ LOG_CAPACITY, 1024
        .equ ITERATION_LIMIT, 40
        .equ SC_PORT,      0x80        /* the one port in the IOPM */
        .equ PASS_PORT,    0xE9        /* not in the IOPM: reaches the VMM */
        .equ SC_MSR,       0xC0000081  /* STAR: reads intercepted, writes not */
        .equ DEBUG_EXIT,   0xF4
        .equ PANIC_PORT,   0xE1
        .equ STATUS_PASSED,   0
        .equ STATUS_TAMPERED, 3

        .section .rodata.nestdbg_selfcheck, "a"
        .p2align 12
        .globl nestdbg_selfcheck_start
nestdbg_selfcheck_start:
.Limage_start:

        .globl nestdbg_selfcheck_l1_entry
nestdbg_selfcheck_l1_entry:
        /* L1's own page tables: identity for the first 2 MiB, plus the stub page */
        mov qword ptr [L1_PML4], L1_PDPT | 3
        mov qword ptr [L1_PDPT], L1_PD | 3
        mov qword ptr [L1_PDPT + 8 * (STUB_LINEAR >> 30)], STUB_PD | 3
        mov qword ptr [L1_PD], 0x83
        mov qword ptr [STUB_PD + 8 * ((STUB_LINEAR >> 21) & 511)], STUB_PT | 3
        mov qword ptr [STUB_PT + 8 * ((STUB_LINEAR >> 12) & 511)], STUB_PAGE | 3
        mov eax, L1_PML4
        mov cr3, rax
        /* The stub, composed at run time */
        mov eax, STUB_CODE ^ STUB_KEY
        xor eax, STUB_KEY
        mov dword ptr [STUB_LINEAR], eax
        mov qword ptr [STUB_PTR], STUB_LINEAR
        /* The reference: the code as loaded, stub included */
        call .Lchecksum
        mov qword ptr [REF_SUM], rax
        L1_ENABLE_SVM HSAVE
        /* IOPM: SC_PORT only. MSRPM: SC_MSR's read bit only (range C000_0000 at byte 0x800, 2 bits per MSR) */
        or byte ptr [IOPM + SC_PORT / 8], 1 << (SC_PORT % 8)
        or byte ptr [MSRPM + 0x800 + ((SC_MSR & 0x1FFF) * 2) / 8], 1 << (((SC_MSR & 0x1FFF) * 2) % 8)
        /* Nested page tables and L2's own: identity for the first 2 MiB, one 2 MiB page */
        mov qword ptr [NPT_PML4], NPT_PDPT | 7
        mov qword ptr [NPT_PDPT], NPT_PD | 7
        mov qword ptr [NPT_PD], 0x87
        mov qword ptr [L2_PML4], L2_PDPT | 3
        mov qword ptr [L2_PDPT], L2_PD | 3
        mov qword ptr [L2_PD], 0x83
        /* vmcb12: controls */
        mov ebx, VMCB12
        mov dword ptr [rbx + 0x008], 1 << 6                        /* #UD */
        mov dword ptr [rbx + 0x00C], (1 << 24) | (1 << 27) | (1 << 28)  /* HLT IOIO MSR; not CPUID */
        mov dword ptr [rbx + 0x010], (1 << 0) | (1 << 1)           /* VMRUN VMMCALL */
        mov qword ptr [rbx + 0x040], IOPM
        mov qword ptr [rbx + 0x048], MSRPM
        mov dword ptr [rbx + 0x058], 1                             /* ASID */
        mov dword ptr [rbx + 0x060], 1 << 24                       /* V_INTR_MASKING */
        mov eax, 0x8000000A
        cpuid
        mov ebx, VMCB12
        test edx, 1
        jz 1f
        mov qword ptr [rbx + 0x090], 1                             /* NP_ENABLE */
        mov qword ptr [rbx + 0x0B0], NPT_PML4
1:
        /* vmcb12: L2 state, 64-bit, entered at .Ll2_entry */
        L2_LONG_MODE_STATE L2_PML4, .Ll2_entry, L2_STACK

.Ll1_loop:
        call .Lverify
        /* L2's GPRs back in place: VMRUN switches only RAX, RSP, RIP, RFLAGS */
        L2_GPRS_LOAD L2_GPRS
        mov eax, VMCB12
        call qword ptr [STUB_PTR]                                  /* vmrun at STUB_LINEAR */
        L2_GPRS_STORE L2_GPRS
        mov edi, VMCB12
        mov eax, dword ptr [rdi + 0x70]                            /* exit_code */
        mov rcx, qword ptr [EXIT_COUNT]
        cmp rcx, LOG_CAPACITY
        jae 2f
        mov dword ptr [EXIT_LOG + rcx * 4], eax
2:      inc qword ptr [EXIT_COUNT]
        cmp eax, 0x7B
        je .Lh_ioio
        cmp eax, 0x7C
        je .Lh_msr
        cmp eax, 0x46
        je .Lh_ud
        cmp eax, 0x78
        je .Lh_hlt
        cmp eax, 0x81
        je .Lh_vmmcall
        /* Anything else (a CPUID that reached L1, VMEXIT_INVALID): report and stop here. */
        .globl nestdbg_selfcheck_l1_panic
nestdbg_selfcheck_l1_panic:
.Lpanic:
        mov eax, dword ptr [VMCB12 + 0x70]
        mov edx, PANIC_PORT
        out dx, eax
3:      jmp 3b

.Lh_ioio:       /* IN gets 0x5A; OUT is swallowed. EXITINFO2 is the next RIP. */
        test byte ptr [rdi + 0x78], 1
        jz 4f
        mov byte ptr [rdi + 0x5F8], 0x5A
4:      mov rax, qword ptr [rdi + 0x80]
        mov qword ptr [rdi + 0x578], rax
        jmp .Ll1_loop
.Lh_msr:        /* RDMSR answers 0x55667788_11223344; writes are not intercepted */
        cmp qword ptr [rdi + 0x78], 0
        jne .Lpanic
        mov qword ptr [rdi + 0x5F8], 0x11223344
        mov qword ptr [L2_GPRS + 0x10], 0x55667788
        add qword ptr [rdi + 0x578], 2
        jmp .Ll1_loop
.Lh_ud:         /* L2's UD2 is skipped */
        add qword ptr [rdi + 0x578], 2
        jmp .Ll1_loop
.Lh_hlt:
        add qword ptr [rdi + 0x578], 1
        jmp .Ll1_loop
.Lh_vmmcall:    /* one L2 iteration done; after iteration_limit, the verdict */
        add qword ptr [rdi + 0x578], 3
        inc qword ptr [ITERATIONS]
        mov rax, qword ptr [ITERATIONS]
        cmp rax, qword ptr [rip + .Literation_limit]
        jb .Ll1_loop
        call .Lverify
        mov al, STATUS_PASSED
        out DEBUG_EXIT, al
5:      jmp 5b

        /* Compares the code with the reference; a mismatch ends the run. Clobbers rax rcx rsi. */
.Lverify:
        call .Lchecksum
        mov qword ptr [LAST_SUM], rax
        inc qword ptr [CHECK_COUNT]
        cmp rax, qword ptr [REF_SUM]
        jne .Ltampered
        ret
.Ltampered:
        mov al, STATUS_TAMPERED
        out DEBUG_EXIT, al
6:      jmp 6b

        /* rax = the checksum of the image and the stub page: rol 5, then add, per qword.
           Each step is a bijection of the sum, so any change to a single qword shows. */
.Lchecksum:
        xor eax, eax
        lea rsi, [rip + .Limage_start]
        lea rcx, [rip + .Limage_end]
7:      rol rax, 5
        add rax, qword ptr [rsi]
        add rsi, 8
        cmp rsi, rcx
        jb 7b
        mov esi, STUB_LINEAR
        lea rcx, [rsi + 4096]
8:      rol rax, 5
        add rax, qword ptr [rsi]
        add rsi, 8
        cmp rsi, rcx
        jb 8b
        ret

        /* ---------------- L2 ---------------- */
.Ll2_entry:
        .globl nestdbg_selfcheck_l2_entry
nestdbg_selfcheck_l2_entry:
        .globl nestdbg_selfcheck_l2_passthrough
nestdbg_selfcheck_l2_passthrough:
        out PASS_PORT, al
        xor eax, eax
        .globl nestdbg_selfcheck_l2_cpuid0
nestdbg_selfcheck_l2_cpuid0:
        cpuid
        mov eax, 1
        .globl nestdbg_selfcheck_l2_cpuid1
nestdbg_selfcheck_l2_cpuid1:
        cpuid
        .globl nestdbg_selfcheck_l2_in
nestdbg_selfcheck_l2_in:
        in al, SC_PORT
        .globl nestdbg_selfcheck_l2_out
nestdbg_selfcheck_l2_out:
        out SC_PORT, al
        mov ecx, SC_MSR
        .globl nestdbg_selfcheck_l2_rdmsr
nestdbg_selfcheck_l2_rdmsr:
        rdmsr
        .globl nestdbg_selfcheck_l2_ud
nestdbg_selfcheck_l2_ud:
        ud2
        .globl nestdbg_selfcheck_l2_hlt
nestdbg_selfcheck_l2_hlt:
        hlt
        .globl nestdbg_selfcheck_l2_vmmcall
nestdbg_selfcheck_l2_vmmcall:
        .byte 0x0F, 0x01, 0xD9                                     /* vmmcall */
        jmp .Ll2_entry

        .p2align 3      /* the checksum reads whole qwords */
        /* L2 loop iterations before the verdict: data, so that a writer can set it */
        .globl nestdbg_selfcheck_iteration_limit
nestdbg_selfcheck_iteration_limit:
.Literation_limit:
        .quad ITERATION_LIMIT
.Limage_end:
        .globl nestdbg_selfcheck_end
nestdbg_selfcheck_end:
        .section .note.GNU-stack, "", @progbits
