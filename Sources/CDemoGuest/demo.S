/*
 * The built-in demo: a tiny L1 SVM hypervisor and its L2 guest, 64-bit code
 * assembled by the toolchain into the nestdbg binary as data. The VMM copies
 * the bytes [nestdbg_demo_start, nestdbg_demo_end) to guest-physical
 * DEMO_LOAD and enters L1 in long mode at nestdbg_demo_l1_entry.
 *
 * Only relative branches and fixed addresses (.equ) are used, so the image
 * runs wherever DEMO_LOAD says without relocation.
 *
 * L1 enables EFER.SVME, writes VM_HSAVE_PA, builds the IOPM, MSRPM, nested
 * page tables and vmcb12, then loops: VMRUN, save L2's GPRs, handle the exit,
 * restore L2's GPRs. With NPT (CPUID 8000_000A EDX[0]) L2 runs on nested
 * paging and NPF_PAGE is missing from the NPT (a nested page fault); without
 * it (kvm_amd npt=0) NPF_PAGE is missing from L2's own page table and L1
 * intercepts #PF instead. Either way L1 maps the page on demand and unmaps it
 * at L2's VMMCALL. It advances L2's RIP itself (no nRIP save under TCG):
 * IOIO exits carry the next RIP in EXITINFO2; the other instructions' lengths
 * are known. L2 loops through one exit of each kind.
 */
        .intel_syntax noprefix
#include "l1_macros.h"

        .equ DEMO_LOAD,   0x1000
        .equ VMCB12,      0x20000
        .equ HSAVE,       0x21000
        .equ IOPM,        0x22000      /* 12 KiB */
        .equ MSRPM,       0x26000      /* 8 KiB */
        .equ NPT_PML4,    0x30000
        .equ NPT_PDPT,    0x31000
        .equ NPT_PD,      0x32000
        .equ NPT_PT,      0x33000      /* 4 KiB pages for L2's first 2 MiB */
        .equ L2_PML4,     0x40000      /* L2's own page tables (L2-physical = L1-physical) */
        .equ L2_PDPT,     0x41000
        .equ L2_PD,       0x42000
        .equ L2_PT,       0x43000      /* 4 KiB pages for L2's first 2 MiB */
        .equ L2_STACK,    0x50000
        .equ NPF_PAGE,    0x60000      /* left out of the NPT until L2 touches it */
        .equ L2_GPRS,     0x70000      /* L2's GPRs while L1 runs: rbx rcx rdx rsi rdi rbp r8..r15 */
        .equ EXIT_COUNT,  0x70100      /* nested exits handled by L1 */
        .equ L2_COUNT,    0x70108      /* L2 loop iterations */
        .equ WRMSR_VALUE, 0x70110      /* what L2 last wrote to the emulated MSR */
        .equ DEMO_MSR,    0xC0000081   /* STAR: intercepted for read and write through the MSRPM */
        .equ PANIC_PORT,  0xE1         /* L1 reports an exit it cannot handle */
        .equ L1_PML4,     0x10000      /* L1's boot tables (the VMM writes them) */
        .equ EV_GDT,      0x44000      /* the events scenario: L2's GDT and IDT */
        .equ EV_IDT,      0x45000
        .equ TM_IDT,      0x46000      /* the timer scenario: L1's own IDT */
        .equ TM_TICKS,    0x70118      /* timer interrupts L1 took (a tick can come twice in one STGI window) */
        .equ TM_ROUNDS,   5            /* INTR #VMEXITs before L1 ends the run */
        .equ PAE_PDPT,    0x10000      /* the PAE scenario: CR3, four PDPTEs */
        .equ PAE_PD_A,    0x13000      /* PDPTE[1] (linear 1-2 GiB) points at one or the other */
        .equ PAE_PD_B,    0x14000

        .section .rodata.nestdbg_demo, "a"
        .p2align 12
        .globl nestdbg_demo_start
nestdbg_demo_start:

        .globl nestdbg_demo_l1_entry
