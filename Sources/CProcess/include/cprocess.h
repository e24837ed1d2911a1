// The C side of ProcessControl: ptrace(2) is variadic (Swift cannot call it),
// waitpid's status macros are macros, and x86-64's user_regs_struct is
// handed across as a flat array of 27 words in its kernel order.
#ifndef CPROCESS_H
#define CPROCESS_H

#include <stdint.h>
#include <sys/types.h>

/// The words of `struct user_regs_struct` (x86-64), in order.
enum {
    CPROC_R15, CPROC_R14, CPROC_R13, CPROC_R12, CPROC_RBP, CPROC_RBX, CPROC_R11, CPROC_R10,
    CPROC_R9, CPROC_R8, CPROC_RAX, CPROC_RCX, CPROC_RDX, CPROC_RSI, CPROC_RDI, CPROC_ORIG_RAX,
    CPROC_RIP, CPROC_CS, CPROC_EFLAGS, CPROC_RSP, CPROC_SS, CPROC_FS_BASE, CPROC_GS_BASE,
    CPROC_DS, CPROC_ES, CPROC_FS, CPROC_GS, CPROC_REG_COUNT
};

/// PTRACE_SEIZE with options (never PTRACE_O_EXITKILL). 0 or -errno.
int cproc_seize(pid_t tid, unsigned long options);
/// PTRACE_INTERRUPT: a seized thread stops (PTRACE_EVENT_STOP). 0 or -errno.
int cproc_interrupt(pid_t tid);
/// PTRACE_CONT / PTRACE_SYSCALL / PTRACE_DETACH with a signal to deliver (0: none). 0 or -errno.
int cproc_cont(pid_t tid, int signal);
int cproc_syscall(pid_t tid, int signal);
int cproc_detach(pid_t tid, int signal);
/// PTRACE_GETREGS / PTRACE_SETREGS through CPROC_REG_COUNT words. 0 or -errno.
int cproc_get_regs(pid_t tid, uint64_t *words);
int cproc_set_regs(pid_t tid, const uint64_t *words);
/// PTRACE_GETSIGINFO: the signal's number, si_code, sender pid and si_value (sival_ptr). 0 or -errno.
int cproc_get_siginfo(pid_t tid, int *signo, int *code, pid_t *sender, uint64_t *value);
/// PTRACE_GETSIGMASK / PTRACE_SETSIGMASK (the kernel's 64-bit mask). 0 or -errno.
int cproc_get_sigmask(pid_t tid, uint64_t *mask);
int cproc_set_sigmask(pid_t tid, uint64_t mask);
/// PTRACE_GETEVENTMSG. 0 or -errno.
int cproc_get_event_message(pid_t tid, unsigned long *message);
/// PTRACE_PEEKDATA of one word. 0 or -errno.
int cproc_peek(pid_t tid, uint64_t address, uint64_t *word);

/// waitpid(tid, &status, __WALL), retried on EINTR. The thread id that
/// changed state, or -errno; `status` is the raw wait status.
pid_t cproc_wait(pid_t tid, int *status);
/// The same without blocking (WNOHANG): 0 when nothing changed.
pid_t cproc_wait_nohang(pid_t tid, int *status);

/// Decoded wait status.
int cproc_exited(int status);       // WIFEXITED
int cproc_exit_status(int status);  // WEXITSTATUS
int cproc_signaled(int status);     // WIFSIGNALED
int cproc_term_signal(int status);  // WTERMSIG
int cproc_stopped(int status);      // WIFSTOPPED
int cproc_stop_signal(int status);  // WSTOPSIG
int cproc_event(int status);        // status >> 16 (PTRACE_EVENT_*)

/// rt_tgsigqueueinfo(tgid, tid, signal) with si_code SI_QUEUE and sival_ptr
/// `value`: a signal its receiver can tell apart from any other. 0 or -errno.
int cproc_queue_signal(pid_t tgid, pid_t tid, int signal, uint64_t value);
/// tgkill(2). 0 or -errno.
int cproc_tgkill(pid_t tgid, pid_t tid, int signal);

/// process_vm_readv / process_vm_writev of one range. Bytes moved, or -errno.
long cproc_read_memory(pid_t pid, uint64_t remote, void *local, size_t length);
long cproc_write_memory(pid_t pid, uint64_t remote, const void *local, size_t length);

/// Constants Swift cannot import from macros.
enum {
    CPROC_O_TRACESYSGOOD = 1, CPROC_O_TRACEEXIT = 0x40,
    CPROC_EVENT_EXIT = 6, CPROC_EVENT_STOP = 128,
    CPROC_SYS_IOCTL = 16, CPROC_SYS_RT_SIGACTION = 13,
    CPROC_TRAP_PERF = 6, CPROC_SI_QUEUE = -1, CPROC_SI_TKILL = -6,
};

#endif
