import Foundation
import KVMControl
import TestSupport
import Testing

/// Opens /dev/kvm for a test. In CI a missing device fails the test loudly;
/// elsewhere the test is reported as skipped with the reason.
func openKVM(sourceLocation: SourceLocation = #_sourceLocation) throws -> KVM? {
    try Requirement.kvm(sourceLocation: sourceLocation)
    return try KVM()
}

/// A one-vCPU guest with 2 MiB of memory at GPA 0 and code at `codeAddress`.
/// Built by the tests from raw machine code: the bytes are commented where used.
struct TestGuest {
    static let memorySize = 2 << 20
    static let codeAddress: UInt64 = 0x1000
    let vm: VirtualMachine
    let vcpu: VCPU

    /// Real mode: CS=0, IP=0x1000.
    static func realMode(_ kvm: KVM, code: [UInt8]) throws -> TestGuest {
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        try vm.write(code, at: codeAddress)
        let vcpu = try vm.createVCPU()
        var sregs = try vcpu.specialRegisters()
        sregs.cs.base = 0
        sregs.cs.selector = 0
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = codeAddress
        try vcpu.setRegisters(regs)
        return TestGuest(vm: vm, vcpu: vcpu)
    }

    /// Paging modes a test guest can be put in.
    enum Paging { case off, pse32, long }

    /// Protected mode, flat segments. With paging, linear 0–4 MiB and 4–8 MiB
    /// both map to physical 0 (4 MiB PSE pages, or 2 MiB pages in long mode),
    /// so the code at 0x1000 runs at linear 0x401000, which only works with paging.
    static let pagedAlias: UInt64 = 0x40_0000
    static func protectedMode(_ kvm: KVM, paging: Paging, code: [UInt8]) throws -> TestGuest {
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        try vm.write(code, at: codeAddress)
        let vcpu = try vm.createVCPU()
        var sregs = try vcpu.specialRegisters()
        let long = paging == .long
        let code = Segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, dpl: 0, db: !long, s: true, l: long, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 3, dpl: 0, db: true, s: true, g: true)
        sregs.cs = code
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.cr0 = 1 << 0 | 1 << 4  // PE | ET
        var regs = GeneralRegisters()
        regs.rip = codeAddress
        switch paging {
        case .off: break
        case .pse32:
            let pde: UInt32 = 0x83  // present | writable | 4 MiB page, frame 0
            try vm.writeInteger(pde, at: 0x2000)
            try vm.writeInteger(pde, at: 0x2004)
            sregs.cr3 = 0x2000
            sregs.cr4 = 1 << 4  // PSE
            sregs.cr0 |= 1 << 31  // PG
            regs.rip = pagedAlias + codeAddress
        case .long:
            try vm.writeInteger(UInt64(0x3003), at: 0x2000)  // PML4[0] -> PDPT 0x3000
            try vm.writeInteger(UInt64(0x4003), at: 0x3000)  // PDPT[0] -> PD 0x4000
            try vm.writeInteger(UInt64(0x83), at: 0x4000)  // PD[0]: 2 MiB page at 0
            try vm.writeInteger(UInt64(0x83), at: 0x4010)  // PD[2]: linear 4 MiB -> 0
            sregs.cr3 = 0x2000
            sregs.cr4 = 1 << 5  // PAE
            sregs.efer = 1 << 8 | 1 << 10  // LME | LMA
            sregs.cr0 |= 1 << 31
            regs.rip = pagedAlias + codeAddress
        }
        try vcpu.setSpecialRegisters(sregs)
        regs.rsp = 0x8000
        try vcpu.setRegisters(regs)
        return TestGuest(vm: vm, vcpu: vcpu)
    }
}
