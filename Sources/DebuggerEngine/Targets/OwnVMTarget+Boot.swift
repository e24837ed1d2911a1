import KVMControl
import SVMModel

/// The built-in L1s and user images as a VM is booted for them: memory,
/// CPUID, registers and page tables set as firmware or a boot loader would.
extension OwnVMTarget {
    static let memorySize = 2 << 20
    /// RSP where a built-in L1 starts (the Multiboot prologue sets the same).
    static let l1StackTop: UInt64 = 0x8000
    // L1's boot page tables, written by the VMM like firmware would.
    static let l1PML4: UInt64 = 0x10000, l1PDPT: UInt64 = 0x11000, l1PD: UInt64 = 0x12000

    /// Flat 4 GiB segments as a boot loader leaves them: code 0x08 (32-bit, or
    /// 64-bit in long mode), data 0x10.
    static func setFlatSegments(_ sregs: inout SpecialRegisters, longMode: Bool) {
        let code = Segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, db: !longMode, s: true, l: longMode, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 3, db: true, s: true, g: true)
        sregs.cs = code
        sregs.ss = data
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
    }

    /// Checks that KVM offers nested SVM; returns the CPUID to give the guest.
    static func nestedCPUID(_ kvm: KVM) throws -> [CPUIDEntry] {
        let cpuid = try kvm.supportedCPUID()
        guard CPUIDEntry.hasSVM(cpuid) else { throw TargetError.noNestedSVM("KVM_GET_SUPPORTED_CPUID has no SVM") }
        guard try kvm.checkExtension(.nestedState) > 0 else {
            throw TargetError.noNestedSVM("KVM_CAP_NESTED_STATE is 0")
        }
        return cpuid
    }

    /// A user's L1 image on the PC `machine` describes, entered as Multiboot
    /// v1 specifies: 32-bit protected mode, paging off, flat segments, EAX =
    /// 0x2BADB002, EBX = the information structure (memory, the command line
    /// "`imageName` ARGS", modules). A flat binary starts the same way at its
    /// entry. Guest CPUID is KVM's supported set (so SVM where KVM offers
    /// it), each vCPU's APIC ID its index; vCPUs above 0 wait for INIT/SIPI
    /// in the in-kernel LAPIC. `vmrunSites` default to the image's own
    /// (symbols, else a scan for 0F 01 D8).
    public static func image(
        kvm: KVM, image: GuestImage, machine: MachineConfig = MachineConfig(), imageName: String = "image",
        vmrunSites: [UInt64]? = nil, name: String = "image"
    ) throws -> OwnVMTarget {
        try machine.validate()
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: machine.memoryBytes)
        if machine.irqchip { try vm.createIRQChip() }
        var imageEnd: UInt64 = 0
        for seg in image.segments {
            let end = seg.physicalAddress + UInt64(max(seg.memorySize, seg.bytes.count))
            guard end <= UInt64(machine.memoryBytes) else {
                throw ImageError.outsideMemory(seg.physicalAddress, seg.memorySize)
            }
            try vm.write(seg.bytes, at: seg.physicalAddress)  // the rest of memsz stays zero (fresh memory)
            imageEnd = max(imageEnd, end)
        }
        func free(_ address: UInt64, _ count: Int) -> Bool {
            !image.segments.contains {
                address < $0.physicalAddress + UInt64(max($0.memorySize, $0.bytes.count))
                    && $0.physicalAddress < address + UInt64(count)
            }
        }
        if machine.irqchip, free(SMMStub.entry, SMMStub.code.count), try vm.checkExtension(.x86SMM) > 0,
            try vm.mapMemoryForSMM()
        {
            try vm.write(SMMStub.code, at: SMMStub.entry)
        }
        let cpuid = try kvm.supportedCPUID()
        let vcpus = try (0..<machine.vcpuCount).map { id in
            let vcpu = try vm.createVCPU(id: UInt32(id))
            try vcpu.setCPUID(cpuid.map { $0.withAPICID(UInt32(id)) })
            return vcpu
        }
        let vcpu = vcpus[0]
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, longMode: false)
        sregs.cr0 = 0x11
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
        try vcpu.setSpecialRegisters(sregs)
        var regs = GeneralRegisters()
        regs.rip = image.entry
        if image.isMultiboot {
            guard free(Multiboot.infoAddress, Multiboot.infoPageSize) else {
                throw ImageError.outsideMemory(Multiboot.infoAddress, Multiboot.infoPageSize)
            }
            for piece in try Multiboot.layout(config: machine, imageName: imageName, imageEnd: imageEnd) {
                try vm.write(piece.bytes, at: piece.address)
            }
            regs.rax = UInt64(Multiboot.bootMagic)
            regs.rbx = Multiboot.infoAddress
        }
        try vcpu.setRegisters(regs)
        let devices = Devices(
            ports: .standard,
            firmwareConfig: FirmwareConfig(
                ramSize: UInt64(machine.memoryBytes),
                cpuCount: UInt16(machine.vcpuCount)))
        // The banner says which vCPU the debugger follows.
        let shown = machine.vcpuCount > 1 ? "\(name), vCPU 0 of \(machine.vcpuCount) (all-stop)" : name
        return OwnVMTarget(
            name: shown, vm: vm, vcpu: vcpu, devices: devices, vmrunSites: vmrunSites ?? image.vmrunSites(),
            symbols: image.symbols, secondaries: Array(vcpus.dropFirst()))
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
            try vm.writeInteger(UInt32(0x83), at: l1PML4)  // PDE[0]: 4 MiB page at 0
            sregs.cr3 = l1PML4
            sregs.cr4 = 1 << 4
        case .pae:
            try vm.writeInteger(l1PDPT | 1, at: l1PML4)  // PDPTE[0] -> PD (PDPTEs take only P)
            try vm.writeInteger(UInt64(0x83), at: l1PDPT)  // PDE[0]: 2 MiB page at 0
            // PDPTE[1] (linear 1-2 GiB): one of two page directories whose first
            // 4 KiB page holds a different marker; L2 flips it (see demo.S).
            try vm.writeInteger(paePDA | 1, at: l1PML4 + 8)
            for (pd, pt, page, marker) in [
                (paePDA, paePDA + 0x2000, paePDA + 0x4000, paeMarkerA),
                (paePDB, paePDB + 0x2000, paePDB + 0x4000, paeMarkerB),
            ] {
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
        return OwnVMTarget(
            name: "scenario-\(paging.rawValue)", vm: vm, vcpu: vcpu, ports: .demo,
            vmrunSites: [image.address("vmrun32")], symbols: image.symbols)
    }

    /// The events scenario (demo.S): a 64-bit L1 injecting #UD into L2 at
    /// every round and leaving a virtual interrupt pending while L2 runs.
    public static func eventsScenario(kvm: KVM) throws -> OwnVMTarget {
        let image = DemoImage()
        let (vm, vcpu) = try longModeL1(
            kvm: kvm, bytes: image.bytes, at: DemoImage.loadAddress,
            entry: image.address("events_entry"))
        return OwnVMTarget(
            name: "scenario-events", vm: vm, vcpu: vcpu, ports: .demo,
            vmrunSites: [image.address("events_vmrun")], symbols: image.symbols)
    }

    /// The timer scenario (demo.S): a 64-bit L1 whose x2APIC timer interrupts
    /// its spinning L2 (INTR #VMEXITs); L1 takes each tick through its own IDT
    /// and ends with status 0 after `DemoImage.timerRounds` ticks. The VM has the
    /// in-kernel irqchip (the LAPIC), so the patch source cannot run it.
    public static func timerScenario(kvm: KVM) throws -> OwnVMTarget {
        let image = DemoImage()
        let (vm, vcpu) = try longModeL1(
            kvm: kvm, bytes: image.bytes, at: DemoImage.loadAddress,
            entry: image.address("timer_entry"), irqchip: true)
        return OwnVMTarget(
            name: "scenario-timer", vm: vm, vcpu: vcpu, ports: .demo,
            vmrunSites: [image.address("timer_vmrun")], symbols: image.symbols)
    }

    /// Throws unless KVM offers nested SVM (for tests deciding whether to run).
    public static func nestedCPUIDForTests(_ kvm: KVM) throws { _ = try nestedCPUID(kvm) }

    /// The built-in demo: L1 entered in 64-bit long mode (identity-mapped first 2 MiB, CPL 0).
    public static func demo(kvm: KVM) throws -> OwnVMTarget {
        let image = DemoImage()
        let (vm, vcpu) = try longModeL1(
            kvm: kvm, bytes: image.bytes, at: DemoImage.loadAddress, entry: image.address("l1_entry"))
        return OwnVMTarget(
            name: "demo", vm: vm, vcpu: vcpu, ports: .demo, vmrunSites: [image.address("vmrun")], symbols: image.symbols
        )
    }

    /// The self-checking L1 (selfcheck.S), started like the demo. Its VMRUN
    /// is generated at run time, so no site is known: only a stop source
    /// that needs none (KVM's tracepoints) can stop at its nested exits.
    public static func selfCheck(kvm: KVM) throws -> OwnVMTarget {
        let image = SelfCheckImage()
        let (vm, vcpu) = try longModeL1(
            kvm: kvm, bytes: image.bytes, at: SelfCheckImage.loadAddress,
            entry: image.address("l1_entry"))
        return OwnVMTarget(
            name: "selfcheck", vm: vm, vcpu: vcpu, ports: .demo, vmrunSites: [], symbols: image.symbols,
            unknownVMRUNSitesReason: "its VMRUN is generated at run time")
    }

    /// A VM with nested SVM in its CPUID and an L1 image entered as
    /// `longModeStart` says. L1 sets EFER.SVME itself.
    private static func longModeL1(
        kvm: KVM, bytes: [UInt8], at loadAddress: UInt64,
        entry: UInt64, irqchip: Bool = false
    ) throws -> (VirtualMachine, VCPU) {
        let cpuid = try nestedCPUID(kvm)
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: memorySize)
        if irqchip { try vm.createIRQChip() }
        try vm.write(bytes, at: loadAddress)
        try vm.writeInteger(l1PDPT | 3, at: l1PML4)
        try vm.writeInteger(l1PD | 3, at: l1PDPT)
        try vm.writeInteger(UInt64(0x83), at: l1PD)  // one 2 MiB page at 0
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
    public static func longModeStart(from reset: SpecialRegisters, entry: UInt64) -> (
        SpecialRegisters, GeneralRegisters
    ) {
        var sregs = reset
        setFlatSegments(&sregs, longMode: true)
        sregs.cr3 = l1PML4
        sregs.cr4 = 1 << 5
        sregs.cr0 = 0x8000_0011
        sregs.efer = 1 << 8 | 1 << 10  // LME LMA
        var regs = GeneralRegisters()
        regs.rip = entry
        regs.rsp = l1StackTop
        return (sregs, regs)
    }
}
