#if canImport(Glibc)
    import Glibc
#endif

/// Why KVM's tracepoints cannot be used here; each case names what is missing.
public enum TraceError: Error, Equatable, CustomStringConvertible {
    /// tracefs is not mounted and mounting it failed (not root, no tracefs in the kernel).
    case tracefsUnavailable(String)
    /// The kernel has no such tracepoint (kvm.ko not loaded, or an older kernel).
    case noSuchEvent(String)
    /// A format file that does not parse.
    case malformedFormat(event: String, detail: String)
    /// A field the reader needs is not in the event's format.
    case missingField(event: String, field: String)
    /// A system call failed: which one, on what, and errno.
    case system(call: String, errno: Int32)

    public var description: String {
        switch self {
        case let .tracefsUnavailable(why): return "tracefs is not available: \(why)"
        case let .noSuchEvent(name): return "the kernel has no tracepoint \(name) (is kvm.ko loaded?)"
        case let .malformedFormat(event, detail): return "\(event)/format: \(detail)"
        case let .missingField(event, field): return "tracepoint \(event) has no field \(field)"
        case let .system(call, e): return "\(call) failed: \(String(cString: strerror(e))) (errno \(e))"
        }
    }
}
