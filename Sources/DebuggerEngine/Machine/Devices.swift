import KVMControl
import Synchronization

/// An I/O device of nestdbg's own VMM.
public enum PortDevice: Equatable, Sendable {
    /// COM1 (0x3F8-0x3FF): output collected, the transmitter always ready.
    case com1
    /// isa-debug-exit (0xF4): the value written is the guest's exit status.
    case debugExit
    /// The demo L1's panic port: L1 writes the exit code it cannot handle.
    case l1Panic
    /// QEMU's fw_cfg, the I/O interface: selector (0x510), data (0x511).
    case firmwareConfig
    /// The port the SMM stub writes to (only in SMM; see `SMMStub`).
    case smmStub
}

/// Which ports the own VM emulates; any other port reads as all-ones and ignores writes.
public struct PortMap: Sendable {
    public var devices: [(ports: ClosedRange<UInt16>, device: PortDevice)]

    public init(_ devices: [(ports: ClosedRange<UInt16>, device: PortDevice)]) { self.devices = devices }

    public func device(at port: UInt16) -> PortDevice? { devices.first { $0.ports.contains(port) }?.device }

    public static let com1Base: UInt16 = 0x3F8
    public static let debugExitPort: UInt16 = 0xF4
    public static let firmwareConfigPort: UInt16 = 0x510
    /// User images: COM1, isa-debug-exit and fw_cfg, as QEMU offers them, and the SMM stub's port.
    public static let standard = PortMap([
        (com1Base...com1Base + 7, .com1), (debugExitPort...debugExitPort, .debugExit),
        (firmwareConfigPort...firmwareConfigPort + 1, .firmwareConfig),
        (SMMStub.port...SMMStub.port, .smmStub),
    ])
    /// The built-in demo and scenarios: the standard devices and L1's panic port.
    public static let demo = PortMap(standard.devices + [(DemoImage.panicPort...DemoImage.panicPort, .l1Panic)])
}

/// What the own VMM made of a port I/O exit.
public enum IOOutcome: Equatable, Sendable {
    /// Emulated; the guest goes on.
    case handled
    /// The guest wrote its exit status to isa-debug-exit.
    case guestExited(status: Int32)
    /// L1 reported an exit it does not handle (the value it wrote).
    case l1ReportedUnhandledExit(code: UInt64)
    /// No device there: an IN reads all-ones, an OUT is dropped; the exit is still worth a stop.
    case unclaimed(description: String)
    /// The vCPU took an SMI and entered SMM, where only nestdbg's stub is (see `SMMStub`).
    case smmEntered
}

/// What a vCPU finds at SMBASE when it takes an SMI: nestdbg has no SMM
/// firmware, so without this the vCPU would run whatever bytes lie at
/// 0x38000 in SMM. The stub reports itself with one OUT (the debugger stops
/// there) and returns with RSM, so the L1 goes on as if a firmware handler
/// had done nothing. Written only where no image segment lies; an L1 that
/// overwrites it gets what it wrote.
public enum SMMStub {
    /// KVM's SMBASE at reset; the handler starts at SMBASE + 0x8000 (CS base SMBASE, IP 0x8000).
    public static let smbase: UInt64 = 0x30000
    public static let entry: UInt64 = smbase + 0x8000
    /// A port no PC device uses; the stub's OUT is the only one nestdbg reads as "SMM entered".
    public static let port: UInt16 = 0xF5
    /// out 0xF5, al; rsm
    public static let code: [UInt8] = [0xE6, UInt8(port), 0x0F, 0xAA]

    public static let explanation =
        "SMI: the vCPU entered SMM (SMBASE 0x30000); nestdbg has no SMM firmware, its stub at 0x38000 returns with RSM"
}

/// QEMU's fw_cfg over I/O ports, reduced to the items an L1 test harness
/// reads (kvm-unit-tests: the CPU count and the RAM size). A 16-bit write to
/// the selector picks an item; each byte read from the data port is the
/// item's next byte; unknown items and reads past the end give zeros, as QEMU's do.
public struct FirmwareConfig: Sendable, Equatable {
    public enum Key: UInt16, Sendable {
        case signature = 0x00
        case id = 0x01
        case ramSize = 0x03
        case cpuCount = 0x05
        case maxCPUs = 0x0F
    }

