import KVMControl
import SVMModel

/// One kind of state a migrating VMM moves, each with its own ioctl.
public enum MigrationPart: String, CaseIterable, Sendable {
    case cpuid, memory, lapic, sregs
    case nestedState = "nested-state"
    case tscKHz = "tsc-khz"
    case regs, xsave, xcrs, msrs, events
    case mpState = "mp-state"
    case debugRegs = "debugregs"

    /// The ioctl that puts it (what a restore log and an error name).
    public var setIoctl: String {
        switch self {
        case .cpuid: return "KVM_SET_CPUID2"
        case .memory: return "KVM_SET_USER_MEMORY_REGION + copy"
        case .lapic: return "KVM_SET_LAPIC"
        case .sregs: return "KVM_SET_SREGS2"
        case .nestedState: return "KVM_SET_NESTED_STATE"
        case .tscKHz: return "KVM_SET_TSC_KHZ"
        case .regs: return "KVM_SET_REGS"
        case .xsave: return "KVM_SET_XSAVE"
        case .xcrs: return "KVM_SET_XCRS"
        case .msrs: return "KVM_SET_MSRS"
        case .events: return "KVM_SET_VCPU_EVENTS"
        case .mpState: return "KVM_SET_MP_STATE"
        case .debugRegs: return "KVM_SET_DEBUGREGS"
        }
    }
}

/// What `--omit` leaves out of a restore: a whole part, the PDPTRs alone
/// (KVM_SET_SREGS instead of SREGS2), or one MSR.
public enum Omission: Hashable, Sendable, CustomStringConvertible {
    case part(MigrationPart)
    case pdptrs
    case msr(UInt32)

    /// "nested-state", "pdptrs", "msr:0xc0010117" (or a known MSR's name, "msr:VM_HSAVE_PA").
    public init?(_ text: String) {
        if text == "pdptrs" {
            self = .pdptrs
            return
        }
        if text.hasPrefix("msr:") {
            let what = String(text.dropFirst(4))
            if let known = MSRNames.index(named: what) {
                self = .msr(known)
                return
            }
            let digits = what.lowercased().hasPrefix("0x") ? String(what.dropFirst(2)) : what
            guard let index = UInt32(digits, radix: 16) else { return nil }
            self = .msr(index)
            return
        }
        guard let part = MigrationPart(rawValue: text), part != .cpuid, part != .memory else { return nil }
        self = .part(part)
    }

    public var description: String {
        switch self {
        case let .part(p): return p.rawValue
        case .pdptrs: return "pdptrs"
        case let .msr(index): return "msr:\(MSRNames.name(of: index))"
        }
    }

    public static let help =
        "nested-state, pdptrs (KVM_SET_SREGS instead of SREGS2), events, msrs, msr:INDEX|NAME, lapic, xsave, xcrs, mp-state, debugregs, tsc-khz, regs, sregs"
}

/// MSRs a reader knows by name (the rest are shown by index).
public enum MSRNames {
    public static let vmHsavePA: UInt32 = 0xC001_0117
    static let table: [(UInt32, String)] = [
        (0x10, "TSC"), (0x1B, "APIC_BASE"), (0x3A, "FEATURE_CONTROL"), (0x3B, "TSC_ADJUST"), (0x48, "SPEC_CTRL"),
        (0x174, "SYSENTER_CS"), (0x175, "SYSENTER_ESP"), (0x176, "SYSENTER_EIP"), (0x1A0, "MISC_ENABLE"),
        (0x277, "PAT"), (0x6E0, "TSC_DEADLINE"), (0xC000_0081, "STAR"), (0xC000_0082, "LSTAR"), (0xC000_0083, "CSTAR"),
        (0xC000_0084, "SFMASK"), (0xC000_0100, "FS_BASE"), (0xC000_0101, "GS_BASE"), (0xC000_0102, "KERNEL_GS_BASE"),
        (0xC000_0103, "TSC_AUX"), (0xC001_0114, "VM_CR"), (0xC001_0117, "VM_HSAVE_PA"), (0xC001_0015, "HWCR"),
        (0x4B56_4D00, "KVM_WALL_CLOCK_NEW"), (0x4B56_4D01, "KVM_SYSTEM_TIME_NEW"), (0x4B56_4D02, "KVM_ASYNC_PF_EN"),
        (0x4B56_4D03, "KVM_STEAL_TIME"), (0x4B56_4D04, "KVM_PV_EOI_EN"), (0x4B56_4D05, "KVM_POLL_CONTROL"),
        (0x4B56_4D06, "KVM_ASYNC_PF_INT"), (0x4B56_4D07, "KVM_ASYNC_PF_ACK"),
        (0x4000_0010, "HV_VP_RUNTIME"), (0x4000_0020, "HV_TIME_REF_COUNT"), (0x4000_0021, "HV_REFERENCE_TSC"),
    ]

    /// Counters that run on by themselves: a read-back after a restore differs by the time in between.
    public static let timeDependent: Set<UInt32> = [0x10, 0x4000_0010, 0x4000_0020]

