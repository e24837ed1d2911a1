import CKVM
import Glibc
import Synchronization

/// The signal a kick sends to the thread inside `KVM_RUN`.
private let kickSignal = SIGUSR2
private let installKickHandler: Void = { _ = ckvm_install_kick_handler(kickSignal) }()

/// A virtual CPU: its fd and `kvm_run` mapping, one typed method per ioctl.
///
/// All methods but `kick()` belong to the thread that runs the vCPU (KVM
/// serialises vCPU ioctls on the vCPU mutex anyway); `kick()` may be called
/// from any thread.
public final class VCPU: VCPUIoctls, @unchecked Sendable {
    public let vm: VirtualMachine
    public let id: UInt32
    let fd: Int32
    private let shared: UnsafeMutablePointer<kvm_run>
    private let mmapSize: Int
    /// The thread inside KVM_RUN, for kick(); guarded by the mutex.
    private let runningThread = Mutex<pthread_t?>(nil)
    /// Answers to KVM_CHECK_EXTENSION this vCPU needs on hot paths, asked once.
    public let hasSREGS2: Bool
    public let nestedStateMaxSize: Int
    public let reportsGuestMode: Bool

    init(vm: VirtualMachine, fd: Int32, id: UInt32) throws {
        self.vm = vm
        self.fd = fd
        self.id = id
        mmapSize = vm.system.vcpuMmapSize
        guard let p = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw KVMError.system(call: "mmap(kvm_run)", errno: errno)
        }
        shared = p.bindMemory(to: kvm_run.self, capacity: 1)
        hasSREGS2 = (try? vm.checkExtension(.sregs2)) ?? 0 > 0
        nestedStateMaxSize = (try? vm.checkExtension(.nestedState)) ?? 0
        reportsGuestMode = (try? vm.checkExtension(.x86GuestMode)) ?? 0 > 0
        installKickHandler
    }

    deinit {
        // Unmap kvm_run before closing the fd: a live mapping keeps the VM
        // from being destroyed (sandbox notes).
        munmap(UnsafeMutableRawPointer(shared), mmapSize)
        close(fd)
    }

    // MARK: Running

    /// `KVM_RUN` until the next exit to userspace.
    public func run() throws -> VCPUExit {
        let unblock = ckvm_unblock_in_this_thread(kickSignal)
        if unblock < 0 { throw KVMError.system(call: "pthread_sigmask(SIG_UNBLOCK)", errno: -unblock) }
        runningThread.withLock { $0 = pthread_self() }
        let r = ckvm_ioctl_int(fd, CKVM_RUN, 0)
        runningThread.withLock { $0 = nil }
        if r == -EINTR || (r >= 0 && shared.pointee.exit_reason == UInt32(KVM_EXIT_INTR)) {
            // The kick (or a stray signal) was delivered: clear it so the next run proceeds.
            shared.pointee.immediate_exit = 0
            return .interrupted
        }
        if r < 0 { throw KVMError.ioctl(name: "KVM_RUN", errno: -r) }
        return decodeExit()
    }

    /// Finishes the instruction of the last I/O or MMIO exit without entering
    /// the guest. KVM completes it (RIP past the OUT, the IN's data in place)
    /// only at the next KVM_RUN; one with `immediate_exit` set does that and
    /// returns EINTR. A VMM does this before it saves the vCPU (QEMU re-enters
    /// KVM with a self-kick): saved before it, the instruction runs twice.
    public func completePendingExit() throws {
        let reason = Int32(shared.pointee.exit_reason)
        guard reason == KVM_EXIT_IO || reason == KVM_EXIT_MMIO else { return }
        shared.pointee.immediate_exit = 1
        defer { shared.pointee.immediate_exit = 0 }
        let r = ckvm_ioctl_int(fd, CKVM_RUN, 0)
        if r < 0, r != -EINTR {
            throw KVMError.ioctl(name: "KVM_RUN (immediate_exit, completing the last I/O)", errno: -r)
        }
    }

    /// Makes a `run()` in progress on another thread return `.interrupted`
    /// promptly, or the next `run()` if none is in progress. Thread-safe.
    public func kick() {
        shared.pointee.immediate_exit = 1
        runningThread.withLock { thread in
            if let thread { pthread_kill(thread, kickSignal) }
        }
    }

    /// The kernel id of the calling thread (tracepoints filter on it as common_pid).
    public static func currentThreadID() -> Int32 { ckvm_gettid() }

    /// `kvm_run.flags` of the last exit (guest mode on 6.10+).
    public var lastRunFlags: RunFlags { RunFlags(rawValue: shared.pointee.flags) }

    /// Supplies the data of an `in` exit; KVM hands it to the guest on the next run.
    public func completeIn(_ bytes: [UInt8]) throws {
        guard shared.pointee.exit_reason == UInt32(KVM_EXIT_IO), shared.pointee.io.direction == UInt8(KVM_EXIT_IO_IN)
        else {
            throw KVMError.invalidArgument(operation: "completeIn", reason: "the last exit was not an IN")
        }
        let io = shared.pointee.io
        let expected = Int(io.size) * Int(io.count)
        guard bytes.count == expected else {
            throw KVMError.invalidArgument(
                operation: "completeIn", reason: "IN wants \(expected) bytes, got \(bytes.count)")
        }
        let dst = UnsafeMutableRawPointer(shared) + Int(io.data_offset)
        bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: expected) }
    }

    private func decodeExit() -> VCPUExit {
        let r = shared.pointee
        let base = UnsafeRawPointer(shared)
        switch Int32(r.exit_reason) {
        case KVM_EXIT_IO:
            let count = Int(r.io.size) * Int(r.io.count)
            let data = Array(UnsafeRawBufferPointer(start: base + Int(r.io.data_offset), count: count))
            return .io(
                port: r.io.port, direction: r.io.direction == UInt8(KVM_EXIT_IO_OUT) ? .out : .in,
                size: Int(r.io.size), count: Int(r.io.count), data: data)
        case KVM_EXIT_MMIO:
            let len = min(Int(r.mmio.len), 8)
            let data = withUnsafeBytes(of: r.mmio.data) { Array($0.prefix(len)) }
            return .mmio(address: r.mmio.phys_addr, isWrite: r.mmio.is_write != 0, length: Int(r.mmio.len), data: data)
        case KVM_EXIT_HLT:
            return .hlt
        case KVM_EXIT_DEBUG:
            return .debug(
                exception: r.debug.arch.exception, pc: r.debug.arch.pc, dr6: r.debug.arch.dr6, dr7: r.debug.arch.dr7)
        case KVM_EXIT_SHUTDOWN:
            return .shutdown
        case KVM_EXIT_FAIL_ENTRY:
            return .failEntry(reason: r.fail_entry.hardware_entry_failure_reason, cpu: r.fail_entry.cpu)
        case KVM_EXIT_INTERNAL_ERROR:
            let n = min(Int(r.internal.ndata), 16)
            let data = withUnsafeBytes(of: r.internal.data) { Array($0.bindMemory(to: UInt64.self).prefix(n)) }
            return .internalError(suberror: r.internal.suberror, data: data)
        case KVM_EXIT_SYSTEM_EVENT:
            let n = min(Int(r.system_event.ndata), 16)
            let data = withUnsafeBytes(of: r.system_event.data) { Array($0.bindMemory(to: UInt64.self).prefix(n)) }
            return .systemEvent(type: r.system_event.type, data: data)
        default:
            return .unknown(reason: r.exit_reason)
        }
    }

    // MARK: ioctls

    public func rawIoctl(_ request: UInt, _ argument: UnsafeMutableRawPointer?, size: Int) throws -> Int32 {
        ckvm_ioctl_ptr(fd, request, argument)
    }
}