    private var items: [UInt16: [UInt8]] = [:]
    private var selected: UInt16 = 0
    private var offset = 0

    public init(ramSize: UInt64, cpuCount: UInt16) {
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
            (0..<T.bitWidth / 8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) }
        }
        items[Key.signature.rawValue] = Array("QEMU".utf8)
        items[Key.id.rawValue] = le(UInt32(1))  // the traditional interface, no DMA
        items[Key.ramSize.rawValue] = le(ramSize)
        items[Key.cpuCount.rawValue] = le(cpuCount)
        items[Key.maxCPUs.rawValue] = le(cpuCount)
    }

    public mutating func select(_ key: UInt16) {
        selected = key
        offset = 0
    }

    public mutating func readByte() -> UInt8 {
        defer { offset += 1 }
        guard let item = items[selected], offset < item.count else { return 0 }
        return item[offset]
    }
}

/// The own VMM's device state, shared by every vCPU thread of one VM: each
/// I/O exit is emulated under one lock, in the order the vCPUs made them.
public final class Devices: Sendable {
    public let ports: PortMap
    private struct State {
        var serial: [UInt8] = []
        var firmwareConfig: FirmwareConfig
    }
    private let state: Mutex<State>

    public init(ports: PortMap, firmwareConfig: FirmwareConfig) {
        self.ports = ports
        state = Mutex(State(firmwareConfig: firmwareConfig))
    }

    /// What the guest wrote to COM1, all of it.
    public var serialOutput: [UInt8] { state.withLock { $0.serial } }

    /// What the guest wrote to COM1 from byte `offset` on (a free run streams it).
    public func serialOutput(from offset: Int) -> ArraySlice<UInt8> {
        state.withLock { $0.serial.count > offset ? $0.serial[offset...] : [] }
    }

    /// Emulates one port access. `inSMM`: the vCPU was in SMM (kvm_run.flags).
    /// Returns the bytes an IN reads (nil for an OUT) and what it meant; an
    /// L1-panic write's meaning depends on the vCPU's mode, which the caller decides.
    func access(
        port: UInt16, direction: VCPUExit.Direction, size: Int, count: Int, data: [UInt8],
        inSMM: Bool
    ) -> (reply: [UInt8]?, outcome: IOOutcome) {
        let device = ports.device(at: port)
        return state.withLock { s in
            var reply: [UInt8]?
            if direction == .in {
                switch device {
                case .com1:
                    // Line status: transmitter empty and holding register empty; the rest reads 0.
                    reply = [UInt8](repeating: port == PortMap.com1Base + 5 ? 0x60 : 0, count: size * count)
                case .firmwareConfig where port == PortMap.firmwareConfigPort + 1:
                    reply = (0..<size * count).map { _ in s.firmwareConfig.readByte() }
                default:
                    reply = [UInt8](repeating: 0xFF, count: size * count)
                }
            }
            switch device {
            case .com1:
                if direction == .out, port == PortMap.com1Base { s.serial += data }
                return (reply, .handled)
            case .debugExit where direction == .out:
                return (reply, .guestExited(status: Int32(data.first ?? 0)))
            case .firmwareConfig:
                if direction == .out, port == PortMap.firmwareConfigPort, data.count >= 2 {
                    s.firmwareConfig.select(UInt16(data[0]) | UInt16(data[1]) << 8)
                }
                return (reply, .handled)
            case .smmStub where inSMM:
                return (reply, .smmEntered)
            case .l1Panic where direction == .out:
                let code = data.prefix(4).enumerated().reduce(UInt64(0)) {
                    $0 | UInt64($1.element) << (8 * UInt64($1.offset))
                }
                return (reply, .l1ReportedUnhandledExit(code: code))
            default:
                let what =
                    "\(direction == .in ? "IN" : "OUT") port 0x\(String(port, radix: 16)), \(size) byte\(size == 1 ? "" : "s")"
                    + (direction == .out ? " = " + data.map { String($0, radix: 16) }.joined(separator: " ") : "")
                return (reply, .unclaimed(description: what))
            }
        }
    }
}
