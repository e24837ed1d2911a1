import KernelTrace
import KVMControl

import KVMControl
import SVMModel
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An I/O device of nestdbg's own VMM.
public enum PortDevice: Equatable, Sendable {
    /// COM1 (0x3F8-0x3FF): output collected, the transmitter always ready.
    case com1
    /// isa-debug-exit (0xF4): the value written is the guest's exit status.
    case debugExit
    /// The demo L1's panic port: L1 writes the exit code it cannot handle.
    case l1Panic
}

/// Which ports the own VM emulates; a port not in the map reads as 0xFF.
public struct PortMap: Sendable {
    public var devices: [(ports: ClosedRange<UInt16>, device: PortDevice)]

    public init(_ devices: [(ports: ClosedRange<UInt16>, device: PortDevice)]) { self.devices = devices }

    public func device(at port: UInt16) -> PortDevice? { devices.first { $0.ports.contains(port) }?.device }

    public static let com1Base: UInt16 = 0x3F8
    public static let debugExitPort: UInt16 = 0xF4
    /// User images: COM1 and isa-debug-exit, as QEMU offers them.
    public static let standard = PortMap([(com1Base...com1Base + 7, .com1), (debugExitPort...debugExitPort, .debugExit)])
    /// The built-in demo and scenarios: the standard devices and L1's panic port.
    public static let demo = PortMap(standard.devices + [(DemoImage.panicPort...DemoImage.panicPort, .l1Panic)])
}

/// What the own VMM made of a port I/O exit.
public enum IOOutcome: Equatable, Sendable {
    /// Emulated; the guest goes on.
    case handled
    /// The guest wrote its exit status to isa-debug-exit.
    case guestExited(status: Int32)
    /// L1 reported an exit it does not handle (the value it wrote).
    case l1ReportedUnhandledExit(code: UInt64)
    /// No device there: an IN reads 0xFF; the exit is still worth a stop.
    case unclaimed(description: String)
}

/// A target whose vCPU nestdbg runs itself (KVM_RUN in this process).
public protocol RunnableTarget: DebugTarget {
    func run() throws -> VCPUExit
    func setSingleStep(_ enabled: Bool) throws
    /// Makes a run in progress (or the next one) return `.interrupted`. Any thread.
    func kick()
    /// Emulates a port I/O exit with the target's device model.
    func handleIO(_ exit: VCPUExit) throws -> IOOutcome
    /// Makes the calling thread the vCPU's only user from now on (for
    /// another process's vCPU: its tracer).
    func claimVCPU() throws
    /// The kernel thread id of the thread inside KVM_RUN (tracepoints filter on it); nil before one claimed it.
    var vcpuThreadID: Int32? { get }
    /// Readies the thread that runs KVM_RUN for tracepoint SIGTRAPs and
    /// returns its kernel id, which the events are bound to. Called on the claiming thread.
    func prepareForTracepointStops() throws -> Int32
    /// Leaves the vCPU to its owner as nestdbg found it (the claiming thread calls it).
    func release() throws
}

/// An L1 hypervisor loaded into a VM nestdbg created: the VM, its vCPU, the
/// ports its VMM emulates, and the L1 addresses of its VMRUN sites.
///
/// One thread owns the vCPU: the first to call `claimVCPU()` (the engine's).
/// A vCPU ioctl from any other thread afterwards throws `wrongThread`.
public final class OwnVMTarget: DebugTarget, RunnableTarget, @unchecked Sendable {
    public let name: String
    public let vm: VirtualMachine
    let vcpu: VCPU
    public let ports: PortMap
    /// L1-linear addresses of VMRUN instructions (0F 01 D8), for the patch stop source.
    public let vmrunSites: [UInt64]
    /// Why no VMRUN site can be known before the guest runs (then `vmrunSites`
    /// is empty); nil when `vmrunSites` is all there is.
    public let unknownVMRUNSitesReason: String?
    public let symbols: [String: UInt64]
    public var capabilities: TargetCapabilities { [.ownsVM, .canWrite, .canSingleStep] }
    /// What the guest wrote to COM1, all of it.
    public private(set) var serialOutput: [UInt8] = []
    /// The owner's kernel thread id, and its pthread for the per-ioctl check (no system call).
    private let owner = Mutex<(tid: Int32, thread: pthread_t)?>(nil)

    init(name: String, vm: VirtualMachine, vcpu: VCPU, ports: PortMap, vmrunSites: [UInt64], symbols: [String: UInt64],
         unknownVMRUNSitesReason: String? = nil) {
        self.name = name
        self.vm = vm
        self.vcpu = vcpu
        self.ports = ports
        self.vmrunSites = vmrunSites
        self.unknownVMRUNSitesReason = unknownVMRUNSitesReason
        self.symbols = symbols
    }

