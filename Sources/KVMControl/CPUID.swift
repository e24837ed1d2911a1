import CKVM
import Glibc

/// One `kvm_cpuid_entry2`.
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
        eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    init(_ c: kvm_cpuid_entry2) {
        self.init(function: c.function, index: c.index, flags: c.flags, eax: c.eax, ebx: c.ebx, ecx: c.ecx, edx: c.edx)
    }

    var cValue: kvm_cpuid_entry2 {
        var c = kvm_cpuid_entry2()
        c.function = function
        c.index = index
        c.flags = flags
        c.eax = eax
        c.ebx = ebx
        c.ecx = ecx
        c.edx = edx
        return c
    }

    /// CPUID 0x8000_0001 ECX bit 2: the guest may use SVM.
    public static func hasSVM(_ entries: [CPUIDEntry]) -> Bool {
        entries.first { $0.function == 0x8000_0001 }.map { $0.ecx & (1 << 2) != 0 } ?? false
    }

    static let headerSize = 8
    static let entrySize = MemoryLayout<kvm_cpuid_entry2>.stride

    /// Runs a `kvm_cpuid2` ioctl with a buffer that grows while KVM answers E2BIG.
    static func withGrowingBuffer(name: String, _ body: (UnsafeMutableRawPointer) throws -> Int32) throws
        -> [CPUIDEntry]
    {
        var capacity = 128
        while true {
            let bytes = headerSize + capacity * entrySize
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
            defer { raw.deallocate() }
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            raw.storeBytes(of: UInt32(capacity), as: UInt32.self)
            do {
                _ = try body(raw)
            } catch KVMError.ioctl(_, E2BIG) where capacity < 4096 {
                capacity *= 2
                continue
            }
            let n = Int(raw.load(as: UInt32.self))
            return (0..<n).map {
                CPUIDEntry(raw.load(fromByteOffset: headerSize + $0 * entrySize, as: kvm_cpuid_entry2.self))
            }
        }
    }

    /// Lays entries out as a `kvm_cpuid2` for KVM_SET_CPUID2.
    /// Bytes of a kvm_cpuid2 with `count` entries.
    static func bufferSize(_ count: Int) -> Int { headerSize + count * entrySize }

    static func withBuffer<R>(_ entries: [CPUIDEntry], _ body: (UnsafeMutableRawPointer) throws -> R) rethrows -> R {
        let bytes = bufferSize(entries.count)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.storeBytes(of: UInt32(entries.count), as: UInt32.self)
        for (i, e) in entries.enumerated() {
            raw.storeBytes(of: e.cValue, toByteOffset: headerSize + i * entrySize, as: kvm_cpuid_entry2.self)
        }
        return try body(raw)
    }
}

extension CPUIDEntry {
    /// This entry as vCPU `id` reports it: the initial APIC ID in leaf 1
    /// (EBX[31:24]) and the x2APIC ID in leaves 0xB and 0x1F (EDX), which
    /// KVM leaves to the VMM.
    public func withAPICID(_ id: UInt32) -> CPUIDEntry {
        var e = self
        switch function {
        case 1: e.ebx = (ebx & 0x00FF_FFFF) | (id & 0xFF) << 24
        case 0xB, 0x1F: e.edx = id
        default: break
        }
        return e
    }
}
