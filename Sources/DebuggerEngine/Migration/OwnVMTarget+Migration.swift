import KVMControl

/// A target whose vCPU can be saved as a migrating VMM saves it and restored
/// into a fresh VM of its own kind (`MigrationCheck`).
public protocol MigratableTarget: RunnableTarget, Sendable {
    /// The whole vCPU and guest memory. The owner thread calls it, with the vCPU stopped.
    func captureState() throws -> VCPUState
    /// A new VM and vCPU given `state`; nil target when a restore ioctl failed (the log's last step says which).
    func restoredClone(
        from state: VCPUState, order: RestoreOrder,
        omitting: Set<Omission>
    ) throws -> (clone: OwnVMTarget?, log: [RestoreStep])
}

extension OwnVMTarget: MigratableTarget {
    /// Its vCPU can be saved and restored into a clone.
    public var migratable: (any MigratableTarget)? { self }

    /// The whole vCPU and guest memory, read as a migrating VMM reads them.
    /// The owner thread calls it, with the vCPU stopped.
    public func captureState() throws -> VCPUState {
        try checkThread("capturing the vCPU state")
        try vcpu.completePendingExit()
        return try VCPUState.capture(vcpu: vcpu, vm: vm)
    }

    /// A new VM and vCPU given `state` as a migration destination would be:
    /// memory and CPUID first, then the parts in `order`, without `omitting`.
    /// The clone keeps this target's devices, VMRUN sites and symbols. Nil
    /// target when a restore ioctl failed (the log's last step says which).
    public func restoredClone(
        from state: VCPUState, order: RestoreOrder,
        omitting: Set<Omission>
    ) throws -> (clone: OwnVMTarget?, log: [RestoreStep]) {
        let clone = try vm.system.createVM()
        for image in state.memory {
            try clone.addMemory(at: image.guestPhysicalAddress, size: image.bytes.count)
            try clone.write(image.bytes, at: image.guestPhysicalAddress)
        }
        let vcpu = try clone.createVCPU()
        try vcpu.setCPUID(state.cpuid)
        let prelude = [
            RestoreStep(part: .cpuid, ioctl: MigrationPart.cpuid.setIoctl, outcome: .done),
            RestoreStep(part: .memory, ioctl: MigrationPart.memory.setIoctl, outcome: .done),
        ]
        let log = prelude + state.restore(into: vcpu, order: order, omitting: omitting)
        if case .failed = log.last?.outcome { return (nil, log) }
        let target = OwnVMTarget(
            name: "\(name) (clone)", vm: clone, vcpu: vcpu, ports: ports, vmrunSites: vmrunSites,
            symbols: symbols, unknownVMRUNSitesReason: unknownVMRUNSitesReason)
        return (target, log)
    }
}
