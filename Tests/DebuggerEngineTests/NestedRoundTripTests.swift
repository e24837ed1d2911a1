import DebuggerEngine
import Foundation
import KVMControl
import SVMModel
import Testing

/// A minimal long-mode L1 that VMRUNs an L2, built by hand from machine code,
/// run on a KVM that offers SVM (the sandbox). Everything below is real KVM:
/// the nested #VMEXITs, the vmcb12 KVM writes, the nested-state blob.
///
/// GPA layout (identity-mapped, 2 MiB pages): L1 code 0x1000, page tables
/// 0x2000–0x4fff, L2 code 0x6000, stacks 0x8000/0x9000, vmcb12 0x10000,
/// VM_HSAVE 0x11000, IOPM 0x14000 (12 KiB), MSRPM 0x18000 (8 KiB).
struct NestedMachine {
    static let vmcb12: UInt64 = 0x10000, hsave: UInt64 = 0x11000, iopm: UInt64 = 0x14000, msrpm: UInt64 = 0x18000
    static let l2Code: UInt64 = 0x6000
    static let afterVMRUN: UInt64 = 0x100D, afterStopHLT: UInt64 = 0x100E

    /// L1: mov rax, vmcb12; vmrun; hlt (the test's stop); save.rip += 2; jmp back.
    /// L1 advances L2's RIP itself: the sandbox CPU has no nRIP save.
    static let l1: [UInt8] =
        [0x48, 0xB8] + le(vmcb12, 8)  // 0x1000 mov rax, 0x10000
        + [0x0F, 0x01, 0xD8]  // 0x100a vmrun
        + [0xF4]  // 0x100d hlt  -> KVM_EXIT_HLT, one per nested #VMEXIT
        + [0x48, 0x83, 0x80, 0x78, 0x05, 0x00, 0x00, 0x02]  // 0x100e add qword [rax+0x578], 2  (save.rip)
        + [0xEB, 0xE8]  // 0x1016 jmp 0x1000
    /// L2: every instruction two bytes long.
    static let l2: [UInt8] = [
        0x0F, 0xA2,  // 0x6000 cpuid          intercepted (CPUID)
        0xE6, 0x80,  // 0x6002 out 0x80, al   intercepted through the IOPM
        0xE6, 0xE9,  // 0x6004 out 0xe9, al   not intercepted: reaches the VMM in guest mode
        0xEB, 0xF8,  // 0x6006 jmp 0x6000
    ]

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] {
        (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }

    let vm: VirtualMachine
    let vcpu: VCPU
    let prepared: VMCB

    /// The machine, on a KVM that offers nested SVM (the suite is skipped elsewhere).
    static func make() throws -> NestedMachine {
        let kvm = try KVM()
        let cpuid = try kvm.supportedCPUID()
        guard CPUIDEntry.hasSVM(cpuid), try kvm.checkExtension(.nestedState) > 0 else {
            throw TargetError.noNestedSVM("no SVM in CPUID or KVM_CAP_NESTED_STATE is 0")
        }
        let vm = try kvm.createVM()
        try vm.addMemory(at: 0, size: 2 << 20)
        try vm.write(l1, at: 0x1000)
        try vm.write(l2, at: l2Code)
        try vm.writeInteger(UInt64(0x3003), at: 0x2000)  // PML4[0] -> PDPT
        try vm.writeInteger(UInt64(0x4003), at: 0x3000)  // PDPT[0] -> PD
        try vm.writeInteger(UInt64(0x83), at: 0x4000)  // PD[0]: 2 MiB at 0
        var ioBits = [UInt8](repeating: 0, count: 0x3000)
        ioBits[0x80 / 8] |= 1 << (0x80 % 8)  // intercept port 0x80 only
        try vm.write(ioBits, at: iopm)
        try vm.write([UInt8](repeating: 0, count: 0x2000), at: msrpm)

        var v = VMCB()
        v[integer: .intercepts3] = 1 << 18 | 1 << 27  // CPUID, IOIO_PROT
        v[integer: .intercepts4] = 1  // VMRUN
        v[integer: .iopmBasePA] = iopm
        v[integer: .msrpmBasePA] = msrpm
        v[integer: .asid] = 1
        v[integer: .saveCSSelector] = 0x8
        v[integer: .saveCSAttrib] = 0x29B
        v[integer: .saveCSLimit] = 0xFFFF_FFFF
        let dataSegments: [(VMCBField, VMCBField, VMCBField)] = [
            (.saveSSSelector, .saveSSAttrib, .saveSSLimit),
            (.saveDSSelector, .saveDSAttrib, .saveDSLimit),
            (.saveESSelector, .saveESAttrib, .saveESLimit),
        ]
        for (selector, attrib, limit) in dataSegments {
            v[integer: selector] = 0x10
            v[integer: attrib] = 0xC93
            v[integer: limit] = 0xFFFF_FFFF
        }
        v[integer: .saveEFER] = 1 << 8 | 1 << 10 | 1 << 12  // LME LMA SVME
        v[integer: .saveCR0] = 0x8000_0011
        v[integer: .saveCR3] = 0x2000
        v[integer: .saveCR4] = 1 << 5
        v[integer: .saveDR6] = 0xFFFF_0FF0
        v[integer: .saveDR7] = 0x400
        v[integer: .saveRFLAGS] = 0x2
        v[integer: .saveRIP] = l2Code
        v[integer: .saveRSP] = 0x9000
        v[integer: .saveGPAT] = 0x0007_0406_0007_0406
        try vm.write(v.bytes, at: vmcb12)
        #expect(ConsistencyChecks.check(v, environment: CheckEnvironment(physicalAddressBits: 40)) == [])

        let vcpu = try vm.createVCPU()
        try vcpu.setCPUID(cpuid)  // SVM must be in guest CPUID before EFER.SVME
        var sregs = try vcpu.specialRegisters()
        let code = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x08, type: 11, s: true, l: true, g: true)
        let data = Segment(base: 0, limit: 0xFFFF_FFFF, selector: 0x10, type: 3, db: true, s: true, g: true)
        sregs.cs = code
        sregs.ss = data
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.cr3 = 0x2000
        sregs.cr4 = 1 << 5
        sregs.cr0 = 0x8000_0011
        sregs.efer = 1 << 8 | 1 << 10 | 1 << 12
        try vcpu.setSpecialRegisters(sregs)
        try vcpu.setMSRs([(0xC001_0117, hsave)])  // VM_HSAVE_PA
        var regs = GeneralRegisters()
        regs.rip = 0x1000
        regs.rsp = 0x8000
        try vcpu.setRegisters(regs)
        return NestedMachine(vm: vm, vcpu: vcpu, prepared: v)
    }

    func readVMCB12() throws -> VMCB { try VMCB(bytes: vm.read(at: NestedMachine.vmcb12, count: 4096)) }
}