    public func claimVCPU() { owner.withLock { $0 = (VCPU.currentThreadID(), pthread_self()) } }

    /// This process runs KVM_RUN: its SIGTRAP handler counts the signals, and the thread unblocks them.
    public func prepareForTracepointStops() throws -> Int32 {
        try PerfTracepoints.prepareCurrentThread()
        return PerfTracepoints.currentThreadID()
    }

    /// The VM is nestdbg's own: it ends with nestdbg.
    public func release() {}

    public var vcpuThreadID: Int32? { owner.withLock { $0?.tid } }

    private func checkThread(_ operation: String) throws {
        if let owner = owner.withLock({ $0 }), pthread_equal(owner.thread, pthread_self()) == 0 {
            throw TargetError.wrongThread(operation: operation, owner: owner.tid, caller: VCPU.currentThreadID())
        }
    }

    public func run() throws -> VCPUExit {
        try checkThread("KVM_RUN")
        return try vcpu.run()
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
        let device = ports.device(at: port)
        if direction == .in {
            // COM1's line status: transmitter empty and ready; everything else floats high.
            let value: UInt8 = device == .com1 ? (port == PortMap.com1Base + 5 ? 0x60 : 0) : 0xFF
            try vcpu.completeIn([UInt8](repeating: value, count: size * count))
        }
        switch device {
        case .com1:
            if direction == .out, port == PortMap.com1Base { serialOutput += data }
            return .handled
        case .debugExit where direction == .out:
            return .guestExited(status: Int32(data.first ?? 0))
        case .l1Panic where direction == .out:
            // Only L1 reports; the same port from L2 is just an exit.
            guard try !isInGuestMode() else { break }
            let code = data.prefix(4).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
            return .l1ReportedUnhandledExit(code: code)
        default: break
        }
        let what = "\(direction == .in ? "IN" : "OUT") port 0x\(String(port, radix: 16)), \(size) byte\(size == 1 ? "" : "s")"
            + (direction == .out ? " = " + data.map { String($0, radix: 16) }.joined(separator: " ") : "")
        return .unclaimed(description: what)
    }

    // MARK: Migration

    /// The whole vCPU and guest memory, read as a migrating VMM reads them.
    /// The owner thread calls it, with the vCPU stopped.
    public func captureState() throws -> VCPUState {
        try checkThread("capturing the vCPU state")
        try vcpu.completePendingExit()
        return try VCPUState.capture(vcpu: vcpu, vm: vm)
    }

    /// A new VM and vCPU given `state` as a migration destination would be:
    /// memory and CPUID first, then the parts in `order`, without `omitting`.
    /// The clone keeps this target's devices, VMRUN sites and symbols. Nil
    /// target when a restore ioctl failed (the log's last step says which).
    public func restoredClone(from state: VCPUState, order: RestoreOrder,
                              omitting: Set<Omission>) throws -> (clone: OwnVMTarget?, log: [RestoreStep]) {
        let clone = try vm.system.createVM()
        for image in state.memory {
            try clone.addMemory(at: image.guestPhysicalAddress, size: image.bytes.count)
            try clone.write(image.bytes, at: image.guestPhysicalAddress)
        }
        let vcpu = try clone.createVCPU()
        try vcpu.setCPUID(state.cpuid)
        let prelude = [RestoreStep(part: .cpuid, ioctl: MigrationPart.cpuid.setIoctl, outcome: .done),
                       RestoreStep(part: .memory, ioctl: MigrationPart.memory.setIoctl, outcome: .done)]
        let log = prelude + state.restore(into: vcpu, order: order, omitting: omitting)
        if case .failed = log.last?.outcome { return (nil, log) }
        let target = OwnVMTarget(name: "\(name) (clone)", vm: clone, vcpu: vcpu, ports: ports, vmrunSites: vmrunSites,
                                 symbols: symbols, unknownVMRUNSitesReason: unknownVMRUNSitesReason)
        return (target, log)
    }

    static let memorySize = 2 << 20
    /// RSP where a built-in L1 starts (the Multiboot prologue sets the same).
    static let l1StackTop: UInt64 = 0x8000
    // L1's boot page tables, written by the VMM like firmware would.
    static let l1PML4: UInt64 = 0x10000, l1PDPT: UInt64 = 0x11000, l1PD: UInt64 = 0x12000

