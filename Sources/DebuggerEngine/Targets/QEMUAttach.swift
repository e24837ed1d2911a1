import Foundation
import KVMControl
import ProcessControl

extension AttachPoint {
    /// Finds vCPU `vcpu` of QEMU process `pid`: its fd (/proc), its thread
    /// and the guest's RAM (QMP at `qmpPath`, else the socket on QEMU's
    /// command line, else /proc alone), and checks what attaching needs:
    /// rights to trace, no other tracer, KVM's tracepoints, nested state.
    /// A QEMU started with -S is resumed (QMP `cont`) at the first run.
    public static func locate(pid: Int32, vcpu: Int, qmpPath: String?) throws -> AttachPoint {
        let process = try QEMUProcess(pid: pid)
        let permission = TracePermission.current()
        guard permission.isRoot || permission.hasPtraceCapability else {
            throw ProcessError.cannotTrace(pid: pid, reason: permission.explainDenial(of: process))
        }
        try process.ensureNotTraced()
        let descriptors = try process.kvmDescriptors()
        guard let descriptor = descriptors.vcpus.first(where: { $0.index == vcpu }) else {
            let known = descriptors.vcpus.map { String($0.index) }.joined(separator: ", ")
            throw ProcessError.unsuitable("\(process.label) has no vCPU \(vcpu): its vCPUs are \(known)")
        }
        try checkKVM()
        if case let .unavailable(why) = TracepointStopSource.availability() {
            throw ProcessError.unsuitable("KVM's tracepoints cannot stop the vCPU: \(why)")
        }
        let client = try (qmpPath ?? process.qmpSocketPath()).map { try QMPClient(path: $0) }
        let thread: Int32
        if let client {
            let threads = try client.vcpuThreads()
            guard let t = threads.first(where: { $0.index == vcpu }) else {
                throw ProcessError.unsuitable(
                    "\(process.label) has no vCPU \(vcpu) (QMP query-cpus-fast lists \(threads.map(\.index)))")
            }
            thread = t.threadID
        } else {
            thread = try process.vcpuThread(index: vcpu).threadID
        }
        let ranges = try client?.guestRAM() ?? process.fallbackGuestRAM()
        // QEMU serves one QMP client at a time: nestdbg keeps its connection
        // only as long as it needs it (until `cont` for a QEMU started with -S).
        var resume: (() throws -> Void)?
        if let client, try client.status().state == .prelaunch {
            resume = { try client.cont() }
        }
        return AttachPoint(
            pid: pid, vcpuIndex: UInt32(vcpu), thread: thread, vcpuFD: descriptor.fileDescriptor,
            memory: QEMUMemory(GuestMemory(pid: pid, ranges: ranges)), processName: "QEMU \(pid)",
            resumeProcess: resume)
    }

    /// This machine's KVM must keep nested state (the sandbox's does) and
    /// must show ptrace a thread inside KVM_RUN as a normal system call.
    private static func checkKVM() throws {
        if FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") {
            throw ProcessError.unsuitable(
                "this host's KVM is PVM (kvm_pvm): a vCPU thread inside KVM_RUN shows ptrace no user registers, so nestdbg cannot run ioctls in it; use scripts/sandbox"
            )
        }
        guard try KVM().checkExtension(.nestedState) > 0 else {
            throw ProcessError.unsuitable(
                "this KVM keeps no nested state (KVM_CAP_NESTED_STATE is 0): no nested SVM to step; use scripts/sandbox"
            )
        }
    }
}

/// QEMU's RAM as the engine reads guest memory.
final class QEMUMemory: GuestPhysicalMemory {
    let memory: GuestMemory
    init(_ memory: GuestMemory) { self.memory = memory }
    func read(_ address: UInt64, count: Int) throws -> [UInt8] { try memory.read(at: address, count: count) }
    func write(_ bytes: [UInt8], at address: UInt64) throws { try memory.write(bytes, at: address) }
}
