import Glibc

/// A failure of the KVM API, always naming what failed.
public enum KVMError: Error, Equatable, CustomStringConvertible, Sendable {
    /// An ioctl returned an error: `KVM_GET_NESTED_STATE: EINVAL (Invalid argument)`.
    case ioctl(name: String, errno: Int32)
    /// A system call around the ioctls (open, mmap) failed.
    case system(call: String, errno: Int32)
    /// `/dev/kvm` speaks an API version other than 12.
    case apiVersion(Int)
    /// The running KVM lacks a capability the operation needs.
    case unsupported(operation: String, reason: String)
    /// A guest-physical access outside every memory slot.
    case guestMemoryOutOfRange(address: UInt64, length: Int)
    /// An argument KVM would reject, caught before the ioctl.
    case invalidArgument(operation: String, reason: String)
    /// KVM processed fewer MSRs than asked (the first one it did not handle).
    case msrNotHandled(operation: String, index: UInt32)

    public var description: String {
        switch self {
        case let .ioctl(name, err): return "\(name): \(errnoName(err)) (\(String(cString: strerror(err))))"
        case let .system(call, err): return "\(call): \(errnoName(err)) (\(String(cString: strerror(err))))"
        case let .apiVersion(v): return "/dev/kvm reports KVM API version \(v); nestdbg needs 12"
        case let .unsupported(op, reason): return "\(op): not supported by this KVM: \(reason)"
        case let .guestMemoryOutOfRange(addr, len):
            return
                "guest memory access at GPA 0x\(String(addr, radix: 16)) (+\(len) bytes) is outside every memory slot"
        case let .invalidArgument(op, reason): return "\(op): \(reason)"
        case let .msrNotHandled(op, index): return "\(op): KVM did not handle MSR 0x\(String(index, radix: 16))"
        }
    }
}

/// The symbolic name of an errno value, as a KVM developer reads it in dmesg and man pages.
public func errnoName(_ err: Int32) -> String {
    errnoNames[err] ?? "errno \(err)"
}

private let errnoNames: [Int32: String] = [
    EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO", E2BIG: "E2BIG",
    EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT",
    EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV", EINVAL: "EINVAL", ENFILE: "ENFILE",
    EMFILE: "EMFILE", ENOTTY: "ENOTTY", ENOSPC: "ENOSPC", ERANGE: "ERANGE", ENOSYS: "ENOSYS",
    EOPNOTSUPP: "EOPNOTSUPP", EHWPOISON: "EHWPOISON",
]
