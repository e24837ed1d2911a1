import CKVM

/// General-purpose registers, RIP and RFLAGS (`kvm_regs`).
public struct GeneralRegisters: Equatable, Sendable {
    public var rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0
    public var rsi: UInt64 = 0, rdi: UInt64 = 0, rsp: UInt64 = 0, rbp: UInt64 = 0
    public var r8: UInt64 = 0, r9: UInt64 = 0, r10: UInt64 = 0, r11: UInt64 = 0
    public var r12: UInt64 = 0, r13: UInt64 = 0, r14: UInt64 = 0, r15: UInt64 = 0
    public var rip: UInt64 = 0
    /// Bit 1 is architecturally always 1.
    public var rflags: UInt64 = 0x2

    public init() {}

    init(_ c: kvm_regs) {
        rax = c.rax
        rbx = c.rbx
        rcx = c.rcx
        rdx = c.rdx
        rsi = c.rsi
        rdi = c.rdi
        rsp = c.rsp
        rbp = c.rbp
        r8 = c.r8
        r9 = c.r9
        r10 = c.r10
        r11 = c.r11
        r12 = c.r12
        r13 = c.r13
        r14 = c.r14
        r15 = c.r15
        rip = c.rip
        rflags = c.rflags
    }

    var cValue: kvm_regs {
        kvm_regs(
            rax: rax, rbx: rbx, rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, rsp: rsp, rbp: rbp,
            r8: r8, r9: r9, r10: r10, r11: r11, r12: r12, r13: r13, r14: r14, r15: r15,
            rip: rip, rflags: rflags)
    }

    /// Name/value pairs in the order a register pane lists them.
    public var named: [(String, UInt64)] {
        [
            ("rax", rax), ("rbx", rbx), ("rcx", rcx), ("rdx", rdx), ("rsi", rsi), ("rdi", rdi), ("rsp", rsp),
            ("rbp", rbp),
            ("r8", r8), ("r9", r9), ("r10", r10), ("r11", r11), ("r12", r12), ("r13", r13), ("r14", r14), ("r15", r15),
            ("rip", rip), ("rflags", rflags),
        ]
    }
}

/// A segment register as KVM presents it (`kvm_segment`, attributes unpacked).
public struct Segment: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt32 = 0xFFFF
    public var selector: UInt16 = 0
    public var type: UInt8 = 0
    public var present = true
    public var dpl: UInt8 = 0
    public var db = false
    public var s = true
    public var l = false
    public var g = false
    public var avl = false
    public var unusable = false

    public init(
        base: UInt64 = 0, limit: UInt32 = 0xFFFF, selector: UInt16 = 0, type: UInt8 = 0, present: Bool = true,
        dpl: UInt8 = 0, db: Bool = false, s: Bool = true, l: Bool = false, g: Bool = false,
        avl: Bool = false, unusable: Bool = false
    ) {
        self.base = base
        self.limit = limit
        self.selector = selector
        self.type = type
        self.present = present
        self.dpl = dpl
        self.db = db
        self.s = s
        self.l = l
        self.g = g
        self.avl = avl
        self.unusable = unusable
    }

    init(_ c: kvm_segment) {
        self.init(
            base: c.base, limit: c.limit, selector: c.selector, type: c.type, present: c.present != 0,
            dpl: c.dpl, db: c.db != 0, s: c.s != 0, l: c.l != 0, g: c.g != 0, avl: c.avl != 0,
            unusable: c.unusable != 0)
    }

    var cValue: kvm_segment {
        kvm_segment(
            base: base, limit: limit, selector: selector, type: type, present: present ? 1 : 0, dpl: dpl,
            db: db ? 1 : 0, s: s ? 1 : 0, l: l ? 1 : 0, g: g ? 1 : 0, avl: avl ? 1 : 0,
            unusable: unusable ? 1 : 0, padding: 0)
    }

    /// The AMD "compressed" 12-bit attribute word a VMCB segment carries.
    public var vmcbAttributes: UInt16 {
        UInt16(type & 0xF) | (s ? 1 << 4 : 0) | UInt16(dpl & 3) << 5 | (present ? 1 << 7 : 0)
            | (avl ? 1 << 8 : 0) | (l ? 1 << 9 : 0) | (db ? 1 << 10 : 0) | (g ? 1 << 11 : 0)
    }
}

