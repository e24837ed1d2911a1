#if canImport(Glibc)
    import Glibc
#endif

/// The kernel's tracing file system: where tracepoint ids and formats are read.
public struct Tracefs: Sendable {
    public let root: String

    public init(root: String) { self.root = root }

    /// The mounted tracefs, mounting it at /sys/kernel/tracing when it is not
    /// mounted anywhere (needs root; the mount stays, as `perf` leaves it).
    public static func locate(mountIfNeeded: Bool = true) throws -> Tracefs {
        let candidates = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        if let found = candidates.first(where: { isTracefs($0) }) { return Tracefs(root: found) }
        guard mountIfNeeded else {
            throw TraceError.tracefsUnavailable("not mounted at \(candidates.joined(separator: " or "))")
        }
        let target = candidates[0]
        guard access(target, F_OK) == 0 else { throw TraceError.tracefsUnavailable("\(target) does not exist") }
        if mount("nodev", target, "tracefs", 0, nil) != 0 {
            let e = errno
            throw TraceError.tracefsUnavailable(
                "mount -t tracefs nodev \(target): \(String(cString: strerror(e))) (errno \(e))")
        }
        guard isTracefs(target) else { throw TraceError.tracefsUnavailable("mounted at \(target) but has no events/") }
        return Tracefs(root: target)
    }

    private static func isTracefs(_ path: String) -> Bool { access(path + "/events", F_OK) == 0 }

    /// The format of `system:name` (e.g. "kvm", "kvm_nested_vmexit_inject").
    public func format(system: String, name: String) throws -> TracepointFormat {
        let path = "\(root)/events/\(system)/\(name)/format"
        guard let text = Tracefs.read(path) else { throw TraceError.noSuchEvent("\(system):\(name)") }
        return try TracepointFormat.parse(text, event: "\(system):\(name)")
    }

    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
