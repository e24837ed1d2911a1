#include "ckvm.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

// The reference (kvm-nested-svm.md §8) records these ABI facts; the build
// fails if the system header disagrees with it.
_Static_assert(KVM_API_VERSION == 12, "KVM API version");
_Static_assert(sizeof(struct kvm_regs) == 144, "kvm_regs size");
_Static_assert(sizeof(struct kvm_sregs) == 312, "kvm_sregs size");
_Static_assert(sizeof(struct kvm_sregs2) == 320, "kvm_sregs2 size");
_Static_assert(offsetof(struct kvm_sregs2, pdptrs) == 288, "kvm_sregs2.pdptrs");
_Static_assert(sizeof(struct kvm_guest_debug) == 72, "kvm_guest_debug size");
_Static_assert(sizeof(struct kvm_debugregs) == 128, "kvm_debugregs size");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events size");
_Static_assert(sizeof(struct kvm_nested_state) == 128, "kvm_nested_state header");
_Static_assert(sizeof(struct kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2 size");
_Static_assert(sizeof(struct kvm_userspace_memory_region) == 32, "memory region size");
_Static_assert(offsetof(struct kvm_run, exit_reason) == 8, "kvm_run.exit_reason");
_Static_assert(offsetof(struct kvm_run, flags) == 14, "kvm_run.flags");
_Static_assert(offsetof(struct kvm_run, io) == 32, "kvm_run exit union");
_Static_assert(offsetof(struct kvm_run, debug.arch.pc) == 40, "kvm_run.debug.arch.pc");
_Static_assert(KVM_GET_NESTED_STATE == 0xC080AEBEul, "KVM_GET_NESTED_STATE");
_Static_assert(KVM_SET_NESTED_STATE == 0x4080AEBFul, "KVM_SET_NESTED_STATE");
_Static_assert(KVM_GET_SREGS2 == 0x8140AECCul, "KVM_GET_SREGS2");
_Static_assert(KVM_SET_GUEST_DEBUG == 0x4048AE9Bul, "KVM_SET_GUEST_DEBUG");
_Static_assert(KVM_GET_REGS == 0x8090AE81ul, "KVM_GET_REGS");
_Static_assert(KVM_CAP_NESTED_STATE == 157, "KVM_CAP_NESTED_STATE");

int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg) {
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg) {
    int r = ioctl(fd, request, arg);
    return r < 0 ? -errno : r;
}

static void ckvm_kick_handler(int signo) { (void)signo; }

int ckvm_install_kick_handler(int signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ckvm_kick_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must come back with EINTR
    return sigaction(signo, &sa, NULL) < 0 ? -errno : 0;
}

int ckvm_unblock_in_this_thread(int signo) {
    static __thread int unblocked;
    if (unblocked) return 0;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    int r = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    if (r == 0) unblocked = 1;
    return -r;
}

int ckvm_gettid(void) { return (int)syscall(SYS_gettid); }

size_t ckvm_offsetof_run_exit_union(void) { return offsetof(struct kvm_run, io); }
size_t ckvm_offsetof_run_flags(void) { return offsetof(struct kvm_run, flags); }
size_t ckvm_offsetof_run_io_port(void) { return offsetof(struct kvm_run, io.port); }
size_t ckvm_offsetof_run_debug_pc(void) { return offsetof(struct kvm_run, debug.arch.pc); }
size_t ckvm_offsetof_nested_state_vmcb_pa(void) { return offsetof(struct kvm_nested_state, hdr.svm.vmcb_pa); }
size_t ckvm_offsetof_nested_state_data(void) { return offsetof(struct kvm_nested_state, data); }
size_t ckvm_offsetof_sregs2_pdptrs(void) { return offsetof(struct kvm_sregs2, pdptrs); }