/// GDTR or IDTR (`kvm_dtable`).
public struct DescriptorTable: Equatable, Sendable {
    public var base: UInt64 = 0
    public var limit: UInt16 = 0xFFFF
    public init(base: UInt64 = 0, limit: UInt16 = 0xFFFF) {
        self.base = base
        self.limit = limit
    }
    init(_ c: kvm_dtable) { self.init(base: c.base, limit: c.limit) }
    var cValue: kvm_dtable { kvm_dtable(base: base, limit: limit, padding: (0, 0, 0)) }
}

/// Segments, descriptor tables, control registers, EFER, APIC base and, in
/// PAE paging, the PDPTRs (`kvm_sregs2`, or `kvm_sregs` on kernels before 5.14).
public struct SpecialRegisters: Equatable, Sendable {
    public var cs = Segment(), ds = Segment(), es = Segment(), fs = Segment(), gs = Segment(), ss = Segment()
    public var tr = Segment(type: 11, s: false)
    public var ldt = Segment(type: 2, s: false)
    public var gdt = DescriptorTable(), idt = DescriptorTable()
    public var cr0: UInt64 = 0x60000010, cr2: UInt64 = 0, cr3: UInt64 = 0, cr4: UInt64 = 0, cr8: UInt64 = 0
    public var efer: UInt64 = 0
    public var apicBase: UInt64 = 0xFEE0_0900
    /// The four PDPTEs when KVM reports them valid (PAE paging), else nil.
    public var pdptrs: [UInt64]?

    public init() {}

    init(_ c: kvm_sregs2) {
        cs = Segment(c.cs)
        ds = Segment(c.ds)
        es = Segment(c.es)
        fs = Segment(c.fs)
        gs = Segment(c.gs)
        ss = Segment(c.ss)
        tr = Segment(c.tr)
        ldt = Segment(c.ldt)
        gdt = DescriptorTable(c.gdt)
        idt = DescriptorTable(c.idt)
        cr0 = c.cr0
        cr2 = c.cr2
        cr3 = c.cr3
        cr4 = c.cr4
        cr8 = c.cr8
        efer = c.efer
        apicBase = c.apic_base
        pdptrs =
            c.flags & UInt64(KVM_SREGS2_FLAGS_PDPTRS_VALID) != 0
            ? [c.pdptrs.0, c.pdptrs.1, c.pdptrs.2, c.pdptrs.3] : nil
    }

    init(_ c: kvm_sregs) {
        cs = Segment(c.cs)
        ds = Segment(c.ds)
        es = Segment(c.es)
        fs = Segment(c.fs)
        gs = Segment(c.gs)
        ss = Segment(c.ss)
        tr = Segment(c.tr)
        ldt = Segment(c.ldt)
        gdt = DescriptorTable(c.gdt)
        idt = DescriptorTable(c.idt)
        cr0 = c.cr0
        cr2 = c.cr2
        cr3 = c.cr3
        cr4 = c.cr4
        cr8 = c.cr8
        efer = c.efer
        apicBase = c.apic_base
        pdptrs = nil
    }

    var sregs2: kvm_sregs2 {
        var c = kvm_sregs2()
        fill(&c.cs, &c.ds, &c.es, &c.fs, &c.gs, &c.ss, &c.tr, &c.ldt, &c.gdt, &c.idt)
        c.cr0 = cr0
        c.cr2 = cr2
        c.cr3 = cr3
        c.cr4 = cr4
        c.cr8 = cr8
        c.efer = efer
        c.apic_base = apicBase
        if let p = pdptrs, p.count == 4 {
            c.flags = UInt64(KVM_SREGS2_FLAGS_PDPTRS_VALID)
            c.pdptrs = (p[0], p[1], p[2], p[3])
        }
        return c
    }

    /// Writes these values over `c`, keeping its interrupt bitmap (legacy SREGS carries one).
    func apply(to c: inout kvm_sregs) {
        fill(&c.cs, &c.ds, &c.es, &c.fs, &c.gs, &c.ss, &c.tr, &c.ldt, &c.gdt, &c.idt)
        c.cr0 = cr0
        c.cr2 = cr2
        c.cr3 = cr3
        c.cr4 = cr4
        c.cr8 = cr8
        c.efer = efer
        c.apic_base = apicBase
    }

    private func fill(
        _ cs: inout kvm_segment, _ ds: inout kvm_segment, _ es: inout kvm_segment,
        _ fs: inout kvm_segment, _ gs: inout kvm_segment, _ ss: inout kvm_segment,
        _ tr: inout kvm_segment, _ ldt: inout kvm_segment, _ gdt: inout kvm_dtable, _ idt: inout kvm_dtable
    ) {
        cs = self.cs.cValue
        ds = self.ds.cValue
        es = self.es.cValue
        fs = self.fs.cValue
        gs = self.gs.cValue
        ss = self.ss.cValue
        tr = self.tr.cValue
        ldt = self.ldt.cValue
        gdt = self.gdt.cValue
        idt = self.idt.cValue
    }
}