nestdbg_demo_l1_entry:
        L1_ENABLE_SVM HSAVE
        /* IOPM: intercept ports 0x60 and 0x80 (one bit per port) */
        or byte ptr [IOPM + 0x60 / 8], 1 << (0x60 % 8)
        or byte ptr [IOPM + 0x80 / 8], 1 << (0x80 % 8)
        /* MSRPM: read and write of DEMO_MSR (range C000_0000 at byte 0x800, 2 bits per MSR) */
        or byte ptr [MSRPM + 0x800 + (0x81 * 2) / 8], 3 << ((0x81 * 2) % 8)
        /* Nested page tables: identity for L2's first 2 MiB, 4 KiB pages, all but NPF_PAGE */
        mov qword ptr [NPT_PML4], NPT_PDPT | 7
        mov qword ptr [NPT_PDPT], NPT_PD | 7
        mov qword ptr [NPT_PD], NPT_PT | 7
        xor ecx, ecx
1:      mov rax, rcx
        shl rax, 12
        or rax, 7
        mov qword ptr [NPT_PT + rcx * 8], rax
        inc ecx
        cmp ecx, 512
        jne 1b
        /* L2's page tables: identity for the first 2 MiB, 4 KiB pages */
        mov qword ptr [L2_PML4], L2_PDPT | 3
        mov qword ptr [L2_PDPT], L2_PD | 3
        mov qword ptr [L2_PD], L2_PT | 3
        xor ecx, ecx
1:      mov rax, rcx
        shl rax, 12
        or rax, 3
        mov qword ptr [L2_PT + rcx * 8], rax
        inc ecx
        cmp ecx, 512
        jne 1b
        /* vmcb12: controls */
        mov ebx, VMCB12
        mov dword ptr [rbx + 0x000], 1 << 20                       /* CR4 write */
        mov dword ptr [rbx + 0x008], 1 << 6                        /* #UD */
        mov dword ptr [rbx + 0x00C], (1 << 18) | (1 << 24) | (1 << 27) | (1 << 28)  /* CPUID HLT IOIO MSR */
        mov dword ptr [rbx + 0x010], (1 << 0) | (1 << 1)           /* VMRUN VMMCALL */
        mov qword ptr [rbx + 0x040], IOPM
        mov qword ptr [rbx + 0x048], MSRPM
        mov dword ptr [rbx + 0x058], 1                             /* ASID */
        mov byte ptr [rbx + 0x05C], 1                              /* TLB_CONTROL: flush all (L1 edits page tables) */
        mov dword ptr [rbx + 0x060], 1 << 24                       /* V_INTR_MASKING */
        /* Nested paging if the CPU (L0) offers it, else #PF intercepts on L2's own tables */
        mov eax, 0x8000000A
        cpuid
        mov ebx, VMCB12
        test edx, 1
        jz 2f
        mov qword ptr [rbx + 0x090], 1                             /* NP_ENABLE */
        mov qword ptr [rbx + 0x0B0], NPT_PML4
        mov qword ptr [NPT_PT + (NPF_PAGE >> 12) * 8], 0
        jmp 3f
2:      or dword ptr [rbx + 0x008], 1 << 14                        /* intercept #PF */
        mov qword ptr [L2_PT + (NPF_PAGE >> 12) * 8], 0
3:
        /* vmcb12: L2 state, 64-bit, entered at .Ll2_entry */
        L2_LONG_MODE_STATE L2_PML4, .Ll2_entry, L2_STACK

l1_loop:
        /* L2's GPRs back in place: VMRUN switches only RAX, RSP, RIP, RFLAGS */
        L2_GPRS_LOAD L2_GPRS
        mov eax, VMCB12
        .globl nestdbg_demo_vmrun
nestdbg_demo_vmrun:
        .byte 0x0F, 0x01, 0xD8                                     /* vmrun */
        .globl nestdbg_demo_after_vmrun
