import Foundation

/// Who recorded what, where: the `session` row. What a bug report needs
/// besides the stops (the same L1 behaves differently on 6.1 and 6.12, with
/// npt=0 or 1, under TCG or on a real CPU).
public struct RecordingSession: Equatable, Sendable {
    public var nestdbgVersion: String
    public var startedAt: String
    public var commandLine: String
    /// `uname -r` of the host whose KVM ran the L1.
    public var kernel: String
    /// /sys/module/kvm_amd/parameters: name → value ("nested": "1", "npt": "0"…); empty without kvm_amd.
    public var kvmAMD: [String: String]
    public var cpuModel: String
    /// "demo", "image l1.elf", "QEMU pid 1234 vCPU 0".
    public var target: String
    /// SHA-256 of the L1 image file, where there is one.
    public var imageSHA256: String?
    /// "tracepoint" or "patch".
    public var stopSource: String

    public init(
        nestdbgVersion: String, startedAt: String, commandLine: String, kernel: String, kvmAMD: [String: String],
        cpuModel: String, target: String, imageSHA256: String?, stopSource: String
    ) {
        self.nestdbgVersion = nestdbgVersion
        self.startedAt = startedAt
        self.commandLine = commandLine
        self.kernel = kernel
        self.kvmAMD = kvmAMD
        self.cpuModel = cpuModel
        self.target = target
        self.imageSHA256 = imageSHA256
        self.stopSource = stopSource
    }

    /// This host, now: the kernel, kvm_amd's parameters and the CPU read from /proc and /sys.
    public static func here(nestdbgVersion: String, target: String, image: [UInt8]?, stopSource: String)
        -> RecordingSession
    {
        let parameters = "/sys/module/kvm_amd/parameters"
        var kvmAMD: [String: String] = [:]
        for name in (try? FileManager.default.contentsOfDirectory(atPath: parameters)) ?? [] {
            if let value = try? String(contentsOfFile: "\(parameters)/\(name)", encoding: .utf8) {
                kvmAMD[name] = value.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "" }
        let kernel = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return RecordingSession(
            nestdbgVersion: nestdbgVersion, startedAt: ISO8601DateFormatter().string(from: Date()),
            commandLine: CommandLine.arguments.joined(separator: " "), kernel: kernel ?? "unknown",
            kvmAMD: kvmAMD, cpuModel: model ?? "unknown", target: target,
            imageSHA256: image.map { SHA256.hex(of: $0) }, stopSource: stopSource)
    }
}
