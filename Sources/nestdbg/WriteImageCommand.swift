import ArgumentParser
import DebuggerEngine
import Foundation

/// `nestdbg write-image`: a built-in L1 as a Multiboot ELF file, for QEMU's
/// `-kernel` and nestdbg's own `run --image` alike.
struct WriteImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "write-image",
        abstract:
            "Write a built-in L1 as a Multiboot v1 ELF file that QEMU (-kernel) and nestdbg (run --image) both boot.",
        discussion: """
            A 32-bit prologue at 0x100000 zeroes the L1's memory, copies the L1 to its load \
            address and enters it in long mode exactly as `nestdbg run --scenario NAME` does. \
            The selfcheck L1 ends with status 0 on isa-debug-exit (0xF4) after its iterations; \
            its L2 writes one byte to port 0xE9 per iteration. The demo runs until stopped.
            """)

    @Option(
        help:
            "The L1: selfcheck, demo, or vmmcheck (32-bit, no SVM: checks the VMM's devices; run it with --append, --module, --smp)."
    )
    var scenario = "selfcheck"
    // Text, taken whatever it looks like: "-3" is a bad count (status 2), not an unknown option.
    @Option(
        parsing: .unconditional, help: "The selfcheck L1's L2 loop iterations (default \(SelfCheckImage.iterations)).")
    var iterations: String?
    @Argument(help: "The file to write.") var file: String

    func run() throws {
        var count = SelfCheckImage.iterations
        if let iterations {
            guard let n = Int(iterations) else { throw fail("--iterations \(iterations): not a whole number") }
            count = n
        }
        let elf: MultibootELF
        do {
            switch scenario {
            case "selfcheck":
                elf = try MultibootImage.selfCheck(iterations: count)
            case "vmmcheck":
                guard iterations == nil else { throw fail("--iterations applies to the selfcheck scenario only") }
                elf = MultibootImage.vmmCheck()
            case "demo":
                guard iterations == nil else { throw fail("--iterations applies to the selfcheck scenario only") }
                elf = try MultibootImage.demo()
            default:
                throw fail("write-image: unknown scenario \(scenario): selfcheck, demo or vmmcheck")
            }
        } catch let error as ImageWriteError {
            throw fail(error.description)
        }
        let bytes = elf.encoded()
        guard FileManager.default.createFile(atPath: file, contents: Data(bytes)) else {
            throw fail("\(file): cannot be written")
        }
        let entry = String(elf.entry, radix: 16)
        print(
            "\(file): \(scenario)\(scenario == "selfcheck" ? ", \(count) iterations" : ""), "
                + "Multiboot ELF32, entry 0x\(entry), \(bytes.count) bytes")
    }
}
