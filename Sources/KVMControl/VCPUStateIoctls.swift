import CKVM
import Glibc

/// One extended control register (`kvm_xcr`): XCR0 is index 0.
public struct XCR: Equatable, Sendable {
    public var index: UInt32
    public var value: UInt64
    public init(index: UInt32, value: UInt64) {
        self.index = index
        self.value = value
    }
}

/// The vCPU ioctls a VMM needs beyond the debugger's to move a vCPU
/// elsewhere: FPU/extended state, XCRs, the local APIC, CPUID, TSC rate.
extension VCPUIoctls {
    /// `KVM_GET_XSAVE`, or `KVM_GET_XSAVE2` when `size` (KVM_CAP_XSAVE2 on the VM) exceeds 4096 bytes.
    public func xsave(size: Int) throws -> [UInt8] {
        let bytes = max(size, 4096)
        var buffer = [UInt8](repeating: 0, count: bytes)
        let (request, name) = bytes > 4096 ? (CKVM_GET_XSAVE2, "KVM_GET_XSAVE2") : (CKVM_GET_XSAVE, "KVM_GET_XSAVE")
        try buffer.withUnsafeMutableBytes { raw in _ = try ioctl(request, name, raw.baseAddress, size: raw.count) }
        return buffer
    }

    /// `KVM_SET_XSAVE` with a buffer `xsave(size:)` returned.
    public func setXSAVE(_ bytes: [UInt8]) throws {
        guard bytes.count >= 4096 else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_XSAVE", reason: "an XSAVE area is at least 4096 bytes, this is \(bytes.count)")
        }
        var buffer = bytes
        try buffer.withUnsafeMutableBytes { raw in
            _ = try ioctl(CKVM_SET_XSAVE, "KVM_SET_XSAVE", raw.baseAddress, size: raw.count)
        }
    }

    /// `KVM_GET_XCRS`.
    public func xcrs() throws -> [XCR] {
        var c = kvm_xcrs()
        try ioctl(CKVM_GET_XCRS, "KVM_GET_XCRS", &c)
        return withUnsafeBytes(of: c.xcrs) { raw in
            (0..<Int(min(c.nr_xcrs, UInt32(KVM_MAX_XCRS)))).map { i in
                let x = raw.load(fromByteOffset: i * MemoryLayout<kvm_xcr>.stride, as: kvm_xcr.self)
                return XCR(index: x.xcr, value: x.value)
            }
        }
    }

    /// `KVM_SET_XCRS`.
    public func setXCRs(_ xcrs: [XCR]) throws {
        guard xcrs.count <= Int(KVM_MAX_XCRS) else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_XCRS", reason: "\(xcrs.count) XCRs, KVM takes at most \(KVM_MAX_XCRS)")
        }
        var c = kvm_xcrs()
        c.nr_xcrs = UInt32(xcrs.count)
        withUnsafeMutableBytes(of: &c.xcrs) { raw in
            for (i, x) in xcrs.enumerated() {
                raw.storeBytes(
                    of: kvm_xcr(xcr: x.index, reserved: 0, value: x.value),
                    toByteOffset: i * MemoryLayout<kvm_xcr>.stride, as: kvm_xcr.self)
            }
        }
        try ioctl(CKVM_SET_XCRS, "KVM_SET_XCRS", &c)
    }

    /// `KVM_GET_LAPIC`: the 1 KiB register page (needs the in-kernel irqchip; ENXIO without it).
    public func lapic() throws -> [UInt8] {
        var c = kvm_lapic_state()
        try ioctl(CKVM_GET_LAPIC, "KVM_GET_LAPIC", &c)
        return withUnsafeBytes(of: c.regs) { Array($0) }
    }

    /// `KVM_SET_LAPIC`.
    public func setLAPIC(_ bytes: [UInt8]) throws {
        var c = kvm_lapic_state()
        guard bytes.count == MemoryLayout.size(ofValue: c.regs) else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_LAPIC", reason: "the APIC page is 1024 bytes, this is \(bytes.count)")
        }
        withUnsafeMutableBytes(of: &c.regs) { raw in bytes.withUnsafeBytes { raw.copyMemory(from: $0) } }
        try ioctl(CKVM_SET_LAPIC, "KVM_SET_LAPIC", &c)
    }

    /// `KVM_GET_CPUID2`: the CPUID the vCPU was given.
    public func cpuid() throws -> [CPUIDEntry] {
        try CPUIDEntry.withGrowingBuffer(name: "KVM_GET_CPUID2") { raw in
            let capacity = Int(raw.load(as: UInt32.self))
            return try ioctl(CKVM_GET_CPUID2, "KVM_GET_CPUID2", raw, size: CPUIDEntry.bufferSize(capacity))
        }
    }

    /// `KVM_GET_TSC_KHZ`: the guest's TSC rate.
    public func tscKHz() throws -> UInt32 {
        UInt32(try ioctl(CKVM_GET_TSC_KHZ, "KVM_GET_TSC_KHZ", nil, size: 0))
    }

    /// `KVM_SET_TSC_KHZ` (KVM_CAP_TSC_CONTROL; KVM accepts the host's own rate without it).
    public func setTSCKHz(_ khz: UInt32) throws {
        try ioctl(CKVM_SET_TSC_KHZ, "KVM_SET_TSC_KHZ", UnsafeMutableRawPointer(bitPattern: UInt(khz)), size: 0)
    }
}