/// Keeps real artefacts for the end-to-end suite's command-line checks
/// (Tests/e2e/inside-sandbox.sh) when NESTDBG_E2E_OUT names a folder.
func saveForE2E(_ name: String, _ bytes: [UInt8]) throws {
    guard let dir = ProcessInfo.processInfo.environment["NESTDBG_E2E_OUT"] else { return }
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: dir).appendingPathComponent(name))
}

@Suite("nested SVM through KVMControl on real KVM", .serialized, .enabled(if: NestedSVM.available, NestedSVM.reason))
struct NestedRoundTripTests {
    /// Runs until L1's stop HLT after a nested #VMEXIT and returns vmcb12 as KVM left it.
    func nextNestedExit(_ m: NestedMachine) throws -> VMCB {
        let exit = try m.vcpu.run()
        #expect(exit == .hlt, "L1 reached its stop after #VMEXIT (got \(exit))")
        let regs = try m.vcpu.registers()
        #expect(regs.rip == NestedMachine.afterStopHLT)
        #expect(regs.rax == NestedMachine.vmcb12, "RAX still holds the vmcb12 GPA")
        #expect(try !SVMNestedState(bytes: m.vcpu.nestedState().bytes).flags.contains(.guestMode), "back in L1")
        return try m.readVMCB12()
    }