    /// Flat 4 GiB segments as a boot loader leaves them: code 0x08 (32-bit, or
    /// 64-bit in long mode), data 0x10.
    static func setFlatSegments(_ sregs: inout SpecialRegisters, longMode: Bool) {
        let code = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, db: !longMode, s: true, l: longMode, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 3, db: true, s: true, g: true)
        sregs.cs = code; sregs.ss = data; sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data
    }

    /// Checks that KVM offers nested SVM; returns the CPUID to give the guest.
    static func nestedCPUID(_ kvm: KVM) throws -> [CPUIDEntry] {
        let cpuid = try kvm.supportedCPUID()
        guard CPUIDEntry.hasSVM(cpuid) else { throw TargetError.noNestedSVM("KVM_GET_SUPPORTED_CPUID has no SVM") }
        guard try kvm.checkExtension(.nestedState) > 0 else { throw TargetError.noNestedSVM("KVM_CAP_NESTED_STATE is 0") }
        return cpuid
    }

    /// Memory for a user's image (its segments must fit).
    public static let imageMemorySize = 64 << 20
    /// Where the Multiboot information structure goes.
    static let multibootInfo: UInt64 = 0x9000

    /// A user's L1 image, entered as Multiboot v1 specifies: 32-bit protected
    /// mode, paging off, flat segments, EAX = 0x2BADB002, EBX = the info
    /// structure. A flat binary starts the same way at its entry. Guest CPUID
    /// is KVM's supported set (so SVM where KVM offers it); `vmrunSites`
    /// default to the image's own (symbols, else a scan for 0F 01 D8).
    public static func image(kvm: KVM, image: GuestImage, vmrunSites: [UInt64]? = nil,
                             name: String = "image") throws -> OwnVMTarget {
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: imageMemorySize)
        for seg in image.segments {
            guard seg.physicalAddress + UInt64(max(seg.memorySize, seg.bytes.count)) <= UInt64(imageMemorySize) else {
                throw ImageError.outsideMemory(seg.physicalAddress, seg.memorySize)
            }
            try vm.write(seg.bytes, at: seg.physicalAddress)   // the rest of memsz stays zero (fresh memory)
        }
        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(try kvm.supportedCPUID())
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, longMode: false)
        sregs.cr0 = 0x11; sregs.cr3 = 0; sregs.cr4 = 0; sregs.efer = 0
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = image.entry
        if image.isMultiboot {
            // flags bit 0: mem_lower / mem_upper (KiB below 1 MiB and above it) are valid.
            let info: [UInt32] = [1, 639, UInt32((imageMemorySize - (1 << 20)) / 1024)]
            for (i, v) in info.enumerated() { try vm.writeInteger(v, at: multibootInfo + UInt64(i * 4)) }
            regs.rax = 0x2BAD_B002
            regs.rbx = multibootInfo
        }
        try vcpu.setRegisters(regs)
        return OwnVMTarget(name: name, vm: vm, vcpu: vcpu, ports: .standard, vmrunSites: vmrunSites ?? image.vmrunSites(),
                           symbols: image.symbols)
    }

    // The PAE scenario's second-gigabyte mappings: two page directories (PAE_PD_A/B in demo.S),
    // each to a page table and a page with its marker.
    static let paePDA: UInt64 = 0x13000, paePDB: UInt64 = 0x14000
    static let paeMarkerA: UInt32 = 0xA0A0_0001, paeMarkerB: UInt32 = 0xB0B0_0002

    /// L1's paging in the legacy-paging scenario.
    public enum LegacyPaging: String, Sendable, CaseIterable { case pse, pae }

    /// The legacy-paging scenario: the demo's 32-bit L1, paging with CR4.PSE
    /// (4 MiB pages) or PAE (2 MiB pages), running L2 without nested paging on
    /// its own page tables. Under the sandbox's KVM one of the two fails at the
    /// first nested #VMEXIT depending on kvm_amd npt (sandbox notes: !load_pdptrs).
    public static func legacyPagingScenario(kvm: KVM, paging: LegacyPaging) throws -> OwnVMTarget {
        let cpuid = try nestedCPUID(kvm)
        let image = DemoImage()
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        try vm.write(image.bytes, at: DemoImage.loadAddress)
        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(cpuid)
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, longMode: false)
        sregs.cr0 = 0x8000_0011
        sregs.efer = 0
        switch paging {
        case .pse:
            try vm.writeInteger(UInt32(0x83), at: l1PML4)            // PDE[0]: 4 MiB page at 0
            sregs.cr3 = l1PML4
            sregs.cr4 = 1 << 4
        case .pae:
            try vm.writeInteger(l1PDPT | 1, at: l1PML4)               // PDPTE[0] -> PD (PDPTEs take only P)
            try vm.writeInteger(UInt64(0x83), at: l1PDPT)             // PDE[0]: 2 MiB page at 0
            // PDPTE[1] (linear 1-2 GiB): one of two page directories whose first
            // 4 KiB page holds a different marker; L2 flips it (see demo.S).
            try vm.writeInteger(paePDA | 1, at: l1PML4 + 8)
            for (pd, pt, page, marker) in [(paePDA, paePDA + 0x2000, paePDA + 0x4000, paeMarkerA),
                                           (paePDB, paePDB + 0x2000, paePDB + 0x4000, paeMarkerB)] {
                try vm.writeInteger(pt | 3, at: pd)
                try vm.writeInteger(page | 3, at: pt)
                try vm.writeInteger(marker, at: page)
            }
            sregs.cr3 = l1PML4
            sregs.cr4 = 1 << 5
        }
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = image.address("l1_32_entry")
        regs.rsp = l1StackTop
        try vcpu.setRegisters(regs)
        return OwnVMTarget(name: "scenario-\(paging.rawValue)", vm: vm, vcpu: vcpu, ports: .demo,
                           vmrunSites: [image.address("vmrun32")], symbols: image.symbols)
    }

    /// The events scenario (demo.S): a 64-bit L1 injecting #UD into L2 at
    /// every round and leaving a virtual interrupt pending while L2 runs.
    public static func eventsScenario(kvm: KVM) throws -> OwnVMTarget {
        let image = DemoImage()
        let (vm, vcpu) = try longModeL1(kvm: kvm, bytes: image.bytes, at: DemoImage.loadAddress,
                                        entry: image.address("events_entry"))
        return OwnVMTarget(name: "scenario-events", vm: vm, vcpu: vcpu, ports: .demo,
                           vmrunSites: [image.address("events_vmrun")], symbols: image.symbols)
    }

    /// Throws unless KVM offers nested SVM (for tests deciding whether to run).
    public static func nestedCPUIDForTests(_ kvm: KVM) throws { _ = try nestedCPUID(kvm) }

    /// The built-in demo: L1 entered in 64-bit long mode (identity-mapped first 2 MiB, CPL 0).
    public static func demo(kvm: KVM) throws -> OwnVMTarget {
        let image = DemoImage()
        let (vm, vcpu) = try longModeL1(kvm: kvm, bytes: image.bytes, at: DemoImage.loadAddress, entry: image.address("l1_entry"))
        return OwnVMTarget(name: "demo", vm: vm, vcpu: vcpu, ports: .demo, vmrunSites: [image.address("vmrun")], symbols: image.symbols)
    }

    /// The self-checking L1 (selfcheck.S), started like the demo. Its VMRUN
    /// is generated at run time, so no site is known: only a stop source
    /// that needs none (KVM's tracepoints) can stop at its nested exits.
    public static func selfCheck(kvm: KVM) throws -> OwnVMTarget {
        let image = SelfCheckImage()
        let (vm, vcpu) = try longModeL1(kvm: kvm, bytes: image.bytes, at: SelfCheckImage.loadAddress,
                                        entry: image.address("l1_entry"))
        return OwnVMTarget(name: "selfcheck", vm: vm, vcpu: vcpu, ports: .demo, vmrunSites: [], symbols: image.symbols,
                           unknownVMRUNSitesReason: "its VMRUN is generated at run time")
    }

    /// A VM with nested SVM in its CPUID and an L1 image entered as
    /// `longModeStart` says. L1 sets EFER.SVME itself.
    private static func longModeL1(kvm: KVM, bytes: [UInt8], at loadAddress: UInt64,
                                   entry: UInt64) throws -> (VirtualMachine, VCPU) {
        let cpuid = try nestedCPUID(kvm)
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        try vm.write(bytes, at: loadAddress)
        try vm.writeInteger(l1PDPT | 3, at: l1PML4)
        try vm.writeInteger(l1PD | 3, at: l1PDPT)
        try vm.writeInteger(UInt64(0x83), at: l1PD)     // one 2 MiB page at 0
        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(cpuid)
        let (sregs, regs) = longModeStart(from: try vcpu.specialRegisters(), entry: entry)
        try vcpu.setSpecialRegisters(sregs)
        try vcpu.setRegisters(regs)
        return (vm, vcpu)
    }

    /// How a built-in L1 starts: 64-bit long mode on boot tables at `l1PML4`
    /// (identity-mapped first 2 MiB, one 2 MiB page), flat segments, CPL 0,
    /// RSP `l1StackTop`, RFLAGS 2, the other GPRs 0, at `entry`; the rest as
    /// KVM reset it (`reset`). multiboot_entry.S starts an L1 in this state
    /// from a Multiboot loader, its own boot tables aside: a change here goes there too.
    public static func longModeStart(from reset: SpecialRegisters, entry: UInt64) -> (SpecialRegisters, GeneralRegisters) {
        var sregs = reset
        setFlatSegments(&sregs, longMode: true)
        sregs.cr3 = l1PML4
        sregs.cr4 = 1 << 5
        sregs.cr0 = 0x8000_0011
        sregs.efer = 1 << 8 | 1 << 10                    // LME LMA
        var regs = GeneralRegisters()
        regs.rip = entry
        regs.rsp = l1StackTop
        return (sregs, regs)
    }
}