nestdbg_demo_after_vmrun:
        L2_GPRS_STORE L2_GPRS
        inc qword ptr [EXIT_COUNT]
        mov edi, VMCB12
        mov eax, dword ptr [rdi + 0x70]                            /* exit_code */
        cmp eax, 0x72
        je h_cpuid
        cmp eax, 0x7B
        je h_ioio
        cmp eax, 0x7C
        je h_msr
        cmp eax, 0x46
        je h_ud
        cmp eax, 0x400
        je h_npf
        cmp eax, 0x4E
        je h_pf
        cmp eax, 0x14
        je h_cr4
        cmp eax, 0x78
        je h_hlt
        cmp eax, 0x81
        je h_vmmcall
        /* Anything else (VMEXIT_INVALID included): report and stop here. */
        mov edx, PANIC_PORT
        out dx, eax
2:      jmp 2b

        .globl nestdbg_demo_h_cpuid
nestdbg_demo_h_cpuid:
h_cpuid:        /* execute CPUID for L2 with its EAX/ECX, hand back all four */
        mov eax, dword ptr [rdi + 0x5F8]
        mov ecx, dword ptr [L2_GPRS + 0x08]
        cpuid
        mov qword ptr [rdi + 0x5F8], rax
        mov qword ptr [L2_GPRS + 0x00], rbx
        mov qword ptr [L2_GPRS + 0x08], rcx
        mov qword ptr [L2_GPRS + 0x10], rdx
        add qword ptr [rdi + 0x578], 2
        jmp l1_loop
h_ioio:         /* IN gets 0x5A; OUT is swallowed. EXITINFO2 is the next RIP. */
        test byte ptr [rdi + 0x78], 1
        jz 3f
        mov byte ptr [rdi + 0x5F8], 0x5A
3:      mov rax, qword ptr [rdi + 0x80]
        mov qword ptr [rdi + 0x578], rax
        jmp l1_loop
h_msr:          /* RDMSR answers 0x55667788_11223344; WRMSR is remembered */
        cmp qword ptr [rdi + 0x78], 0
        jne 4f
        mov qword ptr [rdi + 0x5F8], 0x11223344
        mov qword ptr [L2_GPRS + 0x10], 0x55667788
        jmp 5f
4:      mov eax, dword ptr [rdi + 0x5F8]
        mov edx, dword ptr [L2_GPRS + 0x10]
        mov dword ptr [WRMSR_VALUE], eax
        mov dword ptr [WRMSR_VALUE + 4], edx
5:      add qword ptr [rdi + 0x578], 2
        jmp l1_loop
h_ud:           /* L2's UD2 is skipped */
        add qword ptr [rdi + 0x578], 2
        jmp l1_loop
h_npf:          /* map the faulting page and retry the instruction */
        mov rax, qword ptr [rdi + 0x80]
        shr rax, 12
        and eax, 511
        mov rcx, qword ptr [rdi + 0x80]
        and rcx, -4096
        or rcx, 7
        mov qword ptr [NPT_PT + rax * 8], rcx
        jmp l1_loop
h_pf:           /* L2's own page table lacks the page: map it there and retry */
        mov rax, qword ptr [rdi + 0x80]
        shr rax, 12
        and eax, 511
        mov rcx, qword ptr [rdi + 0x80]
        and rcx, -4096
        or rcx, 3
        mov qword ptr [L2_PT + rax * 8], rcx
        jmp l1_loop
h_cr4:          /* L2's MOV CR4, RAX: take the value from L2's RAX */
        mov rax, qword ptr [rdi + 0x5F8]
        mov qword ptr [rdi + 0x548], rax
        add qword ptr [rdi + 0x578], 3
        jmp l1_loop
h_hlt:
        add qword ptr [rdi + 0x578], 1
        jmp l1_loop
h_vmmcall:      /* unmap NPF_PAGE again, so the next round faults once more */
        test qword ptr [rdi + 0x090], 1
        jz 4f
        mov qword ptr [NPT_PT + (NPF_PAGE >> 12) * 8], 0
        jmp 5f
4:      mov qword ptr [L2_PT + (NPF_PAGE >> 12) * 8], 0
5:
        add qword ptr [rdi + 0x578], 3
        jmp l1_loop

        /* ---------------- L2 ---------------- */
        .globl nestdbg_demo_l2_entry
