import KVMControl
import SVMModel

/// Which level the vCPU is executing.
public enum Level: String, Sendable { case l1 = "L1", l2 = "L2" }

/// Why the engine stopped.
public enum StopKind: String, Sendable {
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

/// A register pane's values and where they came from. A value the engine
/// cannot know at this stop is nil, never a stale number.
public struct RegisterSet: Equatable, Sendable {
    public var source: String
    public var values: [String: UInt64?]
    /// The order panes and JSON list them in.
    public static let order: [String] = [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "rip", "rflags", "cr0", "cr2", "cr3", "cr4", "efer", "dr6", "dr7",
    ] + ["cs", "ss", "ds", "es", "fs", "gs", "tr", "ldtr"].flatMap { s in ["selector", "base", "limit", "attrib"].map { "\(s).\($0)" } }
      + ["gdtr.base", "gdtr.limit", "idtr.base", "idtr.limit"]

    public init(source: String, values: [String: UInt64?]) { self.source = source; self.values = values }

    public subscript(name: String) -> UInt64? { values[name] ?? nil }
    public func isKnown(_ name: String) -> Bool { (values[name] ?? nil) != nil }

    static let gprNames = ["rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]

    /// Everything from the vCPU ioctls (the level that is running).
    static func fromVCPU(_ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters, source: String) -> RegisterSet {
        var v: [String: UInt64?] = [:]
        for (n, x) in r.named { v[n] = x }
        v["cr0"] = s.cr0; v["cr2"] = s.cr2; v["cr3"] = s.cr3; v["cr4"] = s.cr4; v["efer"] = s.efer
        v["dr6"] = d.dr6; v["dr7"] = d.dr7
        for (n, seg) in [("cs", s.cs), ("ss", s.ss), ("ds", s.ds), ("es", s.es), ("fs", s.fs), ("gs", s.gs), ("tr", s.tr), ("ldtr", s.ldt)] {
            v["\(n).selector"] = UInt64(seg.selector); v["\(n).base"] = seg.base
            v["\(n).limit"] = UInt64(seg.limit); v["\(n).attrib"] = UInt64(seg.vmcbAttributes)
        }
        v["gdtr.base"] = s.gdt.base; v["gdtr.limit"] = UInt64(s.gdt.limit)
        v["idtr.base"] = s.idt.base; v["idtr.limit"] = UInt64(s.idt.limit)
        return RegisterSet(source: source, values: v)
    }

    /// A VMCB save area's registers, plus GPRs from elsewhere (nil: unknown).
    static func fromVMCBSave(_ vmcb: VMCB, gprs: GeneralRegisters?, source: String) -> RegisterSet {
        var v: [String: UInt64?] = [:]
        for n in ["rax", "rsp", "rip", "rflags", "cr0", "cr2", "cr3", "cr4", "efer", "dr6", "dr7"] { v[n] = vmcb["save.\(n)"] }
        for s in ["cs", "ss", "ds", "es", "fs", "gs", "tr", "ldtr", "gdtr", "idtr"] {
            for p in ["selector", "base", "limit", "attrib"] {
                guard !(s == "gdtr" || s == "idtr") || p == "base" || p == "limit" else { continue }
                v["\(s).\(p)"] = vmcb["save.\(s).\(p)"]
            }
        }
        let named = Dictionary(uniqueKeysWithValues: gprs?.named ?? [])
        for n in gprNames { v[n] = named[n] }
        return RegisterSet(source: source, values: v)
    }
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
    /// What KVM_RUN returned, for the record.
    public var kvmExit: String
    /// The code written to port 0xF4 (`.exited` stops).
    public var exitStatus: Int32? = nil

    public init(index: Int, kind: StopKind, level: Level, reason: String, exit: DecodedExit?, l1: RegisterSet,
                l2: RegisterSet?, vmcb12GPA: UInt64?, vmcb12AtVMRUN: VMCB?, vmcb12: VMCB?, synced: [FieldChange],
                violations: [Violation], nestedFlags: NestedStateFlags, cachedControls: VMCB?, kvmExit: String) {
        self.index = index; self.kind = kind; self.level = level; self.reason = reason; self.exit = exit; self.l1 = l1
        self.l2 = l2; self.vmcb12GPA = vmcb12GPA; self.vmcb12AtVMRUN = vmcb12AtVMRUN; self.vmcb12 = vmcb12
        self.synced = synced; self.violations = violations; self.nestedFlags = nestedFlags
        self.cachedControls = cachedControls; self.kvmExit = kvmExit
    }

    /// A nested-exit stop built from two vmcb12 pages and register values, as
    /// the engine builds them (for the renderer's tests and benchmark).
    public static func synthetic(index: Int, before: VMCB, after: VMCB, l1: [String: UInt64?], l2: [String: UInt64?]) -> Stop {
        Stop(index: index, kind: .nestedExit, level: .l1, reason: "nested #VMEXIT", exit: DecodedExit(vmcb: after),
             l1: RegisterSet(source: "vCPU registers", values: l1), l2: RegisterSet(source: "vmcb12 save area", values: l2),
             vmcb12GPA: 0x20000, vmcb12AtVMRUN: before, vmcb12: after, synced: SyncDiff.changes(before: before, after: after),
             violations: [], nestedFlags: [], cachedControls: nil, kvmExit: "KVM_EXIT_HLT")
    }
}
