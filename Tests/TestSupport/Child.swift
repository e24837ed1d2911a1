import Foundation
import Synchronization

/// A program run to its end by a test, with both pipes read at once (a child
/// that fills one while the test waits on the other would deadlock) and a
/// deadline: a child still running then is killed and the result says so.
public struct ChildResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    /// The child did not end within its time and was killed (SIGKILL).
    public let timedOut: Bool
}

public enum Child {
    public static func run(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
        stdout: FileHandle? = nil, timeout: Duration = .seconds(300)
    ) throws -> ChildResult {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = FileHandle.nullDevice
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = stdout ?? out
        process.standardError = err
        try process.run()
        let collected = Collected()
        let readers = DispatchGroup()
        for (index, pipe) in [out, err].enumerated() {
            if index == 0 && stdout != nil { continue }
            DispatchQueue.global().async(group: readers) {
                let data = pipe.fileHandleForReading.readDataToEndOfFile()
                collected.data.withLock { $0[index] = data }
            }
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let deadline = Date(timeIntervalSinceNow: seconds)
        var timedOut = readers.wait(timeout: .now() + seconds) == .timedOut
        while !timedOut && process.isRunning {
            if Date() >= deadline { timedOut = true } else { usleep(2_000) }
        }
        if timedOut {
            kill(process.processIdentifier, SIGKILL)
            // A grandchild may still hold a pipe: give the readers a little, then go on without them.
            _ = readers.wait(timeout: .now() + 5)
        }
        process.waitUntilExit()
        let data = collected.data.withLock { $0 }
        return ChildResult(
            status: process.terminationStatus,
            stdout: String(decoding: data[0] ?? Data(), as: UTF8.self),
            stderr: String(decoding: data[1] ?? Data(), as: UTF8.self),
            timedOut: timedOut)
    }
}

private final class Collected: Sendable {
    let data = Mutex<[Int: Data]>([:])
}
