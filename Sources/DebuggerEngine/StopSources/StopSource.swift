import KVMControl

/// What a stop source saw when it stopped the vCPU. The stop assembler
/// turns an event plus the target's state into a `Stop`.
public enum StopEvent: Equatable, Sendable {
    /// L1 is about to execute VMRUN (RIP on the instruction, vmcb12 at RAX).
    case vmrun
    /// KVM emulated L1's VMRUN: vmcb12 loaded, the vCPU in guest mode, L2
    /// about to run its first instruction (tracepoint stops).
    case vmrunEmulated
    /// L1 regained control after VMRUN: a nested #VMEXIT, or a failed VMRUN.
    case nestedExit
    /// An exit to the VMM that is not a nested event (I/O, MMIO, HLT); the
    /// vCPU may be in L1 or in L2.
    case vmmExit(description: String)
    /// An L1 instruction breakpoint at this L1 address.
    case l1Breakpoint(address: UInt64)
    /// One L1 instruction executed.
    case singleStep
    /// The run was interrupted (`interrupt()`), e.g. the user paused.
    case paused
    /// Something went wrong in the guest or in KVM: a triple fault, a failed
    /// entry, an internal error, L1 reporting an exit it cannot handle.
    case fault(Fault)
    /// The guest ended itself (isa-debug-exit) with this status.
    case guestExited(status: Int32)
    /// The process that ran the vCPU (QEMU) ended: nothing can be read any
    /// more. `guestStatus` where the exit says what the guest wrote.
    case processEnded(description: String, guestStatus: Int32?)
}

/// What went wrong, typed: behaviour (the triple-fault diagnosis) is decided on the case, never on words.
public enum Fault: Equatable, Sendable, CustomStringConvertible {
    /// KVM_EXIT_SHUTDOWN: a triple fault at the level KVM runs.
    case tripleFault
    case failedEntry(hardwareReason: UInt64)
    case internalError(suberror: UInt32, data: [UInt64])
    case systemEvent(type: UInt32)
    case unhandledExit(reason: UInt32)
    /// L1 wrote an exit code to the demo's panic port.
    case l1ReportedUnhandledExit(code: UInt64)
    /// Said by whoever saw it (a scripted fault).
    case other(String)

    public var description: String {
        switch self {
        case .tripleFault: return "triple fault (KVM_EXIT_SHUTDOWN)"
        case let .failedEntry(reason): return "KVM_EXIT_FAIL_ENTRY, hardware reason 0x\(String(reason, radix: 16))"
        case let .internalError(suberror, data):
            return "KVM internal error \(suberror) \(data.map { "0x" + String($0, radix: 16) })"
        case let .systemEvent(type): return "system event \(type)"
        case let .unhandledExit(reason): return "unhandled KVM exit reason \(reason)"
        case let .l1ReportedUnhandledExit(code): return "L1 reported an exit it does not handle: \(exitName(code))"
        case let .other(text): return text
        }
    }
}

/// An event and how the source learned of it (for the record: "KVM_EXIT_HLT (patch at VMRUN)"),
/// with what KVM's tracepoints said where the source listens to them.
public struct SourceStop: Equatable, Sendable {
    public var event: StopEvent
    public var kvmExit: String
    public var evidence: KVMEvidence?
    public init(_ event: StopEvent, kvmExit: String, evidence: KVMEvidence? = nil) {
        self.event = event
        self.kvmExit = kvmExit
        self.evidence = evidence
    }
}

/// What a stop source can do beyond running to the next event.
public struct StopSourceCapabilities: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Breakpoints on L1 instructions (the source can patch L1's code).
    public static let l1Breakpoints = StopSourceCapabilities(rawValue: 1 << 0)
    /// Stops at VMRUN, before L2 runs.
    public static let vmrunStops = StopSourceCapabilities(rawValue: 1 << 1)
    /// Executes one L1 instruction.
    public static let singleStep = StopSourceCapabilities(rawValue: 1 << 2)
    /// Lets the guest run without stopping, handing out samples (live watch).
    public static let freeRun = StopSourceCapabilities(rawValue: 1 << 3)
}

/// The stop sources nestdbg has, for `--stops` and `kvm-info`.
public enum StopSourceKind: String, CaseIterable, Sendable {
    /// KVM's own tracepoints (perf SIGTRAP): exact, nothing patched, any L1.
    case tracepoint
    /// HLT patched over L1's VMRUN sites (needs to know where they are).
    case patch

    /// Whether this host can use it, and if not why.
    public var availability: StopSourceAvailability {
        switch self {
        case .tracepoint:
            return TracepointStopSource.availability()
        case .patch:
            return .available(
                "HLT over VMRUN and the instruction after it (needs the VMRUN sites: symbols, a scan or --vmrun-at)")
        }
    }
}

/// Whether this host can use a stop source: what it rests on, or what is missing.
public enum StopSourceAvailability: Equatable, Sendable {
    case available(String)
    case unavailable(String)
}

/// Why a stop source refused a request.
public enum StopSourceError: Error, Equatable, CustomStringConvertible {
    case notVMRUN(UInt64)
    case cannotStepVMRUN
    case breakpointOnVMRUNSite
    case notMapped(UInt64)
    /// The target's VMRUN cannot be found before it runs, so VMRUN patches cannot stop it.
    case noVMRUNSite(target: String, reason: String)
    /// The VM has an in-kernel irqchip: KVM handles HLT itself, so a HLT patch never reaches nestdbg.
    case patchNeedsHLTExits(target: String)
    /// Putting the source's mechanism back (patches, events, single-step off) failed: it may
    /// not stop the guest any more. `after` is the error of the run it followed, if it had one.
    case restoreFailed(what: String, error: String, after: String?)

