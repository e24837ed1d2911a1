import CDemoGuest
import SVMModel

/// The self-checking L1 (Sources/CDemoGuest/selfcheck.S): its VMRUN is
/// generated at run time at an L1-linear address that is not its physical
/// one, and it checks its own code before every VMRUN. A stop source that
/// needs a VMRUN site, or that patches L1, cannot run it unnoticed; one that
/// watches KVM's nested tracepoints can. The addresses and the expected exits
/// below are the assembly's header comment as data: the tests check the
/// guest against them.
public struct SelfCheckImage: BuiltInL1, Sendable {
    public static let imageName = "selfcheck"
    /// Where the VMM loads the image (guest-physical = L1-linear, identity-mapped).
    public static let loadAddress: UInt64 = 0x1000
    /// Above the exit log's page.
    public static let memoryEnd: UInt64 = 0x80000
    public static let vmcb12: UInt64 = 0x20000
    public static let iopm: UInt64 = 0x22000
    public static let msrpm: UInt64 = 0x26000
    /// The run-time VMRUN stub ("vmrun; ret"): its L1-linear address, and the
    /// physical page L1 maps there.
    public static let stubLinear: UInt64 = 0x4000_0000
    public static let stubPhysical: UInt64 = 0x18000
    /// Nested exits that reached L1 (a qword).
    public static let exitCounter: UInt64 = 0x70100
    /// L2 loop iterations done (a qword).
    public static let iterationCounter: UInt64 = 0x70108
    /// The checksum of the image and the stub page, taken once at start (a qword).
    public static let referenceChecksum: UInt64 = 0x70110
    /// The checksum of the latest check (a qword).
    public static let lastChecksum: UInt64 = 0x70118
    /// Checks made: one before every VMRUN and one at the end (a qword).
    public static let checkCounter: UInt64 = 0x70120
    /// The exit code of every nested exit in order, 4 bytes each, up to `exitLogCapacity`.
    public static let exitLog: UInt64 = 0x71000
    public static let exitLogCapacity = 1024
    /// L2 loop iterations before L1 ends the run: the image's quad at
    /// `iteration_limit` as assembled (`bytes(iterations:)` changes it).
    public static let iterations = 40
    /// What `bytes(iterations:)` accepts. The top keeps the quad's bytes from
    /// ever spelling 0F 01 D8 (the first value that would is 0xD8010F).
    public static let iterationRange = 1...10_000_000
    /// What L1 writes to isa-debug-exit (0xF4): the run ended, the code unchanged…
    public static let passedStatus: Int32 = 0
    /// …or a check found the code changed.
    public static let tamperedStatus: Int32 = 3
    /// The port L2 writes once per iteration that L1 does not intercept: it reaches the VMM.
    public static let passthroughPort: UInt16 = 0xE9

    public let bytes: [UInt8]
    /// Symbol → guest address (load address + offset). There is no VMRUN symbol.
    public let symbols: [String: UInt64]

    public init() {
        let image = BuiltInImage(
            loadAddress: SelfCheckImage.loadAddress, image: nestdbg_selfcheck_image,
            symbolCount: nestdbg_selfcheck_symbol_count,
            symbolName: nestdbg_selfcheck_symbol_name, symbolOffset: nestdbg_selfcheck_symbol_offset)
        bytes = image.bytes
        symbols = image.symbols
    }

