/*
 * Building blocks the built-in L1s (demo.S, selfcheck.S) share: GNU as
 * macros in Intel syntax, pulled in by the C preprocessor after
 * `.intel_syntax noprefix`.
 */

/* EFER.SVME, and VM_HSAVE_PA = hsave (KVM wants both before a VMRUN). Clobbers eax, ecx, edx. */
.macro L1_ENABLE_SVM hsave
        mov ecx, 0xC0000080                                        /* EFER */
        rdmsr
        or eax, 0x1000                                             /* SVME */
        wrmsr
        mov ecx, 0xC0010117                                        /* VM_HSAVE_PA */
        mov eax, \hsave
        xor edx, edx
        wrmsr
.endm

/*
 * vmcb12 at rbx: L2's state for 64-bit mode, flat segments, paging on the
 * tables at cr3, entered at the label `entry` (L1 runs identity-mapped, so
 * the label's address is L2-physical too) with RSP = stack. Clobbers rax.
 */
.macro L2_LONG_MODE_STATE cr3, entry, stack
        mov word ptr [rbx + 0x410], 0x08                           /* cs */
        mov word ptr [rbx + 0x412], 0x29B
        mov dword ptr [rbx + 0x414], 0xFFFFFFFF
        mov word ptr [rbx + 0x400], 0x10                           /* es */
        mov word ptr [rbx + 0x402], 0xC93
        mov dword ptr [rbx + 0x404], 0xFFFFFFFF
        mov word ptr [rbx + 0x420], 0x10                           /* ss */
        mov word ptr [rbx + 0x422], 0xC93
        mov dword ptr [rbx + 0x424], 0xFFFFFFFF
        mov word ptr [rbx + 0x430], 0x10                           /* ds */
        mov word ptr [rbx + 0x432], 0xC93
        mov dword ptr [rbx + 0x434], 0xFFFFFFFF
        mov qword ptr [rbx + 0x4D0], 0x1500                        /* EFER: LME LMA SVME */
        mov qword ptr [rbx + 0x548], 0x20                          /* CR4: PAE */
        mov qword ptr [rbx + 0x550], \cr3                          /* CR3 */
        mov eax, 0x80000011                                        /* CR0: PG ET PE */
        mov qword ptr [rbx + 0x558], rax
        mov qword ptr [rbx + 0x560], 0x400                         /* DR7 */
        mov eax, 0xFFFF0FF0                                        /* DR6 */
        mov qword ptr [rbx + 0x568], rax
        mov qword ptr [rbx + 0x570], 2                             /* RFLAGS */
        lea rax, [rip + \entry]
        mov qword ptr [rbx + 0x578], rax                           /* RIP */
        mov qword ptr [rbx + 0x5D8], \stack                        /* RSP */
        mov rax, 0x0007040600070406
        mov qword ptr [rbx + 0x668], rax                           /* g_pat */
.endm

/* L2's GPRs that VMRUN does not switch (all but RAX and RSP), from / to the save area at `area`. */
.macro L2_GPRS_LOAD area
        mov rbx, qword ptr [\area + 0x00]
        mov rcx, qword ptr [\area + 0x08]
        mov rdx, qword ptr [\area + 0x10]
        mov rsi, qword ptr [\area + 0x18]
        mov rdi, qword ptr [\area + 0x20]
        mov rbp, qword ptr [\area + 0x28]
        mov r8,  qword ptr [\area + 0x30]
        mov r9,  qword ptr [\area + 0x38]
        mov r10, qword ptr [\area + 0x40]
        mov r11, qword ptr [\area + 0x48]
        mov r12, qword ptr [\area + 0x50]
        mov r13, qword ptr [\area + 0x58]
        mov r14, qword ptr [\area + 0x60]
        mov r15, qword ptr [\area + 0x68]
.endm

.macro L2_GPRS_STORE area
        mov qword ptr [\area + 0x00], rbx
        mov qword ptr [\area + 0x08], rcx
        mov qword ptr [\area + 0x10], rdx
        mov qword ptr [\area + 0x18], rsi
        mov qword ptr [\area + 0x20], rdi
        mov qword ptr [\area + 0x28], rbp
        mov qword ptr [\area + 0x30], r8
        mov qword ptr [\area + 0x38], r9
        mov qword ptr [\area + 0x40], r10
        mov qword ptr [\area + 0x48], r11
        mov qword ptr [\area + 0x50], r12
        mov qword ptr [\area + 0x58], r13
        mov qword ptr [\area + 0x60], r14
        mov qword ptr [\area + 0x68], r15
.endm
