/// The order a restore puts a vCPU's parts in.
///
/// QEMU's (target/i386/kvm/kvm.c): the vCPU is created with its CPUID
/// (`kvm_arch_init_vcpu`), guest RAM and the APIC arrive with the migration
/// stream (the APIC's `post_load` puts KVM_SET_LAPIC), then
/// `kvm_arch_put_registers(KVM_PUT_FULL_STATE)` puts SREGS2 ("must be before
/// kvm_put_nested_state so that EFER.SVME is set"), NESTED_STATE, the TSC
/// rate, REGS, XSAVE, XCRS, MSRs, VCPU_EVENTS, MP_STATE, the TSC-deadline
/// MSR and DEBUGREGS. nestdbg's VMs have no in-kernel APIC, so its MSR step
/// carries the TSC-deadline MSR along with the rest.
public struct RestoreOrder: Equatable, Sendable, CustomStringConvertible {
    public var name: String
    /// The parts after the vCPU's creation (CPUID) and memory, in order.
    public var steps: [MigrationPart]

    public init(name: String, steps: [MigrationPart]) {
        self.name = name
        self.steps = steps
    }

    public var description: String { "\(name) (" + steps.map(\.rawValue).joined(separator: ", ") + ")" }

    /// The parts an order arranges (CPUID and memory come first in every order).
    public static let orderable: [MigrationPart] = [
        .lapic, .sregs, .nestedState, .tscKHz, .regs, .xsave, .xcrs, .msrs,
        .events, .mpState, .debugRegs,
    ]

    public static let qemu = RestoreOrder(name: "qemu", steps: orderable)

    /// QEMU's order with `part` moved to just before `anchor` (nil: to the end).
    static func moving(_ part: MigrationPart, before anchor: MigrationPart?, name: String) -> RestoreOrder {
        var steps = qemu.steps.filter { $0 != part }
        let at = anchor.flatMap { steps.firstIndex(of: $0) } ?? steps.endIndex
        steps.insert(part, at: at)
        return RestoreOrder(name: name, steps: steps)
    }

    /// The orders worth trying: each moves one part across a dependence the
    /// KVM thread argued about (EFER.SVME before nested state; GIF before
    /// MP_STATE; events and registers against the switch to vmcb02).
    public static let variants: [RestoreOrder] = [
        qemu,
        moving(.nestedState, before: .sregs, name: "nested-state-first"),
        moving(.nestedState, before: nil, name: "nested-state-last"),
        moving(.regs, before: .nestedState, name: "regs-before-nested-state"),
        moving(.events, before: .nestedState, name: "events-before-nested-state"),
        moving(.events, before: nil, name: "events-after-mp-state"),
        moving(.mpState, before: .sregs, name: "mp-state-first"),
        moving(.msrs, before: .sregs, name: "msrs-first"),
        moving(.debugRegs, before: .sregs, name: "debugregs-first"),
        RestoreOrder(name: "reverse", steps: qemu.steps.reversed()),
    ]

    /// A variant's name, or a comma list of parts: those first, in that
    /// order, then the rest in QEMU's ("nested-state,sregs").
    public static func parse(_ text: String) throws(OrderError) -> RestoreOrder {
        if let named = variants.first(where: { $0.name == text }) { return named }
        var listed: [MigrationPart] = []
        for word in text.split(separator: ",").map({ String($0.filter { $0 != " " }) }) {
            guard let part = MigrationPart(rawValue: word), orderable.contains(part) else { throw .unknownPart(word) }
            guard !listed.contains(part) else { throw .repeated(word) }
            listed.append(part)
        }
        guard !listed.isEmpty else { throw .unknownPart(text) }
        return RestoreOrder(name: text, steps: listed + qemu.steps.filter { !listed.contains($0) })
    }

    public enum OrderError: Error, Equatable, CustomStringConvertible {
        case unknownPart(String)
        case repeated(String)

        public var description: String {
            switch self {
            case let .unknownPart(word):
                return "unknown order or part '\(word)': an order is one of "
                    + RestoreOrder.variants.map(\.name).joined(separator: ", ")
                    + ", or a comma list of " + RestoreOrder.orderable.map(\.rawValue).joined(separator: ", ")
            case let .repeated(word): return "'\(word)' appears twice in the order"
            }
        }
    }
}
