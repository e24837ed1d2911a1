import CKVM
import Glibc

/// Capabilities nestdbg asks KVM about (`KVM_CAP_*`, values from <linux/kvm.h>).
public struct Capability: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public let name: String
    public init(rawValue: Int32) {
        self.rawValue = rawValue
        self.name = "KVM_CAP_\(rawValue)"
    }
    init(_ value: Int32, _ name: String) {
        self.rawValue = value
        self.name = name
    }
    public var description: String { name }

    public static let mpState = Capability(KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE")
    public static let setGuestDebug = Capability(KVM_CAP_SET_GUEST_DEBUG, "KVM_CAP_SET_GUEST_DEBUG")
    public static let vcpuEvents = Capability(KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS")
    public static let debugRegisters = Capability(KVM_CAP_DEBUGREGS, "KVM_CAP_DEBUGREGS")
    public static let immediateExit = Capability(KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")
    public static let nestedState = Capability(KVM_CAP_NESTED_STATE, "KVM_CAP_NESTED_STATE")
    public static let guestDebugHardwareBreakpoints = Capability(
        KVM_CAP_GUEST_DEBUG_HW_BPS, "KVM_CAP_GUEST_DEBUG_HW_BPS")
    public static let setGuestDebug2 = Capability(KVM_CAP_SET_GUEST_DEBUG2, "KVM_CAP_SET_GUEST_DEBUG2")
    public static let sregs2 = Capability(KVM_CAP_SREGS2, "KVM_CAP_SREGS2")
    public static let irqchip = Capability(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")
    public static let x86GuestMode = Capability(CKVM_CAP_X86_GUEST_MODE, "KVM_CAP_X86_GUEST_MODE")
    public static let xsave = Capability(KVM_CAP_XSAVE, "KVM_CAP_XSAVE")
    public static let xsave2 = Capability(KVM_CAP_XSAVE2, "KVM_CAP_XSAVE2")
    public static let xcrs = Capability(KVM_CAP_XCRS, "KVM_CAP_XCRS")
    public static let getTSCKHz = Capability(KVM_CAP_GET_TSC_KHZ, "KVM_CAP_GET_TSC_KHZ")
    public static let tscControl = Capability(KVM_CAP_TSC_CONTROL, "KVM_CAP_TSC_CONTROL")
    public static let x86SMM = Capability(KVM_CAP_X86_SMM, "KVM_CAP_X86_SMM")
    public static let multiAddressSpace = Capability(KVM_CAP_MULTI_ADDRESS_SPACE, "KVM_CAP_MULTI_ADDRESS_SPACE")

    /// The capabilities a debugger report lists.
    public static let reported: [Capability] = [
        .mpState, .setGuestDebug, .vcpuEvents, .debugRegisters, .immediateExit, .nestedState,
        .guestDebugHardwareBreakpoints, .setGuestDebug2, .sregs2, .irqchip, .x86GuestMode, .x86SMM,
    ]
}

/// Issues an ioctl with a pointer argument, turning failure into `KVMError.ioctl`.
@discardableResult
func kvmIoctl(_ fd: Int32, _ request: UInt, _ name: String, _ arg: UnsafeMutableRawPointer?) throws -> Int32 {
    let r = ckvm_ioctl_ptr(fd, request, arg)
    if r < 0 { throw KVMError.ioctl(name: name, errno: -r) }
    return r
}

/// Issues an ioctl with an integer argument, turning failure into `KVMError.ioctl`.
@discardableResult
func kvmIoctl(_ fd: Int32, _ request: UInt, _ name: String, value: UInt) throws -> Int32 {
    let r = ckvm_ioctl_int(fd, request, value)
    if r < 0 { throw KVMError.ioctl(name: name, errno: -r) }
    return r
}

/// The KVM system: an open `/dev/kvm`.
public final class KVM: @unchecked Sendable {
    let fd: Int32
    /// Bytes to mmap from each vCPU fd (kvm_run, PIO page, coalesced MMIO ring).
    public let vcpuMmapSize: Int

    public init(path: String = "/dev/kvm") throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        if fd < 0 { throw KVMError.system(call: "open(\(path))", errno: errno) }
        self.fd = fd
        do {
            let version = try kvmIoctl(fd, CKVM_GET_API_VERSION, "KVM_GET_API_VERSION", value: 0)
            guard version == KVM_API_VERSION else { throw KVMError.apiVersion(Int(version)) }
            vcpuMmapSize = Int(try kvmIoctl(fd, CKVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE", value: 0))
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    /// `KVM_CHECK_EXTENSION` on the system fd: 0 when absent, else a capability-specific value.
    public func checkExtension(_ cap: Capability) throws -> Int {
        Int(try kvmIoctl(fd, CKVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION(\(cap.name))", value: UInt(cap.rawValue)))
    }

    /// `KVM_GET_SUPPORTED_CPUID`: what KVM can expose to a guest.
    public func supportedCPUID() throws -> [CPUIDEntry] {
        try CPUIDEntry.withGrowingBuffer(name: "KVM_GET_SUPPORTED_CPUID") { buffer in
            try kvmIoctl(fd, CKVM_GET_SUPPORTED_CPUID, "KVM_GET_SUPPORTED_CPUID", buffer)
        }
    }

    /// `KVM_GET_MSR_INDEX_LIST`: the MSRs KVM saves and restores for a guest.
    public func msrIndexList() throws -> [UInt32] {
        var capacity = 256
        while true {
            let bytes = 4 + capacity * 4
            let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
            defer { raw.deallocate() }
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            raw.storeBytes(of: UInt32(capacity), as: UInt32.self)
            let r = ckvm_ioctl_ptr(fd, CKVM_GET_MSR_INDEX_LIST, raw)
            let n = Int(raw.load(as: UInt32.self))
            if r == -E2BIG, n > capacity {
                capacity = n
                continue
            }
            if r < 0 { throw KVMError.ioctl(name: "KVM_GET_MSR_INDEX_LIST", errno: -r) }
            return (0..<n).map { raw.load(fromByteOffset: 4 + $0 * 4, as: UInt32.self) }
        }
    }

    /// `KVM_CREATE_VM` (machine type 0).
    public func createVM() throws -> VirtualMachine {
        let vmfd = try kvmIoctl(fd, CKVM_CREATE_VM, "KVM_CREATE_VM", value: 0)
        return VirtualMachine(system: self, fd: vmfd)
    }
}
