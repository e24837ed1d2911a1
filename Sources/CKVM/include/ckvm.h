// The C side of KVMControl: ioctl request numbers (function-like macros Swift
// cannot import), a non-variadic ioctl, and the kick signal handler.
// Structs (kvm_regs, kvm_run, kvm_nested_state, ...) come straight from the
// system's <linux/kvm.h>, so their layout is never re-typed by hand.
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

// Newer than the 6.1 uapi headers Debian 12 ships; values are ABI.
#ifndef KVM_CAP_X86_GUEST_MODE
#define KVM_CAP_X86_GUEST_MODE 238
#endif
#ifndef KVM_RUN_X86_GUEST_MODE
#define KVM_RUN_X86_GUEST_MODE (1 << 2)
#endif

static const unsigned long CKVM_GET_API_VERSION = KVM_GET_API_VERSION;
static const unsigned long CKVM_CREATE_VM = KVM_CREATE_VM;
static const unsigned long CKVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
static const unsigned long CKVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
static const unsigned long CKVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
static const unsigned long CKVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
static const unsigned long CKVM_CREATE_VCPU = KVM_CREATE_VCPU;
static const unsigned long CKVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
static const unsigned long CKVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
static const unsigned long CKVM_RUN = KVM_RUN;
static const unsigned long CKVM_GET_REGS = KVM_GET_REGS;
static const unsigned long CKVM_SET_REGS = KVM_SET_REGS;
static const unsigned long CKVM_GET_SREGS = KVM_GET_SREGS;
static const unsigned long CKVM_SET_SREGS = KVM_SET_SREGS;
static const unsigned long CKVM_GET_SREGS2 = KVM_GET_SREGS2;
static const unsigned long CKVM_SET_SREGS2 = KVM_SET_SREGS2;
static const unsigned long CKVM_GET_MSRS = KVM_GET_MSRS;
static const unsigned long CKVM_SET_MSRS = KVM_SET_MSRS;
static const unsigned long CKVM_SET_CPUID2 = KVM_SET_CPUID2;
static const unsigned long CKVM_GET_CPUID2 = KVM_GET_CPUID2;
static const unsigned long CKVM_GET_MP_STATE = KVM_GET_MP_STATE;
static const unsigned long CKVM_SET_MP_STATE = KVM_SET_MP_STATE;
static const unsigned long CKVM_SET_GUEST_DEBUG = KVM_SET_GUEST_DEBUG;
static const unsigned long CKVM_GET_VCPU_EVENTS = KVM_GET_VCPU_EVENTS;
static const unsigned long CKVM_SET_VCPU_EVENTS = KVM_SET_VCPU_EVENTS;
static const unsigned long CKVM_GET_DEBUGREGS = KVM_GET_DEBUGREGS;
static const unsigned long CKVM_SET_DEBUGREGS = KVM_SET_DEBUGREGS;
static const unsigned long CKVM_GET_NESTED_STATE = KVM_GET_NESTED_STATE;
static const unsigned long CKVM_SET_NESTED_STATE = KVM_SET_NESTED_STATE;
static const unsigned long CKVM_TRANSLATE = KVM_TRANSLATE;
// The rest of a vCPU's state, for saving and restoring it as a migrating VMM does.
static const unsigned long CKVM_GET_XSAVE = KVM_GET_XSAVE;
static const unsigned long CKVM_GET_XSAVE2 = KVM_GET_XSAVE2;
static const unsigned long CKVM_SET_XSAVE = KVM_SET_XSAVE;
static const unsigned long CKVM_GET_XCRS = KVM_GET_XCRS;
static const unsigned long CKVM_SET_XCRS = KVM_SET_XCRS;
static const unsigned long CKVM_GET_LAPIC = KVM_GET_LAPIC;
static const unsigned long CKVM_SET_LAPIC = KVM_SET_LAPIC;
static const unsigned long CKVM_GET_TSC_KHZ = KVM_GET_TSC_KHZ;
static const unsigned long CKVM_SET_TSC_KHZ = KVM_SET_TSC_KHZ;

static const int CKVM_CAP_X86_GUEST_MODE = KVM_CAP_X86_GUEST_MODE;
static const unsigned int CKVM_RUN_X86_GUEST_MODE = KVM_RUN_X86_GUEST_MODE;

/// ioctl(2) with a pointer argument; returns -errno on failure so callers
/// never race on the thread-local errno.
int ckvm_ioctl_ptr(int fd, unsigned long request, void *arg);
/// ioctl(2) with an integer argument; returns -errno on failure.
int ckvm_ioctl_int(int fd, unsigned long request, unsigned long arg);

/// Installs an empty handler (without SA_RESTART) for `signo`, so a signal
/// sent to a thread blocked in KVM_RUN makes the ioctl return EINTR.
int ckvm_install_kick_handler(int signo);

/// Unblocks `signo` in the calling thread (once per thread). Threads made by
/// libdispatch or the Swift concurrency pool block signals, and a blocked kick
/// would never reach KVM_RUN.
int ckvm_unblock_in_this_thread(int signo);

/// The calling thread's kernel id (what tracepoints call common_pid).
int ckvm_gettid(void);

/// Offsets and sizes of the uapi structs, for the layout tests (computed by
/// the C compiler from the system header, compared there with the reference).
size_t ckvm_offsetof_run_exit_union(void);
size_t ckvm_offsetof_run_flags(void);
size_t ckvm_offsetof_run_io_port(void);
size_t ckvm_offsetof_run_debug_pc(void);
size_t ckvm_offsetof_nested_state_vmcb_pa(void);
size_t ckvm_offsetof_nested_state_data(void);
size_t ckvm_offsetof_sregs2_pdptrs(void);

#endif
