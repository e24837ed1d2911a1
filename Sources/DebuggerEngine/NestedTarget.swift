import KVMControl

/// Why a target could not be set up.
public enum TargetError: Error, CustomStringConvertible {
    case noNestedSVM(String)
    public var description: String {
        switch self {
        case let .noNestedSVM(why): return "this KVM cannot run an L1 hypervisor: \(why) (use scripts/sandbox)"
        }
    }
}

/// An L1 hypervisor loaded into a fresh VM, ready to run: the VM, its vCPU,
/// and the L1 addresses of its VMRUN sites.
public final class NestedTarget: @unchecked Sendable {
    public let name: String
    public let vm: VirtualMachine
    public let vcpu: VCPU
    /// L1-linear addresses of VMRUN instructions (0F 01 D8).
    public let vmrunSites: [UInt64]
    /// Symbols for display and tests (name → L1 address).
    public let symbols: [String: UInt64]

    init(name: String, vm: VirtualMachine, vcpu: VCPU, vmrunSites: [UInt64], symbols: [String: UInt64]) {
        self.name = name; self.vm = vm; self.vcpu = vcpu; self.vmrunSites = vmrunSites; self.symbols = symbols
    }

    static let memorySize = 2 << 20
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
    public static func image(kvm: KVM, image: GuestImage, vmrunSites: [UInt64]? = nil) throws -> NestedTarget {
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
        return NestedTarget(name: "image", vm: vm, vcpu: vcpu, vmrunSites: vmrunSites ?? image.vmrunSites(), symbols: image.symbols)
    }

    /// L1's paging in the legacy-paging scenario.
    public enum LegacyPaging: String, Sendable, CaseIterable { case pse, pae }

    /// The legacy-paging scenario: the demo's 32-bit L1, paging with CR4.PSE
    /// (4 MiB pages) or PAE (2 MiB pages), running L2 without nested paging on
    /// its own page tables. Under the sandbox's KVM one of the two fails at the
    /// first nested #VMEXIT depending on kvm_amd npt (sandbox notes: !load_pdptrs).
    public static func legacyPagingScenario(kvm: KVM, paging: LegacyPaging) throws -> NestedTarget {
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
            sregs.cr3 = l1PML4
            sregs.cr4 = 1 << 5
        }
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = image.address("l1_32_entry")
        regs.rsp = 0x8000
        try vcpu.setRegisters(regs)
        return NestedTarget(name: "scenario-\(paging.rawValue)", vm: vm, vcpu: vcpu,
                            vmrunSites: [image.address("vmrun32")], symbols: image.symbols)
    }

    /// Throws unless KVM offers nested SVM (for tests deciding whether to run).
    public static func nestedCPUIDForTests(_ kvm: KVM) throws { _ = try nestedCPUID(kvm) }

    /// The built-in demo: L1 entered in 64-bit long mode (identity-mapped first 2 MiB, CPL 0).
    public static func demo(kvm: KVM) throws -> NestedTarget {
        let cpuid = try nestedCPUID(kvm)
        let image = DemoImage()
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        try vm.write(image.bytes, at: DemoImage.loadAddress)
        try vm.writeInteger(l1PDPT | 3, at: l1PML4)
        try vm.writeInteger(l1PD | 3, at: l1PDPT)
        try vm.writeInteger(UInt64(0x83), at: l1PD)     // one 2 MiB page at 0
        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(cpuid)
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, longMode: true)
        sregs.cr3 = l1PML4; sregs.cr4 = 1 << 5; sregs.cr0 = 0x8000_0011
        sregs.efer = 1 << 8 | 1 << 10                    // LME LMA; L1 sets SVME itself
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = image.address("l1_entry")
        regs.rsp = 0x8000
        try vcpu.setRegisters(regs)
        return NestedTarget(name: "demo", vm: vm, vcpu: vcpu, vmrunSites: [image.address("vmrun")], symbols: image.symbols)
    }
}