    public static func name(of index: UInt32) -> String {
        table.first { $0.0 == index }?.1 ?? "0x" + String(index, radix: 16)
    }

    public static func index(named name: String) -> UInt32? { table.first { $0.1 == name.uppercased() }?.0 }
}

/// Guest-physical memory of one slot, copied.
public struct MemoryImage: Sendable {
    public var guestPhysicalAddress: UInt64
    public var bytes: [UInt8]
}

/// Everything a VMM saves to move a vCPU: what QEMU's
/// `kvm_arch_get_registers` reads (VCPU_EVENTS, MP_STATE, REGS, XSAVE, XCRS,
/// SREGS2, MSRs, LAPIC, DEBUGREGS, NESTED_STATE), the CPUID and TSC rate it
/// configures the destination with, and guest memory. A value: taken at a
/// stop, kept, restored into another VM, compared.
public struct VCPUState: Sendable {
    public var cpuid: [CPUIDEntry]
    public var memory: [MemoryImage]
    /// nil: no in-kernel irqchip (nestdbg's own VMs take HLT in userspace), so no LAPIC to move.
    public var lapic: [UInt8]?
    public var sregs: SpecialRegisters
    /// nil: this KVM has no nested state (KVM_CAP_NESTED_STATE 0).
    public var nested: NestedState?
    public var tscKHz: UInt32?
    public var regs: GeneralRegisters
    public var xsave: [UInt8]
    /// nil: KVM_CAP_XCRS is 0 (a CPU without XSAVE, like the sandbox's qemu64), as QEMU then skips them.
    public var xcrs: [XCR]?
    public var msrs: [(index: UInt32, value: UInt64)]
    /// MSRs of KVM's list that KVM_GET_MSRS refused for this vCPU (not saved).
    public var refusedMSRs: [UInt32]
    public var events: VCPUEvents
    public var mpState: MPState
    public var debugRegs: DebugRegisters

    /// The nested state decoded (nil outside SVM or when KVM has none).
    public var svmNested: SVMNestedState? { nested.flatMap { try? SVMNestedState(bytes: $0.bytes) } }
    public var inGuestMode: Bool { svmNested?.flags.contains(.guestMode) ?? false }

    /// The MSRs a VMM saves: KVM's list (KVM_GET_MSR_INDEX_LIST) and VM_HSAVE_PA,
    /// which QEMU saves too (its has_msr_hsave_pa); added here where the list lacks it.
    static func msrIndices(_ kvm: KVM) throws -> [UInt32] {
        var list = try kvm.msrIndexList()
        if !list.contains(MSRNames.vmHsavePA) { list.append(MSRNames.vmHsavePA) }
        return list
    }

    /// Reads the vCPU in QEMU's `kvm_arch_get_registers` order. The calling
    /// thread must be the vCPU's owner, and the vCPU stopped.
    static func capture(vcpu: VCPU, vm: VirtualMachine) throws -> VCPUState {
        let events = try vcpu.events()
        let mpState = try vcpu.mpState()
        let regs = try vcpu.registers()
        let xsave = try vcpu.xsave(size: (try? vm.checkExtension(.xsave2)) ?? 0)
        let xcrs = (try? vm.checkExtension(.xcrs)) ?? 0 > 0 ? try vcpu.xcrs() : nil
        let sregs = try vcpu.specialRegisters()
        let (msrs, refused) = try readMSRs(vcpu, try msrIndices(vm.system))
        let lapic = vm.hasIRQChip ? try vcpu.lapic() : nil
        let debugRegs = try vcpu.debugRegisters()
        let nested = vcpu.nestedStateMaxSize > 0 ? try vcpu.nestedState() : nil
        let tscKHz = (try? vm.system.checkExtension(.getTSCKHz)) ?? 0 > 0 ? try vcpu.tscKHz() : nil
        let memory = try vm.regions.map {
            MemoryImage(
                guestPhysicalAddress: $0.guestPhysicalAddress,
                bytes: try vm.read(at: $0.guestPhysicalAddress, count: $0.size))
        }
        return VCPUState(
            cpuid: try vcpu.cpuid(), memory: memory, lapic: lapic, sregs: sregs, nested: nested, tscKHz: tscKHz,
            regs: regs, xsave: xsave, xcrs: xcrs, msrs: msrs, refusedMSRs: refused, events: events,
            mpState: mpState, debugRegs: debugRegs)
    }

    /// KVM_GET_MSRS stops at the first MSR it refuses: read on past it, noting each refused one.
    private static func readMSRs(_ vcpu: VCPU, _ indices: [UInt32]) throws -> (
        [(index: UInt32, value: UInt64)], [UInt32]
    ) {
        var values: [(index: UInt32, value: UInt64)] = []
        let refused = try pastRefusedMSRs(indices, index: { $0 }) { run in
            values += zip(run, try vcpu.msrs(run)).map { (index: $0, value: $1) }
        }
        return (values, refused)
    }

