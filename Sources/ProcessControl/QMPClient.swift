import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What QEMU says when a client connects: its version and the capabilities it offers.
public struct QMPGreeting: Sendable, Equatable {
    public let major: Int
    public let minor: Int
    public let micro: Int
    /// The distribution's package string, e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3".
    public let package: String
    public let capabilities: [String]

    public init(major: Int, minor: Int, micro: Int, package: String, capabilities: [String]) {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.package = package
        self.capabilities = capabilities
    }
}

/// A client of QEMU's QMP socket (the JSON monitor), one command at a time.
///
/// Every wait for QEMU has a deadline: a QEMU that never answers (stopped, or
/// with another client already holding its monitor) is an error, never a hang.
/// Asynchronous events QEMU sends between answers are skipped.
public final class QMPClient {
    public let path: String
    public let timeout: Duration
    public let greeting: QMPGreeting
    private let socket: Int32
    private var received: [UInt8] = []
    private var nextID = 1

    /// Connects to the Unix socket at `path`, reads QEMU's greeting and leaves
    /// capabilities negotiation mode (`qmp_capabilities`).
    public init(path: String, timeout: Duration = .seconds(5)) throws(ProcessError) {
        self.path = path
        self.timeout = timeout
        let socket = try Self.connect(to: path, timeout: timeout)
        self.socket = socket
        do {
            greeting = try Self.readGreeting(socket: socket, path: path, timeout: timeout, received: &received)
        } catch {
            close(socket)
            throw error
        }
        // From here self is whole: a failure runs deinit, which closes the socket.
        _ = try execute("qmp_capabilities", returning: JSONValue.self)
    }

    deinit {
        close(socket)
    }

    // MARK: Commands

    /// Runs `command` without arguments and returns its `return` value.
    @discardableResult
    public func execute(_ command: String) throws(ProcessError) -> JSONValue {
        try execute(command, returning: JSONValue.self)
    }

    /// Runs `command` with `arguments` (any Encodable, e.g. a `JSONValue.object`) and returns its `return` value.
    @discardableResult
    public func execute(_ command: String, arguments: some Encodable) throws(ProcessError) -> JSONValue {
        try execute(command, arguments: arguments, returning: JSONValue.self)
    }

    /// Runs `command` and decodes its `return` value as `Result`. An `error`
    /// answer throws `.qmp("<command>: <class>: <desc>")`.
    public func execute<Result: Decodable>(_ command: String, returning: Result.Type) throws(ProcessError) -> Result {
        try execute(command, arguments: JSONValue?.none, returning: Result.self)
    }

    public func execute<Result: Decodable>(
        _ command: String, arguments: (some Encodable)?, returning: Result.Type
    ) throws(ProcessError) -> Result {
        let id = nextID
        nextID += 1
        let request: Data
        do {
            request = try JSONEncoder().encode(Request(execute: command, arguments: arguments, id: id))
        } catch {
            throw .qmp("\(command): its arguments cannot be encoded as JSON: \(error)")
        }
        try send(Array(request) + [UInt8(ascii: "\n")], for: command)
        let deadline = ContinuousClock.now + timeout
        while true {
            let line = try readLine(until: deadline, waitingFor: "the answer to \(command)")
            let envelope: Envelope
            do {
                envelope = try JSONDecoder().decode(Envelope.self, from: line)
            } catch {
                throw .qmp("\(command): the answer is not a JSON object: \(Self.excerpt(line))")
            }
            // Events come at any time; an answer with another id belongs to a command that timed out earlier.
            if envelope.event != nil || envelope.id != .integer(Int64(id)) {
                continue
            }
            if let error = envelope.error {
                throw .qmp("\(command): \(error.errorClass): \(error.desc)")
            }
            do {
                return try JSONDecoder().decode(Answer<Result>.self, from: line).value
            } catch {
                throw .qmp("\(command): unexpected answer \(Self.excerpt(line)): \(error)")
            }
        }
    }

