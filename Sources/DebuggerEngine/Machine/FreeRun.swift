import Foundation
import KVMControl
import Synchronization

/// How a run with no stops ended (`nestdbg run --free`).
public enum FreeRunEnd: Equatable, Sendable {
    /// The guest wrote its status to isa-debug-exit.
    case exited(status: Int32)
    /// A triple fault, a failed entry, KVM's internal error, an AP's failure.
    case fault(String)
    /// The guest had not ended after the time allowed.
    case timedOut(seconds: Double)
}

/// What a free run saw on the way, for its report.
public struct FreeRunSummary: Equatable, Sendable {
    public var end: FreeRunEnd
    public var elapsed: Duration
    /// Exits of vCPU 0 to nestdbg (I/O, MMIO); the in-kernel ones are not seen.
    public var vmmExits = 0
    /// Accesses to ports no device claims (reads all-ones, writes dropped).
    public var unclaimedPorts = 0
    /// SMIs taken into nestdbg's SMM stub.
    public var smmEntries = 0
}

extension OwnVMTarget {
    /// Runs the guest to its end with no stop source at all: every vCPU runs,
    /// the VMM emulates its devices, nothing is read or patched. The
    /// baseline a stepping run is measured against. `serial` gets COM1's
    /// output as it comes. The calling thread becomes the vCPU's owner.
    public func runToEnd(timeout: Double, serial: ([UInt8]) -> Void) throws -> FreeRunSummary {
        claimVCPU()
        let clock = ContinuousClock()
        let start = clock.now
        let expired = Flag()
        let timer = DispatchSource.makeTimerSource(queue: .global())
        timer.schedule(deadline: .now() + timeout)
        timer.setEventHandler { [self] in
            expired.set()
            kick()
        }
        timer.resume()
        defer { timer.cancel() }
        resumeOtherVCPUs()
        defer { pauseOtherVCPUs() }
        var summary = FreeRunSummary(end: .timedOut(seconds: timeout), elapsed: .zero)  // set below
        var printed = 0
        func flushSerial() {
            let new = devices.serialOutput(from: printed)
            if !new.isEmpty {
                serial(Array(new))
                printed += new.count
            }
        }
        summary.end =
            try runUntilEnd(&summary, expired: expired, flushSerial: flushSerial) ?? .timedOut(seconds: timeout)
        flushSerial()
        summary.elapsed = clock.now - start
        return summary
    }

    /// How the guest ended; nil when the time ran out first.
    private func runUntilEnd(_ summary: inout FreeRunSummary, expired: Flag, flushSerial: () -> Void) throws
        -> FreeRunEnd?
    {
        while true {
            let exit: VCPUExit
            do {
                exit = try run()
            } catch let ended as TargetEnded {
                return ended.guestStatus.map { .exited(status: $0) } ?? .fault(ended.description)
            }
            switch exit {
            case .interrupted:
                if expired.isSet { return nil }
                continue
            case .io:
                summary.vmmExits += 1
                switch try handleIO(exit) {
                case let .guestExited(status):
                    return .exited(status: status)
                case .unclaimed: summary.unclaimedPorts += 1
                case .smmEntered: summary.smmEntries += 1
                case let .l1ReportedUnhandledExit(code):
                    return .fault("L1 reported an exit it does not handle: 0x\(String(code, radix: 16))")
                case .handled: break
                }
                flushSerial()
            case .mmio, .hlt:
                // No device behind MMIO outside the irqchip's pages; a HLT without an irqchip waits for nothing.
                summary.vmmExits += 1
                if case .hlt = exit, !vm.hasIRQChip {
                    return .fault("HLT with no interrupt controller: nothing can wake the vCPU")
                }
            default:
                guard let stop = try classify(exit), case let .fault(fault) = stop.event else { continue }
                return .fault(fault.description)
            }
        }
    }
}

/// A one-way flag another thread sets.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
