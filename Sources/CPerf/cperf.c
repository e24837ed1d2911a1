#include "cperf.h"
#include <errno.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef TRAP_PERF
#define TRAP_PERF 6
#endif

int cperf_open_tracepoint(int tid, uint64_t config, int sigtrap, uint64_t sig_data, int group_leader) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = config;
    attr.sample_period = 1;
    attr.sample_type = PERF_SAMPLE_RAW;
    attr.read_format = PERF_FORMAT_GROUP;
    // The leader starts disabled and enables the group; members follow it.
    attr.disabled = group_leader < 0;
    // sigtrap needs remove_on_exec; a plain sample event takes it too, so a
    // helper we exec never inherits a hook into the vCPU thread.
    attr.remove_on_exec = 1;
    attr.sigtrap = sigtrap ? 1 : 0;
    attr.sig_data = sig_data;
    int fd = (int)syscall(SYS_perf_event_open, &attr, tid, -1, group_leader, PERF_FLAG_FD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cperf_set_output(int fd, int leader) {
    return ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, leader) < 0 ? -errno : 0;
}

int cperf_enable(int fd) { return ioctl(fd, PERF_EVENT_IOC_ENABLE, PERF_IOC_FLAG_GROUP) < 0 ? -errno : 0; }
int cperf_disable(int fd) { return ioctl(fd, PERF_EVENT_IOC_DISABLE, PERF_IOC_FLAG_GROUP) < 0 ? -errno : 0; }

int cperf_read_group(int leader, uint64_t *values, int max) {
    // struct read_format with PERF_FORMAT_GROUP: u64 nr; u64 value[nr];
    uint64_t buffer[1 + 16];
    if (max > 16) max = 16;
    ssize_t n = read(leader, buffer, sizeof buffer);
    if (n < 0) return -errno;
    if (n < (ssize_t)sizeof(uint64_t)) return -EIO;
    int count = (int)buffer[0] < max ? (int)buffer[0] : max;
    for (int i = 0; i < count; i++) values[i] = buffer[1 + i];
    return count;
}

uint64_t cperf_ring_head(const void *base) {
    const struct perf_event_mmap_page *page = base;
    return __atomic_load_n(&page->data_head, __ATOMIC_ACQUIRE);
}

uint64_t cperf_ring_tail(const void *base) {
    return ((const struct perf_event_mmap_page *)base)->data_tail;
}

void cperf_ring_set_tail(void *base, uint64_t tail) {
    struct perf_event_mmap_page *page = base;
    __atomic_store_n(&page->data_tail, tail, __ATOMIC_RELEASE);
}

uint64_t cperf_ring_data_offset(const void *base) { return ((const struct perf_event_mmap_page *)base)->data_offset; }
uint64_t cperf_ring_data_size(const void *base) { return ((const struct perf_event_mmap_page *)base)->data_size; }

static _Atomic uint64_t sigtraps;

static void cperf_sigtrap_handler(int signo, siginfo_t *info, void *context) {
    (void)signo;
    (void)context;
    if (info->si_code == TRAP_PERF) atomic_fetch_add(&sigtraps, 1);
}

int cperf_install_sigtrap_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = cperf_sigtrap_handler;
    sa.sa_flags = SA_SIGINFO; // no SA_RESTART: KVM_RUN must come back with EINTR
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGTRAP, &sa, NULL) < 0 ? -errno : 0;
}

int cperf_unblock_sigtrap_in_this_thread(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTRAP);
    return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int cperf_gettid(void) { return (int)syscall(SYS_gettid); }

uint64_t cperf_sigtrap_count(void) { return atomic_load(&sigtraps); }
