#define _GNU_SOURCE
#include "cprocess.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static int result(long r) { return r < 0 ? -errno : 0; }

int cproc_seize(pid_t tid, unsigned long options) { return result(ptrace(PTRACE_SEIZE, tid, 0, (void *)options)); }
int cproc_interrupt(pid_t tid) { return result(ptrace(PTRACE_INTERRUPT, tid, 0, 0)); }
int cproc_cont(pid_t tid, int signal) { return result(ptrace(PTRACE_CONT, tid, 0, (void *)(long)signal)); }
int cproc_syscall(pid_t tid, int signal) { return result(ptrace(PTRACE_SYSCALL, tid, 0, (void *)(long)signal)); }
int cproc_detach(pid_t tid, int signal) { return result(ptrace(PTRACE_DETACH, tid, 0, (void *)(long)signal)); }

_Static_assert(sizeof(struct user_regs_struct) == CPROC_REG_COUNT * 8, "user_regs_struct is 27 words");

int cproc_get_regs(pid_t tid, uint64_t *words) {
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0) return -errno;
    memcpy(words, &regs, sizeof regs);
    return 0;
}

int cproc_set_regs(pid_t tid, const uint64_t *words) {
    struct user_regs_struct regs;
    memcpy(&regs, words, sizeof regs);
    return result(ptrace(PTRACE_SETREGS, tid, 0, &regs));
}

int cproc_get_siginfo(pid_t tid, int *signo, int *code, pid_t *sender, uint64_t *value) {
    siginfo_t info;
    if (ptrace(PTRACE_GETSIGINFO, tid, 0, &info) < 0) return -errno;
    *signo = info.si_signo;
    *code = info.si_code;
    *sender = info.si_pid;
    *value = (uint64_t)(uintptr_t)info.si_value.sival_ptr;
    return 0;
}

int cproc_get_sigmask(pid_t tid, uint64_t *mask) { return result(ptrace(PTRACE_GETSIGMASK, tid, (void *)8, mask)); }
int cproc_set_sigmask(pid_t tid, uint64_t mask) { return result(ptrace(PTRACE_SETSIGMASK, tid, (void *)8, &mask)); }
int cproc_get_event_message(pid_t tid, unsigned long *message) { return result(ptrace(PTRACE_GETEVENTMSG, tid, 0, message)); }

int cproc_peek(pid_t tid, uint64_t address, uint64_t *word) {
    errno = 0;
    long v = ptrace(PTRACE_PEEKDATA, tid, (void *)address, 0);
    if (errno != 0) return -errno;
    *word = (uint64_t)v;
    return 0;
}

pid_t cproc_wait(pid_t tid, int *status) {
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL);
        if (r >= 0) return r;
        if (errno != EINTR) return -errno;
    }
}

pid_t cproc_wait_nohang(pid_t tid, int *status) {
    pid_t r = waitpid(tid, status, __WALL | WNOHANG);
    return r < 0 ? -errno : r;
}

int cproc_exited(int status) { return WIFEXITED(status); }
int cproc_exit_status(int status) { return WEXITSTATUS(status); }
int cproc_signaled(int status) { return WIFSIGNALED(status); }
int cproc_term_signal(int status) { return WTERMSIG(status); }
int cproc_stopped(int status) { return WIFSTOPPED(status); }
int cproc_stop_signal(int status) { return WSTOPSIG(status); }
int cproc_event(int status) { return status >> 16; }

int cproc_queue_signal(pid_t tgid, pid_t tid, int signal, uint64_t value) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = signal;
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_ptr = (void *)(uintptr_t)value;
    return result(syscall(SYS_rt_tgsigqueueinfo, tgid, tid, signal, &info));
}

int cproc_tgkill(pid_t tgid, pid_t tid, int signal) { return result(syscall(SYS_tgkill, tgid, tid, signal)); }

long cproc_read_memory(pid_t pid, uint64_t remote, void *local, size_t length) {
    struct iovec l = {local, length}, r = {(void *)(uintptr_t)remote, length};
    ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}

long cproc_write_memory(pid_t pid, uint64_t remote, const void *local, size_t length) {
    struct iovec l = {(void *)local, length}, r = {(void *)(uintptr_t)remote, length};
    ssize_t n = process_vm_writev(pid, &l, 1, &r, 1, 0);
    return n < 0 ? -errno : n;
}