    /// The image with L1's iteration limit set to `count` (for a long run;
    /// the checksum is taken at start, so it covers the new value).
    public func bytes(iterations count: Int) throws(ImageWriteError) -> [UInt8] {
        guard Self.iterationRange.contains(count) else {
            throw .iterationsOutOfRange(count, allowed: Self.iterationRange)
        }
        var patched = bytes
        let offset = Int(address("iteration_limit") - Self.loadAddress)
        let quad = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(count) >> (8 * UInt64($0))) }
        patched.replaceSubrange(offset..<(offset + 8), with: quad)
        return patched
    }

    /// The vmcb12 control that sends an exit to L1.
    public enum Intercept: Sendable, Equatable, CustomStringConvertible {
        /// An instruction intercept: `bit` of the intercept word `word`.
        case instruction(word: VMCBField, bit: Int)
        /// IOIO_PROT and the port's bit in the IOPM.
        case ioPort(UInt16, isIn: Bool)
        /// MSR_PROT and the MSR's read (or write) bit in the MSRPM.
        case msr(UInt32, isWrite: Bool)
        /// The vector's bit in the exception intercepts.
        case exception(vector: Int)

        /// The intercept word and bit that must be set.
        public var control: (word: VMCBField, bit: Int) {
            switch self {
            case let .instruction(word, bit): return (word, bit)
            case .ioPort: return (.intercepts3, 27)
            case .msr: return (.intercepts3, 28)
            case let .exception(vector): return (.intercepts2, vector)
            }
        }

        public var description: String {
            switch self {
            case let .instruction(word, bit): return "\(word.name) bit \(bit)"
            case let .ioPort(port, isIn):
                return
                    "IOIO_PROT (intercepts[3] bit 27) and port 0x\(String(port, radix: 16)) in the IOPM (\(isIn ? "IN" : "OUT"))"
            case let .msr(msr, isWrite):
                return
                    "MSR_PROT (intercepts[3] bit 28) and the \(isWrite ? "write" : "read") bit of MSR 0x\(String(msr, radix: 16)) in the MSRPM"
            case let .exception(vector): return "intercepts[2] bit \(vector) (exception vector \(vector))"
            }
        }
    }

    /// Why L0 (KVM) handles an L2 exit itself: L1 asked for none of it.
    public enum L0Reason: Sendable, Equatable, CustomStringConvertible {
        /// The instruction's intercept bit is clear in vmcb12: KVM emulates it for L2.
        case notIntercepted(word: VMCBField, bit: Int)
        /// IOIO_PROT is on but the port's IOPM bit is clear: KVM hands the access to the VMM.
        case portNotInIOPM(UInt16)

        public var description: String {
            switch self {
            case let .notIntercepted(word, bit): return "\(word.name) bit \(bit) clear: KVM emulates it for L2"
            case let .portNotInIOPM(port):
                return "port 0x\(String(port, radix: 16)) not in the IOPM: KVM exits to the VMM"
            }
        }
    }

    /// An exit of L2 to L0 that never reaches L1.
    public struct L0Exit: Sendable, Equatable {
        public let symbol: String
        public let exitCode: UInt64
        public let reason: L0Reason
        /// KVM passes it on to userspace (KVM_EXIT_IO): the VMM sees it.
        public let reachesVMM: Bool
    }

    /// A nested exit that reaches L1, and the L0-handled exits L2 causes since the previous one.
    public struct NestedExit: Sendable, Equatable {
        public let symbol: String
        public let exitCode: UInt64
        public let intercept: Intercept
        public let l0HandledBefore: [L0Exit]
    }

    /// The one port in L1's IOPM.
    public static let port: UInt16 = 0x80
    /// The one MSR in L1's MSRPM (STAR), for reads only.
    public static let msr: UInt32 = 0xC000_0081

    /// One L2 iteration, in order: the exits L1 gets, each with why, and the
    /// exits L0 handles before it. Only L2's instructions count: L0 may add
    /// exits of its own (NPF or #PF while it fills its shadow tables, INTR).
    public static let l2Program: [NestedExit] = [
        NestedExit(
            symbol: "l2_in", exitCode: 0x7B, intercept: .ioPort(port, isIn: true),
            l0HandledBefore: [
                L0Exit(
                    symbol: "l2_passthrough", exitCode: 0x7B, reason: .portNotInIOPM(passthroughPort), reachesVMM: true),
                L0Exit(
                    symbol: "l2_cpuid0", exitCode: 0x72, reason: .notIntercepted(word: .intercepts3, bit: 18),
                    reachesVMM: false),
                L0Exit(
                    symbol: "l2_cpuid1", exitCode: 0x72, reason: .notIntercepted(word: .intercepts3, bit: 18),
                    reachesVMM: false),
            ]),
        NestedExit(symbol: "l2_out", exitCode: 0x7B, intercept: .ioPort(port, isIn: false), l0HandledBefore: []),
        NestedExit(symbol: "l2_rdmsr", exitCode: 0x7C, intercept: .msr(msr, isWrite: false), l0HandledBefore: []),
        NestedExit(symbol: "l2_ud", exitCode: 0x46, intercept: .exception(vector: 6), l0HandledBefore: []),
        NestedExit(
            symbol: "l2_hlt", exitCode: 0x78, intercept: .instruction(word: .intercepts3, bit: 24), l0HandledBefore: []),
        NestedExit(
            symbol: "l2_vmmcall", exitCode: 0x81, intercept: .instruction(word: .intercepts4, bit: 1),
            l0HandledBefore: []),
    ]

    /// Nested exits in a whole run (the exit counter at the end).
    public static var nestedExitsPerRun: Int { iterations * l2Program.count }
    /// Checks in a whole run: one before each VMRUN (the first, then after
    /// every exit but the last) and one at the end.
    public static var checksPerRun: Int { nestedExitsPerRun + 1 }
    /// L0-handled exits in a whole run, by exit code.
    public static var l0HandledPerRun: [UInt64: Int] {
        l2Program.flatMap(\.l0HandledBefore).reduce(into: [:]) { $0[$1.exitCode, default: 0] += iterations }
    }
    /// The exit log L1 keeps over a whole run.
    public static var expectedExitLog: [UInt32] {
        Array(repeating: l2Program.map { UInt32($0.exitCode) }, count: iterations).flatMap { $0 }
    }
}
