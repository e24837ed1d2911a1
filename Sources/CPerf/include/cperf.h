// The C side of KernelTrace: perf_event_open(2) has no libc wrapper, its
// attribute struct has bitfields, and the ring buffer's head and tail need
// the memory barriers the perf ABI prescribes.
#ifndef CPERF_H
#define CPERF_H

#include <stdint.h>

/// Opens a counting and sampling event on tracepoint `config` (its id in
/// tracefs) for thread `tid` only: every firing is one sample (period 1)
/// carrying the tracepoint's raw fields. With `sigtrap`, each firing also
/// sends the thread a synchronous SIGTRAP (si_code TRAP_PERF, si_perf_data
/// `sig_data`); the event goes away at exec, as the kernel requires for it.
/// The event starts disabled. With `group_leader` -1 it leads a group whose
/// counts one read returns (PERF_FORMAT_GROUP); else it joins that group.
/// Returns the fd, or -errno.
int cperf_open_tracepoint(int tid, uint64_t config, int sigtrap, uint64_t sig_data, int group_leader);

/// PERF_EVENT_IOC_SET_OUTPUT: `fd`'s samples go into `leader`'s ring. -errno on failure.
int cperf_set_output(int fd, int leader);
/// PERF_EVENT_IOC_ENABLE / _DISABLE of a whole group, through its leader. -errno on failure.
int cperf_enable(int fd);
int cperf_disable(int fd);
/// The counts of a group (at most 16 events), leader first, in one read(2):
/// fills up to `max` values and returns how many, or -errno.
int cperf_read_group(int leader, uint64_t *values, int max);

/// The ring's data_head (load-acquire) and data_tail (store-release), at
/// the metadata page `base`.
uint64_t cperf_ring_head(const void *base);
uint64_t cperf_ring_tail(const void *base);
void cperf_ring_set_tail(void *base, uint64_t tail);
/// data_offset and data_size of the metadata page (kernel 4.1+).
uint64_t cperf_ring_data_offset(const void *base);
uint64_t cperf_ring_data_size(const void *base);

/// Installs a SIGTRAP handler (no SA_RESTART, so KVM_RUN returns EINTR) that
/// counts TRAP_PERF deliveries. The default action would kill the process.
int cperf_install_sigtrap_handler(void);
/// Unblocks SIGTRAP in the calling thread (pool threads may block it; a
/// blocked SIGTRAP would never interrupt KVM_RUN). -errno on failure.
int cperf_unblock_sigtrap_in_this_thread(void);
/// The calling thread's kernel id (what perf binds an event to).
int cperf_gettid(void);
/// TRAP_PERF signals delivered to this process since start (any thread).
uint64_t cperf_sigtrap_count(void);

/// PERF_RECORD_SAMPLE, for the ring parser (other records are skipped).
enum { CPERF_RECORD_SAMPLE = 9 };

#endif