nestdbg_demo_l2_entry:
.Ll2_entry:
        mov eax, 1
        .globl nestdbg_demo_l2_cpuid
nestdbg_demo_l2_cpuid:
        cpuid
        .globl nestdbg_demo_l2_in
nestdbg_demo_l2_in:
        in al, 0x60
        .globl nestdbg_demo_l2_out
nestdbg_demo_l2_out:
        out 0x80, al
        mov ecx, DEMO_MSR
        .globl nestdbg_demo_l2_rdmsr
nestdbg_demo_l2_rdmsr:
        rdmsr
        .globl nestdbg_demo_l2_wrmsr
nestdbg_demo_l2_wrmsr:
        wrmsr
        .globl nestdbg_demo_l2_ud
nestdbg_demo_l2_ud:
        ud2
        .globl nestdbg_demo_l2_npf
nestdbg_demo_l2_npf:
        mov al, byte ptr [NPF_PAGE]
        mov rax, cr4
        .globl nestdbg_demo_l2_cr4
nestdbg_demo_l2_cr4:
        mov cr4, rax
        .globl nestdbg_demo_l2_hlt
nestdbg_demo_l2_hlt:
        hlt
        .globl nestdbg_demo_l2_vmmcall
nestdbg_demo_l2_vmmcall:
        .byte 0x0F, 0x01, 0xD9                                     /* vmmcall */
        inc qword ptr [L2_COUNT]
        mov eax, 0x4C32                                            /* "L2" */
        .globl nestdbg_demo_l2_passthrough
nestdbg_demo_l2_passthrough:
        out 0xE9, al                                               /* not in the IOPM: reaches the VMM */
        jmp .Ll2_entry

        /* ------- the events scenario: injected and pending events around VMRUN -------
         * A 64-bit L1 without nested paging (L2 shares L1's page tables) whose
         * every round injects #UD into L2 through EVENTINJ and leaves a virtual
         * interrupt pending (V_IRQ, VINTR intercepted) while L2 runs with IF=0.
         * L2's #UD handler makes a VMMCALL (L1 sees L2 inside the handler), L2
         * then exits to the VMM with V_IRQ pending (OUT 0xE9), enables
         * interrupts (VINTR #VMEXIT: L1 takes V_IRQ back) and halts (the round
         * ends). Losing the event or the pending interrupt on the way through a
         * save and restore changes the next #VMEXIT. */
        .globl nestdbg_demo_events_entry
nestdbg_demo_events_entry:
        L1_ENABLE_SVM HSAVE
        mov rax, 0x00AF9A000000FFFF                                /* L2's GDT: 0x08 64-bit code */
        mov qword ptr [EV_GDT + 8], rax
        mov rax, 0x00CF92000000FFFF                                /*           0x10 data */
        mov qword ptr [EV_GDT + 16], rax
        lea rax, [rip + .Lev_ud_handler]                           /* L2's IDT: #UD and vector 0x30 */
        mov edi, EV_IDT + 6 * 16
        call .Lev_gate
        lea rax, [rip + .Lev_vintr_handler]
        mov edi, EV_IDT + 0x30 * 16
        call .Lev_gate
        mov ebx, VMCB12
        mov dword ptr [rbx + 0x00C], (1 << 4) | (1 << 24)          /* VINTR HLT */
        mov dword ptr [rbx + 0x010], (1 << 0) | (1 << 1)           /* VMRUN VMMCALL */
        mov qword ptr [rbx + 0x040], IOPM
        mov qword ptr [rbx + 0x048], MSRPM
        mov dword ptr [rbx + 0x058], 1                             /* ASID */
        L2_LONG_MODE_STATE L1_PML4, .Lev_l2_entry, L2_STACK
        mov dword ptr [rbx + 0x464], 23                            /* gdtr */
        mov qword ptr [rbx + 0x468], EV_GDT
        mov dword ptr [rbx + 0x484], 0x30 * 16 + 15                /* idtr */
        mov qword ptr [rbx + 0x488], EV_IDT
