import CProcess
import Foundation
import ProcessControl
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The QMP client against stand-in servers: no QEMU needed.
@Suite("QMP client errors and protocol")
struct QMPClientTests {
    @Test("a socket that does not exist: ENOENT, and how to start QEMU")
    func missingSocket() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/none.sock"
        let error = #expect(throws: ProcessError.qmpUnreachable(path: path, errno: ENOENT)) {
            try QMPClient(path: path)
        }
        #expect(error?.description.contains("-qmp unix:PATH,server=on,wait=off") == true)
    }

    @Test("a file that is not a socket: refused")
    func notASocket() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/file"
        _ = FileManager.default.createFile(atPath: path, contents: Data("x".utf8))
        #expect(throws: ProcessError.qmpUnreachable(path: path, errno: ECONNREFUSED)) {
            try QMPClient(path: path)
        }
    }

    @Test("a socket that greets with garbage is not QMP")
    func garbageGreeting() throws {
        let directory = try TemporaryDirectory()
        let server = try FakeQMPServer(in: directory.path, .sendsLine("220 mail.example.com ESMTP"))
        #expect(
            throws: ProcessError.qmp(
                "\(server.path) is not a QMP socket: it greeted with \"220 mail.example.com ESMTP\"")
        ) {
            try QMPClient(path: server.path, timeout: .seconds(2))
        }
    }

    @Test("a socket that says nothing: no greeting, in the time given")
    func silentSocket() throws {
        let directory = try TemporaryDirectory()
        let server = try FakeQMPServer(in: directory.path, .silent)
        let start = ContinuousClock.now
        let error = #expect(throws: ProcessError.self) {
            try QMPClient(path: server.path, timeout: .milliseconds(300))
        }
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(error?.description.contains("sent no QMP greeting within") == true)
    }

    @Test("events and stale answers are skipped; an error answer names command, class and text")
    func protocolFlow() throws {
        let directory = try TemporaryDirectory()
        let server = try FakeQMPServer(
            in: directory.path,
            .answers { command, id in
                switch command {
                case "qmp_capabilities":
                    return [#"{"return": {}, "id": \#(id)}"#]
                case "query-status":
                    return [
                        #"{"timestamp": {"seconds": 1796258595, "microseconds": 836888}, "event": "RESUME"}"#,
                        #"{"return": {"status": "paused", "running": false}, "id": \#(id - 1)}"#,
                        #"{"return": {"status": "running", "singlestep": false, "running": true}, "id": \#(id)}"#,
                    ]
                case "nosuch":
                    // QEMU 7.2's answer, with the request's id.
                    return [
                        #"{"error": {"class": "CommandNotFound", "desc": "The command nosuch has not been found"}, "id": \#(id)}"#
                    ]
                case "query-cpus-fast":
                    return [QEMU72.queryCPUsFast.replacingOccurrences(of: "]}", with: "], \"id\": \(id)}")]
                case "silence":
                    return []
                default:
                    return nil
                }
            })
        let qmp = try QMPClient(path: server.path, timeout: .milliseconds(500))
        #expect(
            qmp.greeting
                == QMPGreeting(
                    major: 7, minor: 2, micro: 22, package: "Debian 1:7.2+dfsg-7+deb12u18+b3", capabilities: ["oob"]))
        #expect(try qmp.status() == VMStatus(isRunning: true, state: .running))
        #expect(throws: ProcessError.qmp("nosuch: CommandNotFound: The command nosuch has not been found")) {
            try qmp.execute("nosuch")
        }
        #expect(try qmp.vcpuThreads() == [VCPUThread(index: 0, threadID: 11386)])
        #expect(
            throws: ProcessError.qmpTimeout(
                path: server.path, waitingFor: "the answer to silence", timeout: .milliseconds(500))
        ) {
            try qmp.execute("silence")
        }
        let closed = #expect(throws: ProcessError.self) { try qmp.execute("quit-now") }
        #expect(closed?.description.contains("closed the connection") == true)
    }
}

@Suite("/proc discovery of processes that are not QEMU")
struct NotQEMUTests {
    @Test("a PID with no process")
    func noProcess() {
        // Above any pid_max (at most 2^22).
        #expect(throws: ProcessError.noSuchProcess(pid: 0x3FFF_FFFF)) { try QEMUProcess(pid: 0x3FFF_FFFF) }
        #expect(throws: ProcessError.noSuchProcess(pid: 0)) { try QEMUProcess(pid: 0) }
    }

    @Test("sleep has no KVM vCPU, no QMP socket and no shared RAM")
    func sleepIsNotQEMU() throws {
        let sleep = try startSleep()
        defer { sleep.stop() }
        let process = try QEMUProcess(pid: sleep.pid)
        #expect(process.name == "sleep")
        #expect(process.commandLine == ["/bin/sleep", "30"])
        #expect(
            throws: ProcessError.unsuitable("process \(sleep.pid) (sleep) has no KVM vCPU: not a QEMU with -accel kvm?")
        ) {
            try process.kvmDescriptors()
        }
        #expect(process.qmpSocketPath() == nil)
        #expect(throws: ProcessError.self) { try process.fallbackGuestRAM() }
        #expect(try process.tracer() == nil)
    }

    @Test("a process someone already traces: the tracer is named")
    func alreadyTraced() throws {
        let sleep = try startSleep()
        defer { sleep.stop() }
        let process = try QEMUProcess(pid: sleep.pid)
        // This test plays gdb: PTRACE_SEIZE stops nothing, and is undone below.
        try #require(cproc_seize(sleep.pid, 0) == 0)
        defer { _ = cproc_detach(sleep.pid, 0) }
        #expect(try process.tracer()?.pid == getpid())
        #expect(
            throws: ProcessError.cannotTrace(
                pid: sleep.pid, reason: "already traced by PID \(getpid()) (nestdbg itself): gdb or strace?")
        ) {
            try process.ensureNotTraced()
        }
    }

    @Test("trace permission: root and CAP_SYS_PTRACE as /proc says; EPERM explained by Yama scope first")
    func permission() throws {
        let current = TracePermission.current()
        #expect(current.isRoot == (geteuid() == 0))
        #expect((current.yamaScope != nil) == (access("/proc/sys/kernel/yama/ptrace_scope", F_OK) == 0))
        let myself = try QEMUProcess(pid: getpid())
        let locked = TracePermission(yamaScope: .noAttach, isRoot: true, hasPtraceCapability: true, userID: 0)
        #expect(locked.explainDenial(of: myself).contains("ptrace_scope is 3"))
        let restricted = TracePermission(
            yamaScope: .restricted, isRoot: false, hasPtraceCapability: false, userID: 1000)
        #expect(restricted.explainDenial(of: myself).contains("ptrace_scope is 1"))
        let otherUser = TracePermission(
            yamaScope: .classic, isRoot: false, hasPtraceCapability: false, userID: myself.userID + 1)
        #expect(otherUser.explainDenial(of: myself).contains("runs as user \(myself.userID)"))
    }
}
