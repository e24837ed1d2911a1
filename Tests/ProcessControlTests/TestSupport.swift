import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A failure of the test's own scaffolding (starting QEMU, a socket), with what failed.
struct HarnessError: Error, CustomStringConvertible {
    let description: String
}

/// A directory under /tmp, removed with everything in it when released.
/// Short paths: a Unix socket path has at most 107 bytes.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/nestdbg-pc-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw HarnessError(description: "mkdtemp failed: errno \(errno)") }
        path = String(cString: made)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// A child process of the test, always killed (SIGKILL) and reaped by `stop`, at the latest on release.
final class ChildProcess {
    let process = Process()
    var pid: Int32 { process.processIdentifier }

    init(_ executable: String, _ arguments: [String], standardError: FileHandle = .nullDevice) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = standardError
        try process.run()
    }

    func stop() {
        if process.isRunning {
            kill(pid, SIGKILL)
        }
        process.waitUntilExit()
    }

    deinit {
        stop()
    }
}

/// `sleep 30`: a process with no KVM at all.
func startSleep() throws -> ChildProcess {
    let child = try ChildProcess("/bin/sleep", ["30"])
    // Right after the fork /proc still shows the parent's image: wait for the exec.
    let deadline = Date(timeIntervalSinceNow: 5)
    while Date() < deadline,
        (try? String(contentsOfFile: "/proc/\(child.pid)/cmdline", encoding: .utf8))?.hasPrefix("/bin/sleep") != true
    {
        usleep(2_000)
    }
    return child
}

/// This host's qemu-system-x86_64 and /dev/kvm. The real-QEMU tests run
/// where both exist, and always in CI (`CI` set), where a missing one fails
/// the test instead of skipping it.
enum RealQEMU {
    static let binary: String? = {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/qemu-system-x86_64" }.first { access($0, X_OK) == 0 }
    }()
    static let kvmUsable = access("/dev/kvm", R_OK | W_OK) == 0
    static let isCI = ProcessInfo.processInfo.environment["CI"] != nil
    static var isAvailable: Bool { binary != nil && kvmUsable }
    /// The tests run here, or must fail loudly (CI).
    static var shouldRun: Bool { isAvailable || isCI }
    static let skipReason: Comment =
        "needs qemu-system-x86_64 in PATH and a read/write /dev/kvm (with CI set, their absence fails the tests)"

    static var missing: String {
        [binary == nil ? "qemu-system-x86_64 is not in PATH" : nil, kvmUsable ? nil : "/dev/kvm is not read/write"]
            .compactMap { $0 }.joined(separator: ", ")
    }
}

/// `qemu-system-x86_64 -accel kvm -m 64 -display none -S -no-reboot -qmp unix:DIR/q.sock,server=on,wait=off
/// -serial none -monitor none -nic none` plus `extra`, started as a child of
/// the test; `stop` (or release) kills it.
final class RunningQEMU {
    let directory: TemporaryDirectory
    let socketPath: String
    private let child: ChildProcess
    var pid: Int32 { child.pid }

    init(_ extra: [String] = []) throws {
        guard let binary = RealQEMU.binary, RealQEMU.kvmUsable else {
            throw HarnessError(description: "CI is set, so QEMU must run here, but: \(RealQEMU.missing)")
        }
        directory = try TemporaryDirectory()
        socketPath = directory.path + "/q.sock"
        let errorPath = directory.path + "/stderr.txt"
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        let arguments =
            [
                "-accel", "kvm", "-m", "64", "-display", "none", "-S", "-no-reboot",
                "-qmp", "unix:\(socketPath),server=on,wait=off", "-serial", "none", "-monitor", "none", "-nic", "none",
            ] + extra
        child = try ChildProcess(binary, arguments, standardError: FileHandle(forWritingAtPath: errorPath)!)
        // QEMU creates the socket before it is ready to run; 5 s is generous.
        let deadline = ContinuousClock.now + .seconds(5)
        while access(socketPath, F_OK) != 0 {
            guard child.process.isRunning, ContinuousClock.now < deadline else {
                child.stop()
                let stderr = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
                throw HarnessError(
                    description: "QEMU did not create \(socketPath) (exit status "
                        + "\(child.process.isRunning ? "none, still running" : String(child.process.terminationStatus))): \(stderr)"
                )
            }
            usleep(10_000)
        }
        // The socket, even the greeting (from the monitor's own thread), come before the vCPUs:
        // a command is answered from the main loop, which runs once the machine is built.
        try Self.awaitFirstAnswer(socketPath)
    }

