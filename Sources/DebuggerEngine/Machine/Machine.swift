import KVMControl

/// Why the own VMM cannot build the machine asked for.
public enum MachineError: Error, Equatable, CustomStringConvertible {
    case memoryOutOfRange(Int)
    case vcpuCountOutOfRange(Int)
    case smpNeedsIRQChip
    case moduleDoesNotFit(path: String, size: Int, memoryMiB: Int)
    case multibootInfoTooLarge(Int)

    public var description: String {
        switch self {
        case let .memoryOutOfRange(m):
            return
                "--memory \(m): between \(MachineConfig.memoryRange.lowerBound) and \(MachineConfig.memoryRange.upperBound) MiB "
                + "(one slot below the IOAPIC and LAPIC pages)"
        case let .vcpuCountOutOfRange(n): return "--smp \(n): between 1 and \(MachineConfig.maxVCPUs)"
        case .smpNeedsIRQChip:
            return
                "--smp above 1 needs the in-kernel interrupt controllers (INIT/SIPI go through the LAPIC): drop --no-irqchip"
        case let .moduleDoesNotFit(path, size, memory):
            return "module \(path) (\(size) bytes) does not fit after the image in \(memory) MiB: raise --memory"
        case let .multibootInfoTooLarge(n):
            return
                "the command line and module names take \(n) bytes; the Multiboot information page holds \(Multiboot.infoPageSize)"
        }
    }
}

/// A Multiboot module: a file the loader places in memory, named by its path.
public struct BootModule: Sendable, Equatable {
    public var path: String
    public var bytes: [UInt8]
    public init(path: String, bytes: [UInt8]) {
        self.path = path
        self.bytes = bytes
    }
}

/// The PC that the own VMM builds for a user's image: RAM from 0, the
/// in-kernel LAPICs, IOAPIC and PIC (`KVM_CREATE_IRQCHIP`), N vCPUs, and
/// what the Multiboot loader passes (the command line, modules). The
/// default is the machine the patch stop source can run (no irqchip, one
/// vCPU); `nestdbg run --image` asks for the irqchip unless told not to.
public struct MachineConfig: Sendable, Equatable {
    public var memoryMiB: Int
    public var vcpuCount: Int
    /// In-kernel interrupt controllers. Without them HLT exits to nestdbg
    /// (which the patch stop source needs) and there is no LAPIC.
    public var irqchip: Bool
    /// What follows the image's name on the Multiboot command line (QEMU's -append).
    public var arguments: String?
    public var modules: [BootModule]

    /// QEMU's default RAM; kvm-unit-tests' SVM tests fit in it.
    public static let defaultMemoryMiB = 128
    /// Up to 3 GiB: the RAM stays one slot below 0xC0000000, clear of the IOAPIC (0xFEC00000) and LAPIC (0xFEE00000).
    public static let memoryRange = 4...3072
    public static let maxVCPUs = 8

    public init(
        memoryMiB: Int = defaultMemoryMiB, vcpuCount: Int = 1, irqchip: Bool = false, arguments: String? = nil,
        modules: [BootModule] = []
    ) {
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.irqchip = irqchip
        self.arguments = arguments
        self.modules = modules
    }

    public var memoryBytes: Int { memoryMiB << 20 }

    public func validate() throws(MachineError) {
        guard Self.memoryRange.contains(memoryMiB) else { throw .memoryOutOfRange(memoryMiB) }
        guard (1...Self.maxVCPUs).contains(vcpuCount) else { throw .vcpuCountOutOfRange(vcpuCount) }
        if vcpuCount > 1, !irqchip { throw .smpNeedsIRQChip }
    }
}

/// The Multiboot v1 information structure and what it points to, laid out
/// for guest memory: the structure, the command lines and the module list
/// on one page at `infoAddress` (not page 0: kvm-unit-tests puts its AP
/// trampoline there), the modules page-aligned after the image's end, as
/// QEMU places them.
public enum Multiboot {
    public static let infoAddress: UInt64 = 0x9000
    public static let infoPageSize = 4096
    /// EAX at entry.
    public static let bootMagic: UInt32 = 0x2BAD_B002

    struct Flags: OptionSet {
        let rawValue: UInt32
        static let memory = Flags(rawValue: 1 << 0)
        static let commandLine = Flags(rawValue: 1 << 2)
        static let modules = Flags(rawValue: 1 << 3)
        static let memoryMap = Flags(rawValue: 1 << 6)
    }

    /// Writes (address, bytes) pieces: the information page and each module.
    /// `imageName` starts the command line, as QEMU's loader does it.
    static func layout(
        config: MachineConfig, imageName: String,
        imageEnd: UInt64
    ) throws(MachineError) -> [(address: UInt64, bytes: [UInt8])] {
        var page = [UInt8](repeating: 0, count: infoPageSize)
        func put32(_ v: UInt32, _ at: Int) {
            for i in 0..<4 { page[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
        }
        func put64(_ v: UInt64, _ at: Int) {
            for i in 0..<8 { page[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        // After the 52-byte structure: the module list, the memory map, then the strings.
        let modulesAt = 64
        let mapAt = 64 + 16 * config.modules.count
        let stringsAt = mapAt + 48
        var strings: [UInt8] = []
        func string(_ s: String) throws(MachineError) -> UInt32 {
            let at = stringsAt + strings.count
            strings += Array(s.utf8) + [0]
            guard stringsAt + strings.count <= infoPageSize else {
                throw .multibootInfoTooLarge(stringsAt + strings.count)
            }
            return UInt32(infoAddress) + UInt32(at)
        }
        var flags: Flags = [.memory, .commandLine, .memoryMap]
        put32(639, 4)  // mem_lower, KiB below 1 MiB
        put32(UInt32((config.memoryBytes - (1 << 20)) / 1024), 8)  // mem_upper, KiB above 1 MiB
        put32(try string(config.arguments.map { "\(imageName) \($0)" } ?? imageName), 16)
        // Two RAM ranges, as a PC's firmware reports them (the VGA hole aside; nestdbg has RAM there).
        for (i, range) in [(UInt64(0), UInt64(0x9FC00)), (UInt64(1 << 20), UInt64(config.memoryBytes - (1 << 20)))]
            .enumerated()
        {
            let e = mapAt + 24 * i
            put32(20, e)
            put64(range.0, e + 4)
            put64(range.1, e + 12)
            put32(1, e + 20)
        }
        put32(48, 44)
        put32(UInt32(infoAddress) + UInt32(mapAt), 48)
        var pieces: [(address: UInt64, bytes: [UInt8])] = []
        var next = (imageEnd + 0xFFF) & ~0xFFF
        for (i, module) in config.modules.enumerated() {
            let end = next + UInt64(module.bytes.count)
            guard end <= UInt64(config.memoryBytes) else {
                throw .moduleDoesNotFit(path: module.path, size: module.bytes.count, memoryMiB: config.memoryMiB)
            }
            let e = modulesAt + 16 * i
            put32(UInt32(next), e)
            put32(UInt32(end), e + 4)
            put32(try string(module.path), e + 8)
            pieces.append((next, module.bytes))
            next = (end + 0xFFF) & ~0xFFF
        }
        if !config.modules.isEmpty {
            flags.insert(.modules)
            put32(UInt32(config.modules.count), 20)
            put32(UInt32(infoAddress) + UInt32(modulesAt), 24)
        }
        put32(flags.rawValue, 0)
        page.replaceSubrange(stringsAt..<(stringsAt + strings.count), with: strings)
        return [(infoAddress, page)] + pieces
    }
}
