#if canImport(Glibc)
    import Glibc
#endif

/// Small readers of /proc files: they have no size, so they are read to EOF.
enum ProcFS {
    /// The whole file; its errno when it cannot be read.
    static func read(_ path: String) -> Result<String, ProcessError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.system(call: "open(\(path))", errno: errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return .failure(.system(call: "read(\(path))", errno: errno))
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[..<count])
        }
        return .success(String(decoding: bytes, as: UTF8.self))
    }

    /// The target of a symbolic link (/proc/PID/fd/N), nil when it cannot be read.
    static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink(path, &buffer, buffer.count - 1)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The names in a directory, "." and ".." left out.
    static func list(_ path: String) -> Result<[String], ProcessError> {
        guard let directory = opendir(path) else { return .failure(.system(call: "opendir(\(path))", errno: errno)) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }

    /// The value of `Key:` in a /proc status file.
    static func statusField(_ key: String, in status: String) -> String? {
        for line in status.split(separator: "\n") where line.hasPrefix(key + ":") {
            return line.dropFirst(key.count + 1).trimmingPrefix(while: { $0 == " " || $0 == "\t" }).description
        }
        return nil
    }
}