.Lev_round:
        mov dword ptr [rbx + 0x0A8], (1 << 31) | (3 << 8) | 6      /* EVENTINJ: valid, exception, #UD */
        mov dword ptr [rbx + 0x060], (1 << 24) | (0xF << 16) | (1 << 8)  /* V_INTR_MASKING, priority 15, V_IRQ */
        mov dword ptr [rbx + 0x064], 0x30                          /* the virtual interrupt's vector */
.Lev_loop:
        mov eax, VMCB12
        .globl nestdbg_demo_events_vmrun
nestdbg_demo_events_vmrun:
        .byte 0x0F, 0x01, 0xD8                                     /* vmrun */
        mov ebx, VMCB12
        mov dword ptr [rbx + 0x0A8], 0                             /* delivered: not again */
        inc qword ptr [EXIT_COUNT]
        mov eax, dword ptr [rbx + 0x70]
        cmp eax, 0x81
        je .Lev_vmmcall
        cmp eax, 0x64
        je .Lev_vintr
        cmp eax, 0x78
        je .Lev_hlt
        mov edx, PANIC_PORT
        out dx, eax
2:      jmp 2b
.Lev_vmmcall:                                                      /* from L2's #UD handler */
        add qword ptr [rbx + 0x578], 3
        jmp .Lev_loop
.Lev_vintr:                                                        /* L2 enabled interrupts: L1 takes V_IRQ back */
        and dword ptr [rbx + 0x060], ~(1 << 8)
        jmp .Lev_loop
.Lev_hlt:                                                          /* the round is over: L2 starts again, IF=0 */
        lea rax, [rip + .Lev_l2_entry]
        mov qword ptr [rbx + 0x578], rax
        mov qword ptr [rbx + 0x570], 2
        jmp .Lev_round
.Lev_gate:                                                         /* 64-bit interrupt gate at rdi for handler rax */
        mov word ptr [rdi], ax
        mov word ptr [rdi + 2], 0x08
        mov word ptr [rdi + 4], 0x8E00
        shr rax, 16
        mov word ptr [rdi + 6], ax
        shr rax, 16
        mov dword ptr [rdi + 8], eax
        mov dword ptr [rdi + 12], 0
        ret
.Lev_l2_entry:
        .globl nestdbg_demo_events_l2_out
nestdbg_demo_events_l2_out:
        out 0xE9, al                                               /* to the VMM, in L2, V_IRQ pending */
        sti
        nop                                                        /* VINTR #VMEXIT */
        cli
        hlt                                                        /* HLT #VMEXIT: the round ends */
.Lev_ud_handler:
        .globl nestdbg_demo_events_l2_ud_handler
nestdbg_demo_events_l2_ud_handler:
        .byte 0x0F, 0x01, 0xD9                                     /* vmmcall */
        iretq
.Lev_vintr_handler:
        iretq

        /* ------- the timer scenario: an L2 interrupted by L1's APIC timer -------
         * A 64-bit L1 (the VMM gives this scenario the in-kernel LAPIC) puts
         * its LAPIC in x2APIC mode (MSRs, no MMIO mapping needed) with a
         * periodic timer on vector 0x40, intercepts physical interrupts (INTR)
         * and runs L2 with V_INTR_MASKING, L2 spinning with IF=1. L1 keeps
         * IF=1 and lets GIF hold interrupts off: each tick is an INTR #VMEXIT;
         * L1 opens GIF (STGI) to take the interrupt through its own IDT (the
         * handler counts it, EOIs, IRETQ), closes it and re-enters L2. After
         * TM_ROUNDS INTR #VMEXITs (EXIT_COUNT; the ticks may be more when the
         * vCPU stood still at a stop) it stops the timer, says so on COM1 and
         * ends with status 0 on isa-debug-exit. */
        .globl nestdbg_demo_timer_entry