    public var description: String {
        switch self {
        case let .notVMRUN(a): return "no VMRUN (0F 01 D8) at L1 address 0x\(String(a, radix: 16))"
        case .cannotStepVMRUN: return "L1 is at VMRUN: use n (next exit) or e (next VMRUN) to run L2"
        case .breakpointOnVMRUNSite: return "VMRUN and the instruction after it are stops already: use e and n"
        case let .notMapped(a): return "L1 address 0x\(String(a, radix: 16)) is not mapped"
        case let .noVMRUNSite(target, reason):
            return "no VMRUN site known for \(target): \(reason); use --stops tracepoint"
        case let .patchNeedsHLTExits(target):
            return
                "--stops patch cannot stop \(target): with the in-kernel irqchip KVM handles HLT itself and the patches "
                + "never reach nestdbg; use --stops tracepoint, or --no-irqchip (no LAPIC, one vCPU)"
        case let .restoreFailed(what, error, after):
            return "\(what) failed: \(error); the stop source may not stop the guest any more"
                + (after.map { " (after: \($0))" } ?? "")
        }
    }
}

/// Runs `body`, then `restore` whatever happened. A failing restore is never
/// swallowed: it is thrown, naming the body's own error where there was one.
func withRestore<T>(_ what: String, _ body: () throws -> T, restore: () throws -> Void) throws -> T {
    let result: Result<T, any Error> = Result { try body() }
    do {
        try restore()
    } catch {
        let after: String?
        if case let .failure(bodyError) = result { after = "\(bodyError)" } else { after = nil }
        throw StopSourceError.restoreFailed(what: what, error: "\(error)", after: after)
    }
    return try result.get()
}

/// Runs a target until the next event. Only the engine's thread calls it,
/// but `interrupt()`, which may come from any thread.
public protocol StopSource: AnyObject {
    /// "patch (HLT over VMRUN)", for kvm-info and the banner.
    var name: String { get }
    /// Which of the host's mechanisms it is (kvm-info, the banner, JSON); nil for the embedded fixture's.
    var kind: StopSourceKind? { get }
    var capabilities: StopSourceCapabilities { get }
    /// Runs until the next event (VMRUN stops included where the source has them).
    func next() throws -> SourceStop
    /// Executes one L1 instruction.
    func singleStep() throws -> SourceStop
    /// Makes a `next()` in progress, or the next one, return `.paused`. Any thread.
    func interrupt()
    /// Lets the guest run with no stops. At each interrupt `sample` is called
    /// (the vCPU is stopped and may be read), then the guest goes on, until
    /// `shouldStop` says so at an interrupt: that returns `.paused`. A fault or
    /// the guest's exit ends it too.
    func runFree(shouldStop: () -> Bool, sample: () throws -> Void) throws -> SourceStop
    /// Stops on an L1 instruction (`.l1Breakpoints`); `linear` is translated through L1's paging now.
    func addL1Breakpoint(_ linear: UInt64) throws
    func removeL1Breakpoint(_ linear: UInt64) throws
    /// Leaves the guest as it would be without nestdbg (patches out).
    func detach() throws
}

extension RunnableTarget {
    /// What every stop source makes of a KVM exit that is not its own
    /// mechanism (nil: emulated, nothing for the user).
    func classify(_ exit: VCPUExit) throws -> SourceStop? {
        switch exit {
        case .hlt:
            return SourceStop(.vmmExit(description: "HLT"), kvmExit: exit.kvmName)
        case .io:
            // No device model (another process's vCPU): the port is its VMM's, nothing for the user.
            guard let devices = deviceModel else { return nil }
            switch try devices.handleIO(exit) {
            case .handled: return nil
            case let .guestExited(status): return SourceStop(.guestExited(status: status), kvmExit: exit.kvmName)
            case let .l1ReportedUnhandledExit(code):
                return SourceStop(.fault(.l1ReportedUnhandledExit(code: code)), kvmExit: exit.kvmName)
            case let .unclaimed(description):
                return SourceStop(.vmmExit(description: description), kvmExit: exit.kvmName)
            case .smmEntered: return SourceStop(.vmmExit(description: SMMStub.explanation), kvmExit: exit.kvmName)
            }
        case let .mmio(address, isWrite, length, _):
            let what = "MMIO \(isWrite ? "write" : "read") at 0x\(String(address, radix: 16)), \(length) bytes"
            return SourceStop(.vmmExit(description: what), kvmExit: exit.kvmName)
        case .interrupted:
            return SourceStop(.paused, kvmExit: exit.kvmName)
        case .shutdown:
            return SourceStop(.fault(.tripleFault), kvmExit: exit.kvmName)
        case let .failEntry(reason, _):
            return SourceStop(.fault(.failedEntry(hardwareReason: reason)), kvmExit: exit.kvmName)
        case let .internalError(suberror, data):
            return SourceStop(.fault(.internalError(suberror: suberror, data: data)), kvmExit: exit.kvmName)
        case .debug:
            return SourceStop(.singleStep, kvmExit: exit.kvmName)
        case let .systemEvent(type, _):
            return SourceStop(.fault(.systemEvent(type: type)), kvmExit: exit.kvmName)
        case let .unknown(reason):
            return SourceStop(.fault(.unhandledExit(reason: reason)), kvmExit: exit.kvmName)
        }
    }
}
