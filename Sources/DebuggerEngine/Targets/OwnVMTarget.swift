import KVMControl
import KernelTrace
import SVMModel
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// An L1 hypervisor loaded into a VM nestdbg created: the VM, its vCPU, the
/// ports its VMM emulates, and the L1 addresses of its VMRUN sites.
///
/// One thread owns the vCPU: the first to call `claimVCPU()` (the engine's).
/// A vCPU ioctl from any other thread afterwards throws `wrongThread`.
public final class OwnVMTarget: DebugTarget, RunnableTarget, DeviceModel, @unchecked Sendable {
    public let name: String
    public let vm: VirtualMachine
    let vcpu: VCPU
    /// The VMM's devices, shared with the other vCPUs' threads.
    public let devices: Devices
    public var ports: PortMap { devices.ports }
    /// vCPUs 1..<N (`--smp N`), each on its own thread; nil with one vCPU.
    let secondaries: SecondaryVCPUs?
    /// L1-linear addresses of VMRUN instructions (0F 01 D8), for the patch stop source.
    public let vmrunSites: [UInt64]
    /// Why no VMRUN site can be known before the guest runs (then `vmrunSites`
    /// is empty); nil when `vmrunSites` is all there is.
    public let unknownVMRUNSitesReason: String?
    public let symbols: [String: UInt64]
    public var capabilities: TargetCapabilities { [.ownsVM, .canWrite, .canSingleStep] }
    /// What the guest wrote to COM1, all of it.
    public var serialOutput: [UInt8]? { devices.serialOutput }
    /// nestdbg is the VMM: the ports are its own.
    public var deviceModel: (any DeviceModel)? { self }
    /// How many vCPUs the VM has (the debugger's is vCPU 0).
    public var vcpuCount: Int { 1 + (secondaries?.count ?? 0) }
    /// The owner's kernel thread id, and its pthread for the per-ioctl check (no system call).
    private let owner = Mutex<(tid: Int32, thread: pthread_t)?>(nil)

    init(
        name: String, vm: VirtualMachine, vcpu: VCPU, devices: Devices, vmrunSites: [UInt64], symbols: [String: UInt64],
        unknownVMRUNSitesReason: String? = nil, secondaries: [VCPU] = []
    ) {
        self.name = name
        self.vm = vm
        self.vcpu = vcpu
        self.devices = devices
        self.secondaries =
            secondaries.isEmpty
            ? nil
            : SecondaryVCPUs(vcpus: secondaries, devices: devices) { [vcpu] in
                vcpu.kick()
            }
        self.vmrunSites = vmrunSites
        self.unknownVMRUNSitesReason = unknownVMRUNSitesReason
        self.symbols = symbols
    }

    /// A built-in scenario's VM: one vCPU, the demo's ports, fw_cfg saying so.
    convenience init(
        name: String, vm: VirtualMachine, vcpu: VCPU, ports: PortMap, vmrunSites: [UInt64],
        symbols: [String: UInt64], unknownVMRUNSitesReason: String? = nil
    ) {
        let ram = UInt64(vm.regions.reduce(0) { $0 + $1.size })
        self.init(
            name: name, vm: vm, vcpu: vcpu,
            devices: Devices(ports: ports, firmwareConfig: FirmwareConfig(ramSize: ram, cpuCount: 1)),
            vmrunSites: vmrunSites, symbols: symbols, unknownVMRUNSitesReason: unknownVMRUNSitesReason)
    }

    deinit { secondaries?.shutdown() }

    public func resumeOtherVCPUs() { secondaries?.resume() }

    public func pauseOtherVCPUs() { secondaries?.pause() }

    public func claimVCPU() { owner.withLock { $0 = (VCPU.currentThreadID(), pthread_self()) } }

    /// This process runs KVM_RUN: its SIGTRAP handler counts the signals, and the thread unblocks them.
    public func prepareForTracepointStops() throws -> Int32 {
        try PerfTracepoints.prepareCurrentThread()
        return PerfTracepoints.currentThreadID()
    }

    /// The VM is nestdbg's own: it ends with nestdbg.
    public func release() {}

    public var vcpuThreadID: Int32? { owner.withLock { $0?.tid } }

    func checkThread(_ operation: String) throws {
        if let owner = owner.withLock({ $0 }), pthread_equal(owner.thread, pthread_self()) == 0 {
            throw TargetError.wrongThread(operation: operation, owner: owner.tid, caller: VCPU.currentThreadID())
        }
    }

    public func run() throws -> VCPUExit {
        try checkThread("KVM_RUN")
        // An AP that ended the guest or failed ends the run here (it kicked vCPU 0 out of KVM_RUN).
        if let end = secondaries?.takeEnd() { throw end }
        let exit = try vcpu.run()
        if case .interrupted = exit, let end = secondaries?.takeEnd() { throw end }
        return exit
    }

    public func kick() { vcpu.kick() }

    public func setSingleStep(_ enabled: Bool) throws {
        try checkThread("KVM_SET_GUEST_DEBUG")
        try vcpu.setGuestDebug(GuestDebug(singleStep: enabled))
    }

    public func generalRegisters() throws -> GeneralRegisters {
        try checkThread("KVM_GET_REGS")
        return try vcpu.registers()
    }

    public func setGeneralRegisters(_ registers: GeneralRegisters) throws {
        try checkThread("KVM_SET_REGS")
        try vcpu.setRegisters(registers)
    }

    public func specialRegisters() throws -> SpecialRegisters {
        try checkThread("KVM_GET_SREGS2")
        return try vcpu.specialRegisters()
    }

    public func debugRegisters() throws -> DebugRegisters {
        try checkThread("KVM_GET_DEBUGREGS")
        return try vcpu.debugRegisters()
    }

    public func msrs(_ indices: [UInt32]) throws -> [UInt64] {
        try checkThread("KVM_GET_MSRS")
        return try vcpu.msrs(indices)
    }

    public func nestedState() throws -> SVMNestedState? {
        guard vcpu.nestedStateMaxSize > 0 else { return nil }
        try checkThread("KVM_GET_NESTED_STATE")
        return try SVMNestedState(bytes: vcpu.nestedState().bytes)
    }

    public func isInGuestMode() throws -> Bool {
        // kvm_run.flags says it for free on 6.10+; older KVMs need the nested state.
        if vcpu.reportsGuestMode { return vcpu.lastRunFlags.contains(.guestMode) }
        return try nestedState()?.flags.contains(.guestMode) ?? false
    }

    public func readPhysical(_ address: UInt64, count: Int) throws -> [UInt8] { try vm.read(at: address, count: count) }

    public func writePhysical(_ bytes: [UInt8], at address: UInt64) throws { try vm.write(bytes, at: address) }

    public func translate(_ linear: UInt64) throws -> UInt64? {
        try checkThread("KVM_TRANSLATE")
        return try vcpu.translate(linear)
    }

    public func handleIO(_ exit: VCPUExit) throws -> IOOutcome {
        guard case let .io(port, direction, size, count, data) = exit else { return .handled }
        let (reply, outcome) = devices.access(
            port: port, direction: direction, size: size, count: count, data: data,
            inSMM: vcpu.lastRunFlags.contains(.smm))
        if let reply { try vcpu.completeIn(reply) }
        // Only L1 reports on the panic port; the same port from L2 is just an exit.
        if case .l1ReportedUnhandledExit = outcome, try isInGuestMode() {
            return .unclaimed(
                description: "OUT port 0x\(String(port, radix: 16)) from L2, \(size) byte\(size == 1 ? "" : "s")")
        }
        return outcome
    }
}