/// DR0–DR3, DR6, DR7 (`kvm_debugregs`).
public struct DebugRegisters: Equatable, Sendable {
    public var db: [UInt64] = [0, 0, 0, 0]
    public var dr6: UInt64 = 0xFFFF0FF0
    public var dr7: UInt64 = 0x400
    public init() {}
    init(_ c: kvm_debugregs) {
        db = [c.db.0, c.db.1, c.db.2, c.db.3]
        dr6 = c.dr6
        dr7 = c.dr7
    }
    var cValue: kvm_debugregs {
        var c = kvm_debugregs()
        c.db = (db[0], db[1], db[2], db[3])
        c.dr6 = dr6
        c.dr7 = dr7
        return c
    }
}

/// Pending and injected events (`kvm_vcpu_events`), with the fields a
/// debugger shows named; the whole struct round-trips unchanged.
public struct VCPUEvents: Sendable {
    public var raw: kvm_vcpu_events
    init(_ raw: kvm_vcpu_events) { self.raw = raw }

    public var exceptionInjected: Bool { raw.exception.injected != 0 }
    public var exceptionPending: Bool { raw.exception.pending != 0 }
    public var exceptionVector: UInt8 { raw.exception.nr }
    public var exceptionErrorCode: UInt32? { raw.exception.has_error_code != 0 ? raw.exception.error_code : nil }
    public var interruptInjected: Bool { raw.interrupt.injected != 0 }
    public var interruptVector: UInt8 { raw.interrupt.nr }
    public var interruptShadow: UInt8 { raw.interrupt.shadow }
    public var nmiInjected: Bool { raw.nmi.injected != 0 }
    public var nmiPending: Bool { raw.nmi.pending != 0 }
    public var nmiMasked: Bool { raw.nmi.masked != 0 }
    public var inSMM: Bool { raw.smi.smm != 0 }
    public var tripleFaultPending: Bool { raw.triple_fault.pending != 0 }

    /// Every field by its uapi name, in struct order (for diffs and JSON).
    public var fields: [(name: String, value: UInt64)] {
        let r = raw
        return [
            ("exception.injected", UInt64(r.exception.injected)), ("exception.nr", UInt64(r.exception.nr)),
            ("exception.has_error_code", UInt64(r.exception.has_error_code)),
            ("exception.pending", UInt64(r.exception.pending)),
            ("exception.error_code", UInt64(r.exception.error_code)),
            ("interrupt.injected", UInt64(r.interrupt.injected)), ("interrupt.nr", UInt64(r.interrupt.nr)),
            ("interrupt.soft", UInt64(r.interrupt.soft)), ("interrupt.shadow", UInt64(r.interrupt.shadow)),
            ("nmi.injected", UInt64(r.nmi.injected)), ("nmi.pending", UInt64(r.nmi.pending)),
            ("nmi.masked", UInt64(r.nmi.masked)),
            ("sipi_vector", UInt64(r.sipi_vector)), ("flags", UInt64(r.flags)),
            ("smi.smm", UInt64(r.smi.smm)), ("smi.pending", UInt64(r.smi.pending)),
            ("smi.smm_inside_nmi", UInt64(r.smi.smm_inside_nmi)), ("smi.latched_init", UInt64(r.smi.latched_init)),
            ("triple_fault.pending", UInt64(r.triple_fault.pending)),
            ("exception_has_payload", UInt64(r.exception_has_payload)), ("exception_payload", r.exception_payload),
        ]
    }
}

/// The vCPU's multiprocessing state (`kvm_mp_state`).
public struct MPState: RawRepresentable, Equatable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let runnable = MPState(rawValue: 0)
    public static let uninitialized = MPState(rawValue: 1)
    public static let initReceived = MPState(rawValue: 2)
    public static let halted = MPState(rawValue: 3)
    public static let sipiReceived = MPState(rawValue: 4)
    private static let names = ["RUNNABLE", "UNINITIALIZED", "INIT_RECEIVED", "HALTED", "SIPI_RECEIVED"]
    public var description: String {
        rawValue < MPState.names.count ? MPState.names[Int(rawValue)] : "MP_STATE_\(rawValue)"
    }
}