    /// Runs `body` (one KVM_GET_MSRS or KVM_SET_MSRS) over `items`; where KVM
    /// stops at an MSR it refuses, runs it again over those before and those
    /// after. Returns the refused MSRs.
    static func pastRefusedMSRs<T>(_ items: [T], index: (T) -> UInt32, _ body: ([T]) throws -> Void) throws -> [UInt32]
    {
        var refused: [UInt32] = []
        var rest = items[...]
        while !rest.isEmpty {
            do {
                try body(Array(rest))
                break
            } catch let KVMError.msrNotHandled(_, msr) {
                guard let at = rest.firstIndex(where: { index($0) == msr }) else { break }
                if at > rest.startIndex { try body(Array(rest[..<at])) }
                refused.append(msr)
                rest = rest[(at + 1)...]
            }
        }
        return refused
    }
}

/// What happened to one part in a restore.
public enum RestoreOutcome: Equatable, Sendable {
    case done
    /// Left out on purpose (`--omit`).
    case omitted
    /// Nothing to restore (no irqchip, no nested state in this KVM).
    case absent(String)
    /// Done in part: what was left out and why (MSRs KVM refused, PDPTRs without SREGS2).
    case partial(String)
    /// The ioctl failed; the restore stops here, as QEMU's does.
    case failed(String)
}

/// One step of a restore, in the order it ran.
public struct RestoreStep: Equatable, Sendable {
    public var part: MigrationPart
    public var ioctl: String
    public var outcome: RestoreOutcome
}

extension VCPUState {
    /// Puts this state into a fresh vCPU of a fresh VM: CPUID (at vCPU
    /// creation, before anything else, as QEMU's kvm_arch_init_vcpu) and
    /// memory are already in place; then the parts in `order`, leaving out
    /// `omitting`. Stops at the first ioctl KVM refuses, as QEMU's
    /// kvm_arch_put_registers does, and says which.
    func restore(into vcpu: VCPU, order: RestoreOrder, omitting: Set<Omission>) -> [RestoreStep] {
        var log: [RestoreStep] = []
        for part in order.steps {
            let outcome: RestoreOutcome
            if omitting.contains(.part(part)) {
                outcome = .omitted
            } else {
                do {
                    outcome = try put(part, into: vcpu, omitting: omitting)
                } catch {
                    outcome = .failed("\(error)")
                }
            }
            let ioctl =
                part == .sregs && (omitting.contains(.pdptrs) || !vcpu.hasSREGS2) ? "KVM_SET_SREGS" : part.setIoctl
            log.append(RestoreStep(part: part, ioctl: ioctl, outcome: outcome))
            if case .failed = outcome { break }
        }
        return log
    }

    private func put(_ part: MigrationPart, into vcpu: VCPU, omitting: Set<Omission>) throws -> RestoreOutcome {
        switch part {
        case .cpuid, .memory:
            return .done  // done when the VM and vCPU were made
        case .lapic:
            guard let lapic else { return .absent("no in-kernel irqchip in the source VM") }
            try vcpu.setLAPIC(lapic)
        case .sregs:
            if omitting.contains(.pdptrs) {
                // KVM_SET_SREGS: no PDPTR field; KVM reloads them from guest memory at CR3.
                try vcpu.setLegacySpecialRegisters(sregs)
                return sregs.pdptrs == nil ? .done : .partial("PDPTRs left out (KVM_SET_SREGS)")
            }
            try vcpu.setSpecialRegisters(sregs)
        case .nestedState:
            guard let nested else { return .absent("KVM_CAP_NESTED_STATE is 0") }
            try vcpu.setNestedState(nested)
        case .tscKHz:
            guard let tscKHz else { return .absent("KVM_CAP_GET_TSC_KHZ is 0") }
            try vcpu.setTSCKHz(tscKHz)
        case .regs:
            try vcpu.setRegisters(regs)
        case .xsave:
            try vcpu.setXSAVE(xsave)
        case .xcrs:
            guard let xcrs else { return .absent("KVM_CAP_XCRS is 0 (no XSAVE on this CPU)") }
            try vcpu.setXCRs(xcrs)
        case .msrs:
            return try putMSRs(vcpu, omitting: omitting)
        case .events:
            try vcpu.setEvents(events)
        case .mpState:
            try vcpu.setMPState(mpState)
        case .debugRegs:
            try vcpu.setDebugRegisters(debugRegs)
        }
        return .done
    }

    /// KVM_SET_MSRS stops at the first MSR it refuses: set on past it, naming each refused one.
    private func putMSRs(_ vcpu: VCPU, omitting: Set<Omission>) throws -> RestoreOutcome {
        let kept = msrs.filter { !omitting.contains(.msr($0.index)) }
        let left = msrs.count - kept.count
        let refused = try VCPUState.pastRefusedMSRs(kept, index: { $0.index }) { try vcpu.setMSRs($0) }
        var notes: [String] = []
        if left > 0 { notes.append("\(left) MSR\(left == 1 ? "" : "s") left out") }
        if !refused.isEmpty { notes.append("KVM refused " + refused.map(MSRNames.name(of:)).joined(separator: ", ")) }
        return notes.isEmpty ? .done : .partial(notes.joined(separator: "; "))
    }
}