    /// Runs an HMP (human monitor) command through `human-monitor-command`
    /// and returns its text, with QEMU's "\r\n" turned into "\n". HMP reports
    /// its own errors as text: callers parse what they expect.
    public func humanMonitorCommand(_ commandLine: String) throws(ProcessError) -> String {
        let text = try execute(
            "human-monitor-command", arguments: HumanMonitorArguments(commandLine: commandLine), returning: String.self)
        return text.replacingOccurrences(of: "\r\n", with: "\n")
    }

    // MARK: Typed helpers

    /// The vCPUs and their host threads (`query-cpus-fast`).
    public func vcpuThreads() throws(ProcessError) -> [VCPUThread] {
        let cpus = try execute("query-cpus-fast", returning: [CPUInfoFast].self)
        return cpus.map { VCPUThread(index: $0.cpuIndex, threadID: $0.threadID) }.sorted { $0.index < $1.index }
    }

    /// Whether the guest runs, and QEMU's run state (`query-status`).
    public func status() throws(ProcessError) -> VMStatus {
        let answer = try execute("query-status", returning: StatusInfo.self)
        return VMStatus(isRunning: answer.running, state: RunState(answer.status))
    }

    /// Lets the guest run (`cont`): from prelaunch (-S) or paused.
    public func cont() throws(ProcessError) {
        _ = try execute("cont", returning: JSONValue.self)
    }

    /// Stops the guest's vCPUs (`stop`).
    public func stop() throws(ProcessError) {
        _ = try execute("stop", returning: JSONValue.self)
    }

    /// Guest RAM as QEMU maps it: the RAM ranges of the "memory" address
    /// space (`info mtree -f`), each checked against its RAM block
    /// (`info ramblock`) and placed in QEMU's address space (the table's HVA
    /// column where QEMU prints one, `gpa2hva` otherwise: 7.2 has no HVA column).
    public func guestRAM() throws(ProcessError) -> [GuestRAMRange] {
        let flat = try FlatRange.parseFlatView(
            try humanMonitorCommand("info mtree -f"), addressSpace: FlatRange.systemAddressSpace)
        let blocks = try RAMBlock.parseTable(try humanMonitorCommand("info ramblock"))
        var regionBases: [String: UInt64] = [:]
        return try GuestRAMRange.resolve(flat: flat, blocks: blocks) { range throws(ProcessError) in
            // One gpa2hva per memory region: a region is one contiguous host allocation.
            if let base = regionBases[range.regionName] {
                return base + range.offsetInRegion
            }
            let command = "gpa2hva 0x\(String(range.start, radix: 16))"
            let answer = try HostAddressAnswer.parse(try humanMonitorCommand(command), command: command)
            guard answer.regionName == range.regionName else {
                throw .qmp(
                    "\(command): QEMU names region \(answer.regionName), info mtree -f names \(range.regionName)")
            }
            regionBases[range.regionName] = answer.hostAddress - range.offsetInRegion
            return answer.hostAddress
        }
    }

    // MARK: The socket