nestdbg_demo_timer_entry:
        L1_ENABLE_SVM HSAVE
        mov rax, 0x00AF9A000000FFFF                                /* a GDT for the gate: 0x08 64-bit code */
        mov qword ptr [EV_GDT + 8], rax
        mov rax, 0x00CF92000000FFFF                                /*                     0x10 data */
        mov qword ptr [EV_GDT + 16], rax
        lgdt [rip + .Ltm_gdtr]
        lea rax, [rip + .Ltm_isr]
        mov edi, TM_IDT + 0x40 * 16
        call .Lev_gate
        lidt [rip + .Ltm_idtr]
        mov ecx, 0x1B                                              /* APIC_BASE: enable, x2APIC */
        rdmsr
        or eax, (1 << 11) | (1 << 10)
        wrmsr
        mov ecx, 0x80F                                             /* SVR: software-enable */
        mov eax, 0x1FF
        xor edx, edx
        wrmsr
        mov ecx, 0x83E                                             /* divide by 1 */
        mov eax, 0xB
        wrmsr
        mov ecx, 0x832                                             /* LVT timer: periodic, vector 0x40 */
        mov eax, 0x20040
        wrmsr
        mov ebx, VMCB12
        mov dword ptr [rbx + 0x00C], 1                             /* INTR */
        mov dword ptr [rbx + 0x010], (1 << 0) | (1 << 1)           /* VMRUN VMMCALL */
        mov qword ptr [rbx + 0x040], IOPM
        mov qword ptr [rbx + 0x048], MSRPM
        mov dword ptr [rbx + 0x058], 1                             /* ASID */
        mov dword ptr [rbx + 0x060], 1 << 24                       /* V_INTR_MASKING */
        L2_LONG_MODE_STATE L1_PML4, .Ltm_l2, L2_STACK
        mov qword ptr [rbx + 0x570], 0x202                         /* L2's RFLAGS: IF */
        clgi
        sti                                                        /* IF=1 for good; GIF gates L1 */
        mov ecx, 0x838                                             /* initial count: the timer runs */
        mov eax, 1000000
        xor edx, edx
        wrmsr
.Ltm_loop:
        mov eax, VMCB12
        .globl nestdbg_demo_timer_vmrun
nestdbg_demo_timer_vmrun:
        .byte 0x0F, 0x01, 0xD8                                     /* vmrun */
        mov ebx, VMCB12
        inc qword ptr [EXIT_COUNT]
        mov eax, dword ptr [rbx + 0x70]
        cmp eax, 0x60
        je .Ltm_intr
        mov edx, PANIC_PORT
        out dx, eax
3:      jmp 3b
.Ltm_intr:
        stgi                                                       /* the pending tick reaches L1 here */
        nop
        clgi
        cmp qword ptr [EXIT_COUNT], TM_ROUNDS
        jb .Ltm_loop
        mov ecx, 0x838                                             /* stop the timer */
        xor eax, eax
        xor edx, edx
        wrmsr
        lea rsi, [rip + .Ltm_message]
        mov edx, 0x3F8
4:      lodsb
        test al, al
        jz 5f
        out dx, al
        jmp 4b
5:      mov edx, 0xF4
        xor eax, eax
        out dx, eax
6:      cli
        hlt
        jmp 6b
.Ltm_isr:
        inc qword ptr [TM_TICKS]
        push rax
        push rcx
        push rdx
        mov ecx, 0x80B                                             /* EOI */
        xor eax, eax
        xor edx, edx
        wrmsr
        pop rdx
        pop rcx
        pop rax
        iretq
        .globl nestdbg_demo_timer_l2
nestdbg_demo_timer_l2:
.Ltm_l2:
        pause
        jmp .Ltm_l2
.Ltm_gdtr:
        .word 23
        .quad EV_GDT
.Ltm_idtr:
        .word 0x40 * 16 + 15
        .quad TM_IDT
.Ltm_message:
        .asciz "timer: 5 INTR #VMEXITs from L2, each tick taken by L1\n"

        /* ------- the legacy-paging scenario: a 32-bit L1 (PSE or PAE paging) -------
         * L2 runs without nested paging on L1's own page tables and loops on
         * CPUID. The VMM picks PSE or PAE by how it sets up L1's paging. */
        .code32
        .globl nestdbg_demo_l1_32_entry
