import CKVM
import Glibc

/// The typed vCPU ioctls, written once over `rawIoctl`: nestdbg's own vCPU
/// issues them on its fd; a vCPU of another process (`RemoteVCPU`) has them
/// run by a thread of the VM's owner, since KVM answers vCPU ioctls only there.
public protocol VCPUIoctls: AnyObject {
    /// KVM_CAP_SREGS2 (PDPTRs in the special registers).
    var hasSREGS2: Bool { get }
    /// KVM_CAP_NESTED_STATE: the largest nested-state blob (0: none).
    var nestedStateMaxSize: Int { get }
    /// Issues `request` on the vCPU fd with `argument`, `size` bytes the
    /// kernel reads and writes. Returns the kernel's result (a negative
    /// errno on failure); throws only when the ioctl could not be issued.
    func rawIoctl(_ request: UInt, _ argument: UnsafeMutableRawPointer?, size: Int) throws -> Int32
}

extension VCPUIoctls {
    /// Issues an ioctl on a buffer, turning failure into `KVMError.ioctl`.
    @discardableResult
    func ioctl(_ request: UInt, _ name: String, _ argument: UnsafeMutableRawPointer?, size: Int) throws -> Int32 {
        let r = try rawIoctl(request, argument, size: size)
        if r < 0 { throw KVMError.ioctl(name: name, errno: -r) }
        return r
    }

    /// Issues an ioctl on one C struct.
    @discardableResult
    func ioctl<T>(_ request: UInt, _ name: String, _ value: inout T) throws -> Int32 {
        try withUnsafeMutableBytes(of: &value) { try ioctl(request, name, $0.baseAddress, size: $0.count) }
    }

    // MARK: Registers

    /// `KVM_GET_REGS`.
    public func registers() throws -> GeneralRegisters {
        var c = kvm_regs()
        try ioctl(CKVM_GET_REGS, "KVM_GET_REGS", &c)
        return GeneralRegisters(c)
    }

    /// `KVM_SET_REGS`.
    public func setRegisters(_ regs: GeneralRegisters) throws {
        var c = regs.cValue
        try ioctl(CKVM_SET_REGS, "KVM_SET_REGS", &c)
    }

    /// `KVM_GET_SREGS2` (with PDPTRs in PAE paging), or `KVM_GET_SREGS` before 5.14.
    public func specialRegisters() throws -> SpecialRegisters {
        if hasSREGS2 {
            var c = kvm_sregs2()
            try ioctl(CKVM_GET_SREGS2, "KVM_GET_SREGS2", &c)
            return SpecialRegisters(c)
        }
        var c = kvm_sregs()
        try ioctl(CKVM_GET_SREGS, "KVM_GET_SREGS", &c)
        return SpecialRegisters(c)
    }

    /// `KVM_SET_SREGS2` (PDPTRs applied when given), or `KVM_SET_SREGS` before 5.14.
    public func setSpecialRegisters(_ sregs: SpecialRegisters) throws {
        if hasSREGS2 {
            var c = sregs.sregs2
            try ioctl(CKVM_SET_SREGS2, "KVM_SET_SREGS2", &c)
            return
        }
        guard sregs.pdptrs == nil else {
            throw KVMError.unsupported(operation: "KVM_SET_SREGS", reason: "PDPTRs need KVM_CAP_SREGS2")
        }
        try setLegacySpecialRegisters(sregs)
    }

    /// `KVM_SET_SREGS` even where SREGS2 exists: it has no PDPTR field, so in
    /// PAE paging KVM loads them from guest memory at CR3 (what a VMM without SREGS2 gets).
    public func setLegacySpecialRegisters(_ sregs: SpecialRegisters) throws {
        var c = kvm_sregs()
        try ioctl(CKVM_GET_SREGS, "KVM_GET_SREGS", &c)
        sregs.apply(to: &c)
        try ioctl(CKVM_SET_SREGS, "KVM_SET_SREGS", &c)
    }

    /// `KVM_GET_MSRS` for the given indices, in their order.
    public func msrs(_ indices: [UInt32]) throws -> [UInt64] {
        try withMSRBuffer(indices.map { ($0, 0) }) { raw, bytes in
            let n = try ioctl(CKVM_GET_MSRS, "KVM_GET_MSRS", raw, size: bytes)
            if Int(n) < indices.count {
                throw KVMError.msrNotHandled(operation: "KVM_GET_MSRS", index: indices[Int(n)])
            }
            return indices.indices.map { raw.load(fromByteOffset: 8 + $0 * 16 + 8, as: UInt64.self) }
        }
    }

    /// `KVM_SET_MSRS`; throws naming the first MSR KVM refused.
    public func setMSRs(_ values: [(index: UInt32, value: UInt64)]) throws {
        try withMSRBuffer(values.map { ($0.index, $0.value) }) { raw, bytes in
            let n = try ioctl(CKVM_SET_MSRS, "KVM_SET_MSRS", raw, size: bytes)
            if Int(n) < values.count {
                throw KVMError.msrNotHandled(operation: "KVM_SET_MSRS", index: values[Int(n)].index)
            }
        }
    }

