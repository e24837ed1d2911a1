import SVMModel

/// Which level the vCPU is executing.
public enum Level: String, Sendable {
    case l1 = "L1"
    case l2 = "L2"
}

/// Why the engine stopped.
public enum StopKind: String, Sendable {
    /// The target as nestdbg found it, before it ran (the first screen).
    case start
    /// L1 regained control after VMRUN: a nested #VMEXIT (or a failed VMRUN).
    case nestedExit = "nested_exit"
    /// L1 is about to execute VMRUN.
    case vmrun
    /// An exit to the VMM while L2 runs (e.g. an OUT L1 does not intercept).
    case l2UserspaceExit = "l2_userspace_exit"
    /// An exit to the VMM while L1 runs (I/O, MMIO, HLT).
    case l1UserspaceExit = "l1_userspace_exit"
    /// One L1 instruction stepped.
    case singleStep = "single_step"
    /// An L1 breakpoint (`Engine.addL1Breakpoint`).
    case breakpoint
    /// The user paused a running vCPU.
    case paused
    /// L1 triple-faulted (KVM_EXIT_SHUTDOWN), KVM failed an entry, or an internal error.
    case fault
    /// The guest wrote its exit code to the isa-debug-exit port (0xF4).
    case exited
}

/// Everything known at one stop. A value type: history keeps every one.
public struct Stop: Sendable {
    public var index: Int
    public var kind: StopKind
    public var level: Level
    /// One line: "nested #VMEXIT IOIO (OUT 0x80, 1 byte)", "L1 triple fault (KVM_EXIT_SHUTDOWN)".
    public var reason: String
    /// The nested exit decoded (nested-exit stops; VMEXIT_INVALID included).
    public var exit: DecodedExit?
    public var l1: RegisterSet
    public var l2: RegisterSet?
    public var vmcb12GPA: UInt64?
    /// vmcb12 as L1 prepared it at the last VMRUN.
    public var vmcb12AtVMRUN: VMCB?
    /// vmcb12 in guest memory now (after a nested exit: as KVM left it).
    public var vmcb12: VMCB?
    public var synced: [FieldChange]
    /// The consistency check of vmcb12 at the last VMRUN.
    public var violations: [Violation]
    public var nestedFlags: NestedStateFlags
    /// The nested-state blob's control half while L2 runs (KVM's cached controls).
    public var cachedControls: VMCB?
    /// KVM_GET_NESTED_STATE as read at this stop (nil where the stop read none: patch VMRUN stops, an ended process).
    public var nestedState: SVMNestedState? = nil
    /// What KVM_RUN returned, for the record.
    public var kvmExit: String
    /// The code written to port 0xF4 (`.exited` stops).
    public var exitStatus: Int32? = nil

    /// The breakpoint this stop matched (the engine evaluates every stop).
    public var hit: Breakpoint? = nil

    /// What KVM's tracepoints said at this stop (tracepoint stop source only).
    public var kvm: KVMEvidence? = nil
    /// Where KVM's tracepoint and vmcb12 disagree about the exit (should never happen: flagged loudly).
    public var kvmDisagreements: [String] = []

    /// Why the nested #VMEXIT reached L1 (nested-exit stops).
    public var why: ExitCause? = nil

    /// Every field KVM wrote into vmcb12 at this #VMEXIT, changed or rewritten,
    /// by `SyncRule.kvm`; empty without a nested exit or a page from VMRUN.
    public var kvmWrote: [FieldWrite] {
        guard kind == .nestedExit, let before = vmcb12AtVMRUN, let after = vmcb12 else { return [] }
        return SyncDiff.written(before: before, after: after)
    }

    public init(
        index: Int = 0, kind: StopKind, level: Level, reason: String, exit: DecodedExit? = nil, l1: RegisterSet,
        l2: RegisterSet? = nil, vmcb12GPA: UInt64? = nil, vmcb12AtVMRUN: VMCB? = nil, vmcb12: VMCB? = nil,
        synced: [FieldChange] = [], violations: [Violation] = [], nestedFlags: NestedStateFlags = [],
        cachedControls: VMCB? = nil, kvmExit: String
    ) {
        self.index = index
        self.kind = kind
        self.level = level
        self.reason = reason
        self.exit = exit
        self.l1 = l1
        self.l2 = l2
        self.vmcb12GPA = vmcb12GPA
        self.vmcb12AtVMRUN = vmcb12AtVMRUN
        self.vmcb12 = vmcb12
        self.synced = synced
        self.violations = violations
        self.nestedFlags = nestedFlags
        self.cachedControls = cachedControls
        self.kvmExit = kvmExit
    }

    /// Whether the run should end here for the user: a fault, the guest's own exit.
    public var endsRun: Bool { kind == .fault || kind == .exited }

    /// A nested-exit stop built from two vmcb12 pages and register values, as
    /// the engine builds them (for the renderer's tests and benchmark).
    public static func synthetic(
        index: Int, before: VMCB, after: VMCB, l1: [Register: RegisterValue],
        l2: [Register: RegisterValue]
    ) -> Stop {
        Stop(
            index: index, kind: .nestedExit, level: .l1, reason: "nested #VMEXIT", exit: DecodedExit(vmcb: after),
            l1: RegisterSet(source: "vCPU registers", values: l1),
            l2: RegisterSet(source: "vmcb12 save area", values: l2),
            vmcb12GPA: 0x20000, vmcb12AtVMRUN: before, vmcb12: after,
            synced: SyncDiff.changes(before: before, after: after),
            kvmExit: "KVM_EXIT_HLT")
    }
}
