import KVMControl
import SVMModel

/// A register a pane shows: the GPRs, RIP, RFLAGS, control and debug
/// registers, each segment's four parts and the descriptor tables. `name`
/// is what panes and JSON call it ("rax", "cs.selector"). The raw value is
/// the case's position: registers key every stop's register sets, so they
/// hash as integers.
public enum Register: Int, CaseIterable, Sendable {
    case rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15
    case rip, rflags, cr0, cr2, cr3, cr4, efer, dr6, dr7
    case csSelector, csBase, csLimit, csAttrib
    case ssSelector, ssBase, ssLimit, ssAttrib
    case dsSelector, dsBase, dsLimit, dsAttrib
    case esSelector, esBase, esLimit, esAttrib
    case fsSelector, fsBase, fsLimit, fsAttrib
    case gsSelector, gsBase, gsLimit, gsAttrib
    case trSelector, trBase, trLimit, trAttrib
    case ldtrSelector, ldtrBase, ldtrLimit, ldtrAttrib
    case gdtrBase, gdtrLimit, idtrBase, idtrLimit

    /// "rax", "cs.selector", "gdtr.base": the case name, a segment part after a dot.
    public var name: String { Register.names[rawValue] }

    public init?(name: String) {
        guard let index = Register.names.firstIndex(of: name) else { return nil }
        self = Register.allCases[index]
    }

    /// Derived once from the case names: "csSelector" → "cs.selector".
    private static let names: [String] = allCases.map { register in
        let caseName = String(describing: register)
        guard let upper = caseName.firstIndex(where: \.isUppercase) else { return caseName }
        return caseName[..<upper] + "." + caseName[upper...].lowercased()
    }

    /// The sixteen GPRs, in pane order.
    public static let gprs: [Register] = [
        .rax, .rbx, .rcx, .rdx, .rsi, .rdi, .rsp, .rbp,
        .r8, .r9, .r10, .r11, .r12, .r13, .r14, .r15,
    ]
    /// The GPRs VMRUN and #VMEXIT do not switch (RAX and RSP are in the VMCB).
    public static let unswitchedGPRs: [Register] = gprs.filter { $0 != .rax && $0 != .rsp }

    /// The VMCB save-area field that holds this register, if one does.
    public var vmcbSaveField: VMCBField? { Register.saveFields[self] }

    /// The registers a VMCB save area holds, with their fields.
    static let saveFieldList: [(Register, VMCBField)] = allCases.compactMap { r in saveFields[r].map { (r, $0) } }

    private static let saveFields: [Register: VMCBField] = [
        .rax: .saveRAX, .rsp: .saveRSP, .rip: .saveRIP, .rflags: .saveRFLAGS,
        .cr0: .saveCR0, .cr2: .saveCR2, .cr3: .saveCR3, .cr4: .saveCR4, .efer: .saveEFER, .dr6: .saveDR6,
        .dr7: .saveDR7,
        .csSelector: .saveCSSelector, .csBase: .saveCSBase, .csLimit: .saveCSLimit, .csAttrib: .saveCSAttrib,
        .ssSelector: .saveSSSelector, .ssBase: .saveSSBase, .ssLimit: .saveSSLimit, .ssAttrib: .saveSSAttrib,
        .dsSelector: .saveDSSelector, .dsBase: .saveDSBase, .dsLimit: .saveDSLimit, .dsAttrib: .saveDSAttrib,
        .esSelector: .saveESSelector, .esBase: .saveESBase, .esLimit: .saveESLimit, .esAttrib: .saveESAttrib,
        .fsSelector: .saveFSSelector, .fsBase: .saveFSBase, .fsLimit: .saveFSLimit, .fsAttrib: .saveFSAttrib,
        .gsSelector: .saveGSSelector, .gsBase: .saveGSBase, .gsLimit: .saveGSLimit, .gsAttrib: .saveGSAttrib,
        .trSelector: .saveTRSelector, .trBase: .saveTRBase, .trLimit: .saveTRLimit, .trAttrib: .saveTRAttrib,
        .ldtrSelector: .saveLDTRSelector, .ldtrBase: .saveLDTRBase, .ldtrLimit: .saveLDTRLimit,
        .ldtrAttrib: .saveLDTRAttrib,
        .gdtrBase: .saveGDTRBase, .gdtrLimit: .saveGDTRLimit, .idtrBase: .saveIDTRBase, .idtrLimit: .saveIDTRLimit,
    ]
}

/// A register's value at a stop: known, or not knowable there (never a stale number).
public enum RegisterValue: Equatable, Hashable, Sendable {
    case known(UInt64)
    case unknown