    private func withMSRBuffer<R>(_ entries: [(UInt32, UInt64)], _ body: (UnsafeMutableRawPointer, Int) throws -> R)
        throws -> R
    {
        let bytes = 8 + entries.count * 16  // kvm_msrs header, then {index, reserved, data}
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        raw.storeBytes(of: UInt32(entries.count), as: UInt32.self)
        for (i, e) in entries.enumerated() {
            raw.storeBytes(of: e.0, toByteOffset: 8 + i * 16, as: UInt32.self)
            raw.storeBytes(of: e.1, toByteOffset: 8 + i * 16 + 8, as: UInt64.self)
        }
        return try body(raw, bytes)
    }

    /// `KVM_GET_DEBUGREGS`.
    public func debugRegisters() throws -> DebugRegisters {
        var c = kvm_debugregs()
        try ioctl(CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", &c)
        return DebugRegisters(c)
    }

    /// `KVM_SET_DEBUGREGS`.
    public func setDebugRegisters(_ regs: DebugRegisters) throws {
        var c = regs.cValue
        try ioctl(CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", &c)
    }

    /// `KVM_SET_CPUID2`.
    public func setCPUID(_ entries: [CPUIDEntry]) throws {
        _ = try CPUIDEntry.withBuffer(entries) { raw in
            try ioctl(CKVM_SET_CPUID2, "KVM_SET_CPUID2", raw, size: CPUIDEntry.bufferSize(entries.count))
        }
    }

    /// `KVM_GET_VCPU_EVENTS`.
    public func events() throws -> VCPUEvents {
        var c = kvm_vcpu_events()
        try ioctl(CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", &c)
        return VCPUEvents(c)
    }

    /// `KVM_SET_VCPU_EVENTS`.
    public func setEvents(_ events: VCPUEvents) throws {
        var c = events.raw
        try ioctl(CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", &c)
    }

    /// `KVM_GET_MP_STATE`.
    public func mpState() throws -> MPState {
        var c = kvm_mp_state()
        try ioctl(CKVM_GET_MP_STATE, "KVM_GET_MP_STATE", &c)
        return MPState(rawValue: c.mp_state)
    }

    /// `KVM_SET_MP_STATE`.
    public func setMPState(_ state: MPState) throws {
        var c = kvm_mp_state(mp_state: state.rawValue)
        try ioctl(CKVM_SET_MP_STATE, "KVM_SET_MP_STATE", &c)
    }

    /// `KVM_SET_GUEST_DEBUG`.
    public func setGuestDebug(_ debug: GuestDebug) throws {
        var c = try debug.cValue()
        try ioctl(CKVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG", &c)
    }

    /// `KVM_TRANSLATE`: the guest-physical address of a linear address under
    /// the current paging (nil when not mapped).
    public func translate(_ linear: UInt64) throws -> UInt64? {
        var c = kvm_translation()
        c.linear_address = linear
        try ioctl(CKVM_TRANSLATE, "KVM_TRANSLATE", &c)
        return c.valid != 0 ? c.physical_address : nil
    }

    // MARK: Nested state

    /// `KVM_GET_NESTED_STATE`: the blob and its header. Always with room for
    /// the whole blob: SVM's get_nested_state only checks that the buffer
    /// holds the header, then writes the 4 KiB of data in guest mode whatever
    /// size it was given (a header-sized read overflowed the heap under 6.1;
    /// later kernels write in the same order).
    public func nestedState() throws -> NestedState {
        guard nestedStateMaxSize > 0 else {
            throw KVMError.unsupported(
                operation: "KVM_GET_NESTED_STATE",
                reason: "KVM_CAP_NESTED_STATE is 0 (no nested SVM or VMX in this KVM)")
        }
        var capacity = max(nestedStateMaxSize, NestedState.headerSize)
        while true {
            var bytes = [UInt8](repeating: 0, count: capacity)
            let r = try bytes.withUnsafeMutableBytes { raw -> Int32 in
                raw.storeBytes(of: UInt32(capacity), toByteOffset: 4, as: UInt32.self)
                return try rawIoctl(CKVM_GET_NESTED_STATE, raw.baseAddress, size: capacity)
            }
            let needed = Int(NestedState(bytes: bytes).size)
            if r == -E2BIG, needed > capacity {
                capacity = needed
                continue
            }
            if r < 0 { throw KVMError.ioctl(name: "KVM_GET_NESTED_STATE", errno: -r) }
            return NestedState(bytes: Array(bytes.prefix(max(needed, NestedState.headerSize))))
        }
    }

    /// `KVM_SET_NESTED_STATE` with a blob as `nestedState()` returned it.
    public func setNestedState(_ state: NestedState) throws {
        guard nestedStateMaxSize > 0 else {
            throw KVMError.unsupported(
                operation: "KVM_SET_NESTED_STATE",
                reason: "KVM_CAP_NESTED_STATE is 0 (no nested SVM or VMX in this KVM)")
        }
        guard state.bytes.count >= NestedState.headerSize, Int(state.size) <= state.bytes.count else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_NESTED_STATE",
                reason: "blob of \(state.bytes.count) bytes is shorter than its header's size")
        }
        var bytes = state.bytes
        _ = try bytes.withUnsafeMutableBytes { raw in
            try ioctl(CKVM_SET_NESTED_STATE, "KVM_SET_NESTED_STATE", raw.baseAddress, size: raw.count)
        }
    }
}