    private static func connect(to path: String, timeout: Duration) throws(ProcessError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw .qmpUnreachable(path: path, errno: ENAMETOOLONG)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let socket = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw .system(call: "socket(AF_UNIX)", errno: errno) }
        // SO_SNDTIMEO bounds connect(2) too on a Unix socket (a full backlog would block it).
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result != 0 {
            let error = errno
            close(socket)
            if error == EAGAIN || error == EINPROGRESS {
                throw .qmpTimeout(path: path, waitingFor: "the connection to be accepted", timeout: timeout)
            }
            throw .qmpUnreachable(path: path, errno: error)
        }
        return socket
    }

    private static func readGreeting(
        socket: Int32, path: String, timeout: Duration, received: inout [UInt8]
    ) throws(ProcessError) -> QMPGreeting {
        let line: Data
        do {
            line = try readLine(
                socket: socket, path: path, received: &received, until: .now + timeout, timeout: timeout,
                waitingFor: "QEMU's greeting")
        } catch let error {
            if case .qmpTimeout = error {
                // QEMU greets at once; silence means another client holds the monitor, or no QEMU at all.
                throw .qmp(
                    "\(path) sent no QMP greeting within \(timeout): another client (libvirt?) may hold "
                        + "QEMU's monitor, or it is not a QMP socket")
            }
            throw error
        }
        guard let decoded = try? JSONDecoder().decode(GreetingMessage.self, from: line) else {
            throw .qmp("\(path) is not a QMP socket: it greeted with \(excerpt(line))")
        }
        let version = decoded.qmp.version.qemu
        return QMPGreeting(
            major: version.major, minor: version.minor, micro: version.micro,
            package: decoded.qmp.version.package, capabilities: decoded.qmp.capabilities)
    }

    private func send(_ bytes: [UInt8], for command: String) throws(ProcessError) {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if count < 0 {
                let error = errno
                if error == EINTR { continue }
                if error == EPIPE || error == ECONNRESET {
                    throw .qmp("\(path) closed the connection (QEMU ended?) before \(command) was sent")
                }
                throw .system(call: "send(\(command) to \(path))", errno: error)
            }
            sent += count
        }
    }

    private func readLine(until deadline: ContinuousClock.Instant, waitingFor what: String) throws(ProcessError) -> Data
    {
        try Self.readLine(
            socket: socket, path: path, received: &received, until: deadline, timeout: timeout, waitingFor: what)
    }

    /// The next newline-terminated message, blank lines skipped.
    private static func readLine(
        socket: Int32, path: String, received: inout [UInt8], until deadline: ContinuousClock.Instant,
        timeout: Duration, waitingFor what: String
    ) throws(ProcessError) -> Data {
        while true {
            if let newline = received.firstIndex(of: UInt8(ascii: "\n")) {
                // QEMU ends its lines with "\r\n".
                var line = received[..<newline]
                received.removeSubrange(...newline)
                while line.last == UInt8(ascii: "\r") || line.last == UInt8(ascii: " ") {
                    line.removeLast()
                }
                if line.isEmpty { continue }
                return Data(line)
            }
            let remaining = deadline - .now
            guard remaining > .zero else { throw .qmpTimeout(path: path, waitingFor: what, timeout: timeout) }
            var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(min(Double(Int32.max), (remaining / .milliseconds(1)).rounded(.up)))
            let ready = poll(&poller, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw .system(call: "poll(\(path))", errno: errno)
            }
            if ready == 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw .system(call: "recv(\(path))", errno: errno)
            }
            if count == 0 {
                throw .qmp("\(path) closed the connection (QEMU ended?) while nestdbg waited for \(what)")
            }
            received.append(contentsOf: chunk[..<count])
        }
    }

    /// The start of a message, for error texts.
    private static func excerpt(_ line: Data) -> String {
        let text = String(decoding: line.prefix(120), as: UTF8.self)
        return line.count > 120 ? "\"\(text)…\"" : "\"\(text)\""
    }
}

// MARK: Wire formats

private struct Request<Arguments: Encodable>: Encodable {
    let execute: String
    let arguments: Arguments?
    let id: Int
}

private struct HumanMonitorArguments: Encodable {
    let commandLine: String
    enum CodingKeys: String, CodingKey { case commandLine = "command-line" }
}

/// Any message after the greeting: an answer (`return` or `error`) or an event.
private struct Envelope: Decodable {
    let event: String?
    let error: ErrorBody?
    let id: JSONValue?
}

private struct ErrorBody: Decodable {
    let errorClass: String
    let desc: String
    enum CodingKeys: String, CodingKey {
        case errorClass = "class"
        case desc
    }
}

private struct Answer<Value: Decodable>: Decodable {
    let value: Value
    enum CodingKeys: String, CodingKey { case value = "return" }
}

private struct GreetingMessage: Decodable {
    struct Body: Decodable {
        struct Version: Decodable {
            struct Triple: Decodable {
                let major: Int
                let minor: Int
                let micro: Int
            }
            let qemu: Triple
            let package: String
        }
        let version: Version
        let capabilities: [String]
    }
    let qmp: Body
    enum CodingKeys: String, CodingKey { case qmp = "QMP" }
}

private struct CPUInfoFast: Decodable {
    let cpuIndex: Int
    let threadID: Int32
    enum CodingKeys: String, CodingKey {
        case cpuIndex = "cpu-index"
        case threadID = "thread-id"
    }
}

private struct StatusInfo: Decodable {
    let running: Bool
    let status: String
}