    public var value: UInt64? { if case let .known(v) = self { return v } else { return nil } }
}

/// A register pane's values and where they came from. A register absent
/// from the set is not part of this pane; one present as `.unknown` cannot
/// be known at this stop. Stored by register position: several sets are
/// built at every stop.
public struct RegisterSet: Equatable, Sendable {
    public var source: String
    private var slots: [RegisterValue?]

    public init(source: String, values: [Register: RegisterValue]) {
        self.source = source
        slots = Register.allCases.map { values[$0] }
    }

    private init(source: String, slots: [RegisterValue?]) {
        self.source = source
        self.slots = slots
    }

    /// Known, unknown, or nil when the register is not part of this pane.
    public func entry(_ register: Register) -> RegisterValue? { slots[register.rawValue] }

    /// Every register in the pane, in `Register` order.
    public var values: [Register: RegisterValue] {
        Dictionary(uniqueKeysWithValues: Register.allCases.compactMap { r in slots[r.rawValue].map { (r, $0) } })
    }

    /// The value if known (nil: unknown or not in this pane).
    public subscript(register: Register) -> UInt64? { slots[register.rawValue]?.value }

    public func isKnown(_ register: Register) -> Bool { self[register] != nil }

    /// Marks registers as not knowable at this stop.
    mutating func forget(_ registers: [Register]) {
        for r in registers where slots[r.rawValue] != nil { slots[r.rawValue] = .unknown }
    }

    private static var empty: [RegisterValue?] { [RegisterValue?](repeating: nil, count: Register.allCases.count) }

    /// The GPRs' values in `Register.gprs` order.
    private static func gprValues(_ r: GeneralRegisters) -> [UInt64] {
        [r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15]
    }

    /// Everything from the vCPU's register ioctls (the level that is running).
    static func fromVCPU(_ r: GeneralRegisters, _ s: SpecialRegisters, _ d: DebugRegisters, source: String)
        -> RegisterSet
    {
        var v = empty
        for (register, value) in zip(Register.gprs, gprValues(r)) { v[register.rawValue] = .known(value) }
        let plain: [(Register, UInt64)] = [
            (.rip, r.rip), (.rflags, r.rflags), (.cr0, s.cr0), (.cr2, s.cr2), (.cr3, s.cr3),
            (.cr4, s.cr4), (.efer, s.efer), (.dr6, d.dr6), (.dr7, d.dr7),
            (.gdtrBase, s.gdt.base), (.gdtrLimit, UInt64(s.gdt.limit)),
            (.idtrBase, s.idt.base), (.idtrLimit, UInt64(s.idt.limit)),
        ]
        for (register, value) in plain { v[register.rawValue] = .known(value) }
        let segments: [(Segment, [Register])] = [
            (s.cs, [.csSelector, .csBase, .csLimit, .csAttrib]), (s.ss, [.ssSelector, .ssBase, .ssLimit, .ssAttrib]),
            (s.ds, [.dsSelector, .dsBase, .dsLimit, .dsAttrib]), (s.es, [.esSelector, .esBase, .esLimit, .esAttrib]),
            (s.fs, [.fsSelector, .fsBase, .fsLimit, .fsAttrib]), (s.gs, [.gsSelector, .gsBase, .gsLimit, .gsAttrib]),
            (s.tr, [.trSelector, .trBase, .trLimit, .trAttrib]),
            (s.ldt, [.ldtrSelector, .ldtrBase, .ldtrLimit, .ldtrAttrib]),
        ]
        for (segment, parts) in segments {
            let values = [
                UInt64(segment.selector), segment.base, UInt64(segment.limit), UInt64(segment.vmcbAttributes),
            ]
            for (register, value) in zip(parts, values) { v[register.rawValue] = .known(value) }
        }
        return RegisterSet(source: source, slots: v)
    }

    /// A VMCB save area's registers, plus the unswitched GPRs from the vCPU
    /// (nil: those are unknown at this stop).
    static func fromVMCBSave(_ vmcb: VMCB, gprs: GeneralRegisters?, source: String) -> RegisterSet {
        var v = empty
        for (register, field) in Register.saveFieldList { v[register.rawValue] = .known(vmcb[integer: field]) }
        for register in Register.unswitchedGPRs { v[register.rawValue] = .unknown }
        if let gprs {
            for (register, value) in zip(Register.gprs, gprValues(gprs)) where register != .rax && register != .rsp {
                v[register.rawValue] = .known(value)
            }
        }
        return RegisterSet(source: source, slots: v)
    }
}
