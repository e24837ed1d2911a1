import CDemoGuest

/// Why a built-in L1 cannot be written as a Multiboot file.
public enum ImageWriteError: Error, Equatable, CustomStringConvertible {
    case iterationsOutOfRange(Int, allowed: ClosedRange<Int>)
    /// The image would reach the stack's page (or past it) at its load address.
    case payloadTooLarge(name: String, end: UInt64, limit: UInt64)

    public var description: String {
        switch self {
        case let .iterationsOutOfRange(n, allowed):
            return "--iterations \(n): the selfcheck L1 takes \(allowed.lowerBound) to \(allowed.upperBound)"
        case let .payloadTooLarge(name, end, limit):
            return
                "the \(name) image would end at 0x\(String(end, radix: 16)), past 0x\(String(limit, radix: 16)) (its stack)"
        }
    }
}

/// A built-in L1 as a Multiboot v1 ELF32 file that QEMU (`-kernel FILE`) and
/// nestdbg (`run --image FILE`) both boot: one segment at the prologue's
/// address (Sources/CDemoGuest/multiboot_entry.S) holding the prologue and,
/// right after it, the L1's image. The prologue zeroes the L1's memory,
/// copies the image to its load address and enters it in long mode as
/// `OwnVMTarget.demo` / `.selfCheck` do. The symbol table names the L1's
/// symbols where they run, the prologue's with a `multiboot_` prefix.
public enum MultibootImage {
    /// The selfcheck L1, its iteration limit set to `iterations`.
    public static func selfCheck(iterations: Int = SelfCheckImage.iterations) throws(ImageWriteError) -> MultibootELF {
        let image = SelfCheckImage()
        return try file(image, bytes: image.bytes(iterations: iterations))
    }

    /// The demo L1 (it runs until stopped).
    public static func demo() throws(ImageWriteError) -> MultibootELF {
        let image = DemoImage()
        return try file(image, bytes: image.bytes)
    }

    /// Where vmmcheck.S runs (its AT() base).
    public static let vmmCheckAddress: UInt32 = 0x10_0000

    /// The VMM-check L1 (Sources/CDemoGuest/vmmcheck.S): 32-bit, no SVM, it
    /// checks the command line, a module, fw_cfg, an unclaimed port, the APIC
    /// timer, INIT/SIPI and a self-SMI, and ends with status 0 when all passed.
    public static func vmmCheck() -> MultibootELF {
        var length = 0
        var entry = 0
        let start = nestdbg_vmmcheck_image(&length, &entry)!
        let bytes = Array(UnsafeBufferPointer(start: start, count: length))
        return MultibootELF(
            segments: [MultibootELF.Segment(address: vmmCheckAddress, bytes: bytes)],
            symbols: [MultibootELF.Symbol(name: "vmmcheck_entry", address: vmmCheckAddress + UInt32(entry))],
            entry: vmmCheckAddress + UInt32(entry))
    }

    /// `l1` with `bytes` (its own, or patched) behind the prologue.
    public static func file<L1: BuiltInL1>(_ l1: L1, bytes: [UInt8]) throws(ImageWriteError) -> MultibootELF {
        // Below the stack's page, so that the stack never meets the code.
        let limit = OwnVMTarget.l1StackTop - 0x1000
        let end = L1.loadAddress + UInt64(bytes.count)
        guard end <= limit else { throw .payloadTooLarge(name: L1.imageName, end: end, limit: limit) }
        // Symbols as offsets (load address 0): where it runs is its own quad's to say.
        let prologue = BuiltInImage(
            loadAddress: 0, image: nestdbg_multiboot_image, symbolCount: nestdbg_multiboot_symbol_count,
            symbolName: nestdbg_multiboot_symbol_name, symbolOffset: nestdbg_multiboot_symbol_offset)
        var code = prologue.bytes
        func offset(_ name: String) -> Int {
            guard let o = prologue.symbols[name] else {
                preconditionFailure("the Multiboot prologue has no symbol \(name)")
            }
            return Int(o)
        }
        func patch(_ name: String, _ value: UInt64) {
            let bytes = (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
            code.replaceSubrange(offset(name)..<(offset(name) + 8), with: bytes)
        }
        // The prologue is position-dependent: it says where it runs.
        let base = (0..<8).reduce(UInt64(0)) { $0 | UInt64(code[offset("load_address") + $1]) << (8 * UInt64($1)) }
        patch("payload_destination", L1.loadAddress)
        patch("payload_length", UInt64(bytes.count))
        patch("payload_entry", l1.address("l1_entry"))
        // All of it from 0: QEMU leaves the BIOS's data and its Multiboot information there, nestdbg its own.
        patch("zero_start", 0)
        patch("zero_end", L1.memoryEnd)
        patch("stack_top", OwnVMTarget.l1StackTop)

        let codeSymbols = ["entry", "long_mode"].map {
            MultibootELF.Symbol(name: "multiboot_" + $0, address: UInt32(base) + UInt32(offset($0)))
        }
        // In address order, names breaking ties: the same file from every run.
        let l1Symbols = l1.symbols.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.map {
            MultibootELF.Symbol(name: $0.key, address: UInt32($0.value))
        }
        return MultibootELF(
            segments: [MultibootELF.Segment(address: UInt32(base), bytes: code + bytes)],
            symbols: codeSymbols + l1Symbols, entry: UInt32(base) + UInt32(offset("entry")))
    }
}