    @Test(
        "L2's CPUID and OUT exit to L1 with vmcb12 synced as KVM documents; a guest-mode OUT reaches the VMM with L1 parked in the nested state"
    )
    func nestedExitsAndNestedState() throws {
        let m = try NestedMachine.make()
        var before = m.prepared
        for cycle in 0..<10 {
            // 1. CPUID at 0x6000.
            var after = try nextNestedExit(m)
            #expect(after.exitCode == 0x72, "cycle \(cycle): CPUID")
            #expect(after[integer: .saveRIP] == NestedMachine.l2Code)
            var changes = SyncDiff.changes(before: before, after: after)
            #expect(changes.filter { $0.sync == .unexpected }.map(\.field.name) == [], "cycle \(cycle)")
            if cycle == 0 {
                #expect(changes.contains { $0.field.name == "control.exit_code" && $0.sync == .exitInformation })
                try saveForE2E("vmcb12-before-vmrun.bin", before.bytes)
                try saveForE2E("vmcb12-after-cpuid-exit.bin", after.bytes)
                print(
                    "first nested #VMEXIT, sync diff: "
                        + changes.map { "\($0.field.name) \($0.before)->\($0.after) [\($0.sync.rawValue)]" }.joined(
                            separator: ", "))
            }
            // L1 now adds 2 to save.rip: that is L1's write, the next "before".
            before = after
            before[integer: .saveRIP] += 2

            // 2. OUT 0x80 at 0x6002, intercepted through the IOPM.
            after = try nextNestedExit(m)
            let decoded = DecodedExit(vmcb: after)
            #expect(decoded.summary == "OUT 0x80, 1 byte", "cycle \(cycle): \(decoded.summary)")
            #expect(after[integer: .saveRIP] == NestedMachine.l2Code + 2)
            #expect(IOIOInfo(after[integer: .exitInfo1]).port == 0x80)
            changes = SyncDiff.changes(before: before, after: after)
            #expect(changes.filter { $0.sync == .unexpected }.map(\.field.name) == [])
            before = after
            before[integer: .saveRIP] += 2

            // 3. OUT 0xE9 at 0x6004: L1 does not intercept it, so it reaches the VMM with the vCPU in L2.
            let exit = try m.vcpu.run()
            guard case .io(0xE9, .out, 1, 1, _) = exit else {
                Issue.record("expected OUT 0xe9 from L2, got \(exit)")
                return
            }
            let state = try SVMNestedState(bytes: m.vcpu.nestedState().bytes)
            #expect(state.flags.contains(.guestMode) && state.flags.contains(.gifSet), "flags \(state.flags)")
            #expect(state.vmcbPA == NestedMachine.vmcb12)
            #expect(state.data?[integer: .saveRIP] == NestedMachine.afterVMRUN, "L1's RIP parked after VMRUN")
            #expect(state.data?[integer: .saveRAX] == NestedMachine.vmcb12)
            #expect(state.data?[integer: .intercepts4] == 1, "KVM's cache of L1's controls")
            let l2rip = try m.vcpu.registers().rip
            #expect(
                l2rip == NestedMachine.l2Code + 4 || l2rip == NestedMachine.l2Code + 6,
                "GET_REGS shows L2: 0x\(String(l2rip, radix: 16))")
            if cycle == 0 {
                print(
                    "guest-mode OUT: nested state flags \(state.flags), vmcb_pa 0x\(String(state.vmcbPA, radix: 16)), L1 rip 0x\(String(state.data?[integer: .saveRIP] ?? 0, radix: 16)), L2 rip 0x\(String(l2rip, radix: 16))"
                )
                try saveForE2E("nested-state-guest-mode.bin", state.bytes)
            }
            // Setting the state straight back must not disturb the guest.
            try m.vcpu.setNestedState(NestedState(bytes: state.bytes))
        }
    }
}
