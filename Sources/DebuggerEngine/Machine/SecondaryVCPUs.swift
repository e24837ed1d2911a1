import Foundation
import KVMControl

/// The vCPUs beyond the first (the APs) of an own VM, one thread each.
///
/// All-stop: the APs run only while the debugger's vCPU (vCPU 0) runs
/// toward its next stop; when a stop comes they are kicked out of KVM_RUN
/// and wait, and they resume together with vCPU 0. Each thread owns its
/// vCPU; the debugger talks to them only through `resume()` and `pause()`.
/// An AP that ends the guest (isa-debug-exit) or fails (a triple fault, a
/// failed entry) reports it once, as the `ending`, and kicks vCPU 0.
final class SecondaryVCPUs: @unchecked Sendable {
    private let vcpus: [VCPU]
    private let devices: Devices
    private let kickPrimary: @Sendable () -> Void
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var paused = true
    private var ending = false
    private var inRun: Set<Int> = []
    private var pendingEnd: TargetEnded?

    init(vcpus: [VCPU], devices: Devices, kickPrimary: @escaping @Sendable () -> Void) {
        self.vcpus = vcpus
        self.devices = devices
        self.kickPrimary = kickPrimary
        for (i, vcpu) in vcpus.enumerated() {
            let thread = Thread { [self] in loop(index: i, vcpu: vcpu) }
            thread.name = "nestdbg vCPU \(vcpu.id)"
            thread.start()
        }
    }

    var count: Int { vcpus.count }

    /// Lets the APs run (vCPU 0 is about to).
    func resume() {
        condition.lock()
        paused = false
        condition.broadcast()
        condition.unlock()
    }

    /// Stops every AP and waits until none is inside KVM_RUN.
    func pause() {
        condition.lock()
        paused = true
        condition.unlock()
        for v in vcpus { v.kick() }
        condition.lock()
        while !inRun.isEmpty {
            condition.unlock()
            for v in vcpus { v.kick() }
            condition.lock()
            _ = condition.wait(until: Date().addingTimeInterval(0.01))
        }
        condition.unlock()
    }

    /// What an AP reported that ends the VM (once).
    func takeEnd() -> TargetEnded? {
        condition.lock()
        defer { condition.unlock() }
        defer { pendingEnd = nil }
        return pendingEnd
    }

    /// Ends the threads (the VM is going away).
    func shutdown() {
        condition.lock()
        ending = true
        paused = true
        condition.broadcast()
        condition.unlock()
        pause()
    }

    private func report(_ end: TargetEnded) {
        condition.lock()
        if pendingEnd == nil { pendingEnd = end }
        paused = true
        condition.unlock()
        kickPrimary()
    }

    private func loop(index: Int, vcpu: VCPU) {
        while true {
            condition.lock()
            while paused && !ending { condition.wait() }
            if ending {
                condition.unlock()
                return
            }
            inRun.insert(index)
            condition.unlock()
            let result = Result { try vcpu.run() }
            condition.lock()
            inRun.remove(index)
            condition.broadcast()
            condition.unlock()
            let exit: VCPUExit
            switch result {
            case let .success(e): exit = e
            case let .failure(error as KVMError) where error == .ioctl(name: "KVM_RUN", errno: EAGAIN):
                // An AP that was waiting for INIT/SIPI got one: KVM returns EAGAIN and wants KVM_RUN again.
                continue
            case let .failure(error):
                report(TargetEnded(description: "vCPU \(vcpu.id): \(error)", guestStatus: nil))
                continue
            }
            switch exit {
            case .interrupted, .hlt:
                continue
            case let .io(port, direction, size, count, data):
                let (reply, outcome) = devices.access(
                    port: port, direction: direction, size: size, count: count, data: data,
                    inSMM: vcpu.lastRunFlags.contains(.smm))
                if let reply { try? vcpu.completeIn(reply) }
                if case let .guestExited(status) = outcome {
                    report(
                        TargetEnded(
                            description: "vCPU \(vcpu.id) wrote \(status) to isa-debug-exit", guestStatus: status))
                }
            case .shutdown:
                report(TargetEnded(description: "vCPU \(vcpu.id): triple fault (KVM_EXIT_SHUTDOWN)", guestStatus: nil))
            default:
                report(
                    TargetEnded(
                        description: "vCPU \(vcpu.id): \(exit.kvmName), which nestdbg does not emulate for an AP",
                        guestStatus: nil))
            }
        }
    }
}
