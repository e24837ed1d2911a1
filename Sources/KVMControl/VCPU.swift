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
public final class VCPU: @unchecked Sendable {
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
        guard shared.pointee.exit_reason == UInt32(KVM_EXIT_IO), shared.pointee.io.direction == UInt8(KVM_EXIT_IO_IN) else {
            throw KVMError.invalidArgument(operation: "completeIn", reason: "the last exit was not an IN")
        }
        let io = shared.pointee.io
        let expected = Int(io.size) * Int(io.count)
        guard bytes.count == expected else {
            throw KVMError.invalidArgument(operation: "completeIn", reason: "IN wants \(expected) bytes, got \(bytes.count)")
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
            return .io(port: r.io.port, direction: r.io.direction == UInt8(KVM_EXIT_IO_OUT) ? .out : .in,
                       size: Int(r.io.size), count: Int(r.io.count), data: data)
        case KVM_EXIT_MMIO:
            let len = min(Int(r.mmio.len), 8)
            let data = withUnsafeBytes(of: r.mmio.data) { Array($0.prefix(len)) }
            return .mmio(address: r.mmio.phys_addr, isWrite: r.mmio.is_write != 0, length: Int(r.mmio.len), data: data)
        case KVM_EXIT_HLT:
            return .hlt
        case KVM_EXIT_DEBUG:
            return .debug(exception: r.debug.arch.exception, pc: r.debug.arch.pc, dr6: r.debug.arch.dr6, dr7: r.debug.arch.dr7)
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

    // MARK: Registers

    /// `KVM_GET_REGS`.
    public func registers() throws -> GeneralRegisters {
        var c = kvm_regs()
        try kvmIoctl(fd, CKVM_GET_REGS, "KVM_GET_REGS", &c)
        return GeneralRegisters(c)
    }

    /// `KVM_SET_REGS`.
    public func setRegisters(_ regs: GeneralRegisters) throws {
        var c = regs.cValue
        try kvmIoctl(fd, CKVM_SET_REGS, "KVM_SET_REGS", &c)
    }

    /// `KVM_GET_SREGS2` (with PDPTRs in PAE paging), or `KVM_GET_SREGS` before 5.14.
    public func specialRegisters() throws -> SpecialRegisters {
        if hasSREGS2 {
            var c = kvm_sregs2()
            try kvmIoctl(fd, CKVM_GET_SREGS2, "KVM_GET_SREGS2", &c)
            return SpecialRegisters(c)
        }
        var c = kvm_sregs()
        try kvmIoctl(fd, CKVM_GET_SREGS, "KVM_GET_SREGS", &c)
        return SpecialRegisters(c)
    }

    /// `KVM_SET_SREGS2` (PDPTRs applied when given), or `KVM_SET_SREGS` before 5.14.
    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws {
        if hasSREGS2 {
            var c = sregs.sregs2
            try kvmIoctl(fd, CKVM_SET_SREGS2, "KVM_SET_SREGS2", &c)
            return
        }
        guard sregs.pdptrs == nil else {
            throw KVMError.unsupported(operation: "KVM_SET_SREGS", reason: "PDPTRs need KVM_CAP_SREGS2")
        }
        var c = kvm_sregs()
        try kvmIoctl(fd, CKVM_GET_SREGS, "KVM_GET_SREGS", &c)
        sregs.apply(to: &c)
        try kvmIoctl(fd, CKVM_SET_SREGS, "KVM_SET_SREGS", &c)
    }

    /// `KVM_GET_MSRS` for the given indices, in their order.
    public func msrs(_ indices: [UInt32]) throws -> [UInt64] {
        try withMSRBuffer(indices.map { ($0, 0) }) { raw in
            let n = try kvmIoctl(fd, CKVM_GET_MSRS, "KVM_GET_MSRS", raw)
            if Int(n) < indices.count { throw KVMError.msrNotHandled(operation: "KVM_GET_MSRS", index: indices[Int(n)]) }
            return indices.indices.map { raw.load(fromByteOffset: 8 + $0 * 16 + 8, as: UInt64.self) }
        }
    }

    /// `KVM_SET_MSRS`; throws naming the first MSR KVM refused.
    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws {
        try withMSRBuffer(values.map { ($0.index, $0.value) }) { raw in
            let n = try kvmIoctl(fd, CKVM_SET_MSRS, "KVM_SET_MSRS", raw)
            if Int(n) < values.count { throw KVMError.msrNotHandled(operation: "KVM_SET_MSRS", index: values[Int(n)].index) }
        }
    }

    private func withMSRBuffer<R>(_ entries: [(UInt32, UInt64)], _ body: (UnsafeMutableRawPointer) throws -> R) throws -> R {
        let bytes = 8 + entries.count * 16   // kvm_msrs header, then {index, reserved, data}
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.storeBytes(of: UInt32(entries.count), as: UInt32.self)
        for (i, e) in entries.enumerated() {
            raw.storeBytes(of: e.0, toByteOffset: 8 + i * 16, as: UInt32.self)
            raw.storeBytes(of: e.1, toByteOffset: 8 + i * 16 + 8, as: UInt64.self)
        }
        return try body(raw)
    }

    /// `KVM_GET_DEBUGREGS`.
    public func debugRegisters() throws -> DebugRegisters {
        var c = kvm_debugregs()
        try kvmIoctl(fd, CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &c)
        return DebugRegisters(c)
    }

    /// `KVM_SET_DEBUGREGS`.
    public func setDebugRegisters(_ regs: DebugRegisters) throws {
        var c = regs.cValue
        try kvmIoctl(fd, CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", &c)
    }

    /// `KVM_SET_CPUID2`.
    public func setCPUID(_ entries: [CPUIDEntry]) throws {
        _ = try CPUIDEntry.withBuffer(entries) { raw in
            try kvmIoctl(fd, CKVM_SET_CPUID2, "KVM_SET_CPUID2", raw)
        }
    }

    /// `KVM_GET_VCPU_EVENTS`.
    public func events() throws -> VCPUEvents {
        var c = kvm_vcpu_events()
        try kvmIoctl(fd, CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &c)
        return VCPUEvents(c)
    }

    /// `KVM_SET_VCPU_EVENTS`.
    public func setEvents(_ events: VCPUEvents) throws {
        var c = events.raw
        try kvmIoctl(fd, CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", &c)
    }

    /// `KVM_GET_MP_STATE`.
    public func mpState() throws -> MPState {
        var c = kvm_mp_state()
        try kvmIoctl(fd, CKVM_GET_MP_STATE, "KVM_GET_MP_STATE", &c)
        return MPState(rawValue: c.mp_state)
    }

    /// `KVM_SET_MP_STATE`.
    public func setMPState(_ state: MPState) throws {
        var c = kvm_mp_state(mp_state: state.rawValue)
        try kvmIoctl(fd, CKVM_SET_MP_STATE, "KVM_SET_MP_STATE", &c)
    }

    /// `KVM_SET_GUEST_DEBUG`.
    public func setGuestDebug(_ debug: GuestDebug) throws {
        var c = try debug.cValue()
        try kvmIoctl(fd, CKVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", &c)
    }

    /// `KVM_TRANSLATE`: the guest-physical address of a linear address under
    /// the current paging (nil when not mapped).
    public func translate(_ linear: UInt64) throws -> UInt64? {
        var c = kvm_translation()
        c.linear_address = linear
        try kvmIoctl(fd, CKVM_TRANSLATE, "KVM_TRANSLATE", &c)
        return c.valid != 0 ? c.physical_address : nil
    }

    // MARK: Nested state

    /// `KVM_GET_NESTED_STATE`: the blob and its header. Always with room for
    /// the whole blob: SVM's get_nested_state only checks that the buffer
    /// holds the header, then writes the 4 KiB of data in guest mode whatever
    /// size it was given (a header-sized read overflowed the heap under 6.1;
    /// later kernels write in the same order).
    public func nestedState() throws -> NestedState {
        guard nestedStateMaxSize > 0 else {
            throw KVMError.unsupported(operation: "KVM_GET_NESTED_STATE",
                                       reason: "KVM_CAP_NESTED_STATE is 0 (no nested SVM or VMX in this KVM)")
        }
        var capacity = max(nestedStateMaxSize, NestedState.headerSize)
        while true {
            var bytes = [UInt8](repeating: 0, count: capacity)
            let r = bytes.withUnsafeMutableBytes { raw -> Int32 in
                raw.storeBytes(of: UInt32(capacity), toByteOffset: 4, as: UInt32.self)
                return ckvm_ioctl_ptr(fd, CKVM_GET_NESTED_STATE, raw.baseAddress)
            }
            let needed = Int(NestedState(bytes: bytes).size)
            if r == -E2BIG, needed > capacity { capacity = needed; continue }
            if r < 0 { throw KVMError.ioctl(name: "KVM_GET_NESTED_STATE", errno: -r) }
            return NestedState(bytes: Array(bytes.prefix(max(needed, NestedState.headerSize))))
        }
    }

    /// `KVM_SET_NESTED_STATE` with a blob as `nestedState()` returned it.
    public func setNestedState(_ state: NestedState) throws {
        guard nestedStateMaxSize > 0 else {
            throw KVMError.unsupported(operation: "KVM_SET_NESTED_STATE",
                                       reason: "KVM_CAP_NESTED_STATE is 0 (no nested SVM or VMX in this KVM)")
        }
        guard state.bytes.count >= NestedState.headerSize, Int(state.size) <= state.bytes.count else {
            throw KVMError.invalidArgument(operation: "KVM_SET_NESTED_STATE",
                                           reason: "blob of \(state.bytes.count) bytes is shorter than its header's size")
        }
        var bytes = state.bytes
        _ = try bytes.withUnsafeMutableBytes { raw in
            try kvmIoctl(fd, CKVM_SET_NESTED_STATE, "KVM_SET_NESTED_STATE", raw.baseAddress)
        }
    }
}
