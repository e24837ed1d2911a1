import DebuggerEngine
import Foundation
import TestSupport
import Testing

/// The own VMM as a PC, on this machine's KVM with the VMM-check L1 (vmmcheck.S, no SVM needed):
/// the command line, a module, fw_cfg, an unclaimed port, the APIC timer, INIT/SIPI, a self-SMI, --free, --smp.
@Suite("Machine CLI")
struct MachineCLITests {
    /// The vmmcheck ELF written by write-image, and an environ-like module.
    private func files() throws -> (image: String, module: String) {
        let image = try CLI.path("vmmcheck.elf")
        let written = try CLI.run("write-image", "--scenario", "vmmcheck", image)
        #expect(written.status == 0, "\(written.stderr)")
        return (image, try CLI.file(Array("NR_CPUS=3\n".utf8), "environ"))
    }

    @Test(
        "--free runs the VMM check to PASS: the command line and module as passed, fw_cfg's count, three timer interrupts, every AP (real /dev/kvm)"
    )
    func freeRun() throws {
        try Requirement.kvm()
        let (image, module) = try files()
        let r = try CLI.run(
            "run", "--free", "--image", image, "--append", "-a b", "--module", module, "--smp", "3",
            "--memory", "64", "--timeout", "20")
        #expect(r.status == 0, "\(r.status) \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(
            lines.contains("cmdline: \(image) -a b"),
            "an argument that starts with - is the command line's, not an option")
        #expect(lines.contains("module: NR_CPUS=3"))
        #expect(lines.contains("mem_upper KiB: 0000fc00"), "64 MiB: (64 - 1) * 1024 KiB above 1 MiB")
        #expect(lines.contains("fw_cfg cpus: 00000003"))
        #expect(lines.contains("fw_cfg ram: 0000000004000000"))
        #expect(lines.contains("unclaimed port 0x5555 reads ffffffff"))
        #expect(lines.contains("apic timer: 3 interrupts"))
        #expect(lines.contains("aps online: 00000002"))
        #expect(lines.contains { $0.hasPrefix("smi: ") })
        #expect(lines.last == "vmmcheck: PASS")
        #expect(
            r.stderr.contains("free run of image vmmcheck.elf, vCPU 0 of 3 (all-stop)")
                && r.stderr.contains("exited with status 0"),
            "\(r.stderr)")
    }

    @Test(
        "the same L1 stepped (batch, all-stop over 2 vCPUs) stops at the unclaimed port and ends with the same output and status 0 (real /dev/kvm)"
    )
    func steppedRun() throws {
        try Requirement.kvm()
        let (image, module) = try files()
        let serial = try CLI.file([], "vmmcheck-serial.txt")
        let r = try CLI.run(
            "run", "--batch", "--image", image, "--module", module, "--smp", "2", "--serial", serial, "--timeout", "20")
        #expect(r.status == 0, "\(r.status) \(r.stderr)")
        #expect(r.stdout.contains("IN port 0x5555, 4 bytes"), "\(r.stdout)")
        let saved = try String(contentsOfFile: serial, encoding: .utf8)
        #expect(saved.contains("aps online: 00000001\n") && saved.hasSuffix("vmmcheck: PASS\n"), "\(saved)")
    }

    @Test("the L1's own failure is its status: no module is step 2 failing, status 1 (real /dev/kvm)")
    func guestFailure() throws {
        try Requirement.kvm()
        let (image, _) = try files()
        let r = try CLI.run("run", "--free", "--image", image, "--timeout", "20")
        #expect(r.status == 1 && r.stdout.hasSuffix("vmmcheck: FAIL at step 2\n"), "\(r.status) \(r.stdout)")
        #expect(r.stderr.contains("exited with status 1"))
    }

    @Test(
        "bad machines and combinations are one line and status 2; a guest that never ends gives up after --timeout (real /dev/kvm)"
    )
    func refusals() throws {
        try Requirement.kvm()
        let (image, _) = try files()
        let memory = try CLI.run("run", "--free", "--image", image, "--memory", "5000")
        #expect(
            memory.status == 2 && memory.stderr.contains("--memory 5000: between 4 and 3072 MiB"), "\(memory.stderr)")
        let smp = try CLI.run("run", "--free", "--image", image, "--smp", "2", "--no-irqchip")
        #expect(smp.status == 2 && smp.stderr.contains("needs the in-kernel interrupt controllers"), "\(smp.stderr)")
        let scenario = try CLI.run("run", "--batch", "--smp", "2")
        #expect(
            scenario.status == 2 && scenario.stderr.contains("describe the machine for --image"), "\(scenario.stderr)")
        let patch = try CLI.run("run", "--batch", "--image", image, "--stops", "patch")
        #expect(
            patch.status == 2 && patch.stderr.contains("with the in-kernel irqchip KVM handles HLT itself"),
            "\(patch.stderr)")
        let missing = try CLI.run("run", "--free", "--image", image, "--module", "/nonexistent/env")
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent/env: does not exist"), "\(missing.stderr)")
        let spin = try CLI.file([0xEB, 0xFE], "spin-free.bin")
        let start = ContinuousClock.now
        let never = try CLI.run("run", "--free", "--image", spin, "--load-at", "0x100000", "--timeout", "1")
        #expect(never.status == 1 && never.stderr.contains("had not ended within 1.0 s"), "\(never.stderr)")
        #expect(ContinuousClock.now - start < .seconds(15))
    }
}
