import DebuggerEngine
import Foundation
import SVMModel

/// The parts of a stop stored as JSON in `stops.detail`, in the stop JSON's shapes.
struct StoredDetail: Codable {
    var exit: DecodedExit?
    var synced: [FieldChange]
    var violations: [Violation]
    var why: ExitCause?
    var kvm: KVMEvidence?
    var kvmVsVMCB12: [String]
    /// The breakpoint the live run's engine said this stop matched.
    var hit: Breakpoint?

    enum CodingKeys: String, CodingKey {
        case exit, synced, violations, why, kvm, hit
        case kvmVsVMCB12 = "kvm_vs_vmcb12"
    }

    init(_ stop: Stop) {
        exit = stop.exit
        synced = stop.synced
        violations = stop.violations
        why = stop.why
        kvm = stop.kvm
        kvmVsVMCB12 = stop.kvmDisagreements
        hit = stop.hit
    }
}

/// SQLite's INTEGER is signed: 64-bit values are stored as their bit pattern.
extension UInt64 {
    var stored: Int64 { Int64(bitPattern: self) }
    init(stored: Int64) { self.init(bitPattern: stored) }
}

/// FNV-1a, to find a blob already stored (the bytes are compared too).
func blobHash(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