nestdbg_demo_l1_32_entry:
        mov ecx, 0xC0000080
        rdmsr
        or eax, 0x1000
        wrmsr
        mov ecx, 0xC0010117
        mov eax, HSAVE
        xor edx, edx
        wrmsr
        mov ebx, VMCB12
        mov dword ptr [ebx + 0x00C], 1 << 18                       /* CPUID */
        mov dword ptr [ebx + 0x010], 1                             /* VMRUN */
        mov dword ptr [ebx + 0x040], IOPM
        mov dword ptr [ebx + 0x048], MSRPM
        mov dword ptr [ebx + 0x058], 1
        mov dword ptr [ebx + 0x060], 1 << 24
        mov word ptr [ebx + 0x410], 0x08                           /* cs: 32-bit code */
        mov word ptr [ebx + 0x412], 0xC9B
        mov dword ptr [ebx + 0x414], 0xFFFFFFFF
        mov word ptr [ebx + 0x420], 0x10                           /* ss */
        mov word ptr [ebx + 0x422], 0xC93
        mov dword ptr [ebx + 0x424], 0xFFFFFFFF
        mov word ptr [ebx + 0x430], 0x10                           /* ds */
        mov word ptr [ebx + 0x432], 0xC93
        mov dword ptr [ebx + 0x434], 0xFFFFFFFF
        mov dword ptr [ebx + 0x4D0], 0x1000                        /* EFER.SVME */
        mov eax, cr4                                               /* L2 pages like L1 */
        mov dword ptr [ebx + 0x548], eax
        mov eax, cr3
        mov dword ptr [ebx + 0x550], eax
        mov eax, cr0
        mov dword ptr [ebx + 0x558], eax
        mov dword ptr [ebx + 0x560], 0x400
        mov dword ptr [ebx + 0x568], 0xFFFF0FF0
        mov dword ptr [ebx + 0x570], 2
        call .Ll1_32_continue                  /* pushes the address of L2's code, which follows */
.Ll2_32:
        mov eax, cr4
        test eax, 0x20
        mov eax, 0
        jz 1f
        /* PAE: point PDPTE[1] in memory at the other page directory. The CPU
         * keeps using the PDPTR it loaded at VMRUN, so the read below still goes
         * through the old one, whose page holds another marker: L1 sees the
         * marker in RAX at the CPUID exit. A restore that reloads the PDPTRs
         * from memory (KVM_SET_SREGS, no PDPTRs) reads the other marker. */
        xor dword ptr [PAE_PDPT + 8], PAE_PD_A ^ PAE_PD_B
        .globl nestdbg_demo_l2_32_out
nestdbg_demo_l2_32_out:
        out 0xE9, al                                               /* not intercepted: to the VMM, in L2 */
        mov eax, dword ptr [0x40000000]
1:
        .globl nestdbg_demo_l2_32_cpuid
nestdbg_demo_l2_32_cpuid:
        cpuid
        jmp .Ll2_32
.Ll1_32_continue:
        pop eax
        mov dword ptr [ebx + 0x578], eax
        mov dword ptr [ebx + 0x5D8], L2_STACK
.Ll1_32_loop:
        mov eax, VMCB12
        .globl nestdbg_demo_vmrun32
nestdbg_demo_vmrun32:
        .byte 0x0F, 0x01, 0xD8                                     /* vmrun */
        inc dword ptr [EXIT_COUNT]
        cmp dword ptr [VMCB12 + 0x70], 0x72
        jne 7f
        add dword ptr [VMCB12 + 0x578], 2
        jmp .Ll1_32_loop
7:      mov eax, dword ptr [VMCB12 + 0x70]
        mov edx, PANIC_PORT
        out dx, eax
8:      jmp 8b
        .code64

        .globl nestdbg_demo_end
nestdbg_demo_end:
        .section .note.GNU-stack, "", @progbits