    /// Connects to the QMP socket, sends qmp_capabilities, waits up to 5 s for
    /// the greeting and the answer (two lines), disconnects.
    private static func awaitFirstAnswer(_ path: String) throws {
        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(client) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        let request = Array("{\"execute\": \"qmp_capabilities\"}\n".utf8)
        guard client >= 0, connected == 0,
            request.withUnsafeBytes({ send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else { throw HarnessError(description: "cannot talk to QEMU on \(path) (errno \(errno))") }
        let deadline = ContinuousClock.now + .seconds(5)
        var lines = 0
        var chunk = [UInt8](repeating: 0, count: 4096)
        while lines < 2 {
            var readable = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            let count =
                poll(&readable, 1, 100) == 1
                ? chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) } : 0
            guard ContinuousClock.now < deadline, count >= 0 else {
                throw HarnessError(description: "QEMU did not answer qmp_capabilities on \(path) within 5 s")
            }
            lines += chunk[..<count].filter { $0 == UInt8(ascii: "\n") }.count
        }
    }

    func stop() {
        child.stop()
    }

    /// A 64 KiB BIOS image whose reset vector (0xFFFF0) is `hlt; jmp $-1`:
    /// the vCPU halts at once, so its thread waits inside KVM_RUN.
    static func haltingBIOS(in directory: String) throws -> String {
        var image = [UInt8](repeating: 0, count: 0x10000)
        image.replaceSubrange(0xFFF0..<0xFFF3, with: [0xF4, 0xEB, 0xFD])
        let path = directory + "/halt.bin"
        guard FileManager.default.createFile(atPath: path, contents: Data(image)) else {
            throw HarnessError(description: "cannot write \(path)")
        }
        return path
    }
}

/// A Unix socket server on its own thread, for one client: a stand-in for
/// QEMU's QMP socket that misbehaves on purpose.
final class FakeQMPServer {
    enum Behaviour: Sendable {
        /// Sends this line at once, then reads and ignores everything.
        case sendsLine(String)
        /// Accepts and never says anything.
        case silent
        /// Greets like QEMU 7.2, then answers each request with the lines
        /// `answer(command, id)` returns; nil closes the connection.
        case answers(@Sendable (_ command: String, _ id: Int) -> [String]?)
    }

    let path: String
    private let listener: Int32

    init(in directory: String, _ behaviour: Behaviour) throws {
        path = directory + "/fake.sock"
        listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard listener >= 0, bound == 0, listen(listener, 1) == 0 else {
            throw HarnessError(description: "cannot listen on \(path): errno \(errno)")
        }
        let serving = listener
        Thread { Self.serve(serving, behaviour) }.start()
    }

    deinit {
        // Wakes the thread's poll on the listener (it gives up after 10 s anyway).
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private static func serve(_ listener: Int32, _ behaviour: Behaviour) {
        var waiting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&waiting, 1, 10_000) == 1 else { return }
        let client = accept(listener, nil, nil)
        guard client >= 0 else { return }
        defer { close(client) }
        func send(_ line: String) {
            let bytes = Array((line + "\r\n").utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        switch behaviour {
        case let .sendsLine(line): send(line)
        case .silent: break
        case .answers: send(QEMU72.greeting)
        }
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var readable = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&readable, 1, 10_000) == 1 else { return }
            let count = chunk.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            pending += chunk[..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(pending[..<newline])
                pending.removeSubrange(...newline)
                guard case let .answers(answer) = behaviour,
                    let request = try? JSONSerialization.jsonObject(with: line) as? [String: Any],
                    let command = request["execute"] as? String, let id = request["id"] as? Int
                else { continue }
                guard let lines = answer(command, id) else { return }
                lines.forEach(send)
            }
        }
    }
}
