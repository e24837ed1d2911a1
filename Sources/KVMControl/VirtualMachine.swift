import CKVM
import Glibc

/// A guest-physical memory slot backed by an anonymous mapping.
public struct MemoryRegion: @unchecked Sendable {
    public let slot: UInt32
    public let guestPhysicalAddress: UInt64
    public let size: Int
    let host: UnsafeMutableRawPointer

    var end: UInt64 { guestPhysicalAddress + UInt64(size) }
}

/// A KVM virtual machine: memory slots, vCPUs, an optional in-kernel irqchip.
public final class VirtualMachine: @unchecked Sendable {
    public let system: KVM
    let fd: Int32
    public private(set) var regions: [MemoryRegion] = []
    /// Whether `createIRQChip()` made an in-kernel irqchip (then each vCPU has a LAPIC to save).
    public private(set) var hasIRQChip = false

    init(system: KVM, fd: Int32) {
        self.system = system
        self.fd = fd
    }

    deinit {
        // vCPUs hold a reference to their VM, so by now they are all gone:
        // their kvm_run mappings are unmapped and their fds closed.
        close(fd)
        for r in regions { munmap(r.host, r.size) }
    }

    /// `KVM_CHECK_EXTENSION` on the VM fd (some answers are per VM).
    public func checkExtension(_ cap: Capability) throws -> Int {
        Int(try kvmIoctl(fd, CKVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION(\(cap.name))", value: UInt(cap.rawValue)))
    }

    /// Maps `size` bytes of zeroed anonymous memory at `guestPhysicalAddress`
    /// (`KVM_SET_USER_MEMORY_REGION`).
    @discardableResult
    public func addMemory(at guestPhysicalAddress: UInt64, size: Int) throws -> MemoryRegion {
        let page = 4096
        guard size > 0, size % page == 0, guestPhysicalAddress % UInt64(page) == 0 else {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_USER_MEMORY_REGION",
                reason: "address and size must be non-zero multiples of 4096")
        }
        let newEnd = guestPhysicalAddress + UInt64(size)
        if regions.contains(where: { guestPhysicalAddress < $0.end && $0.guestPhysicalAddress < newEnd }) {
            throw KVMError.invalidArgument(
                operation: "KVM_SET_USER_MEMORY_REGION", reason: "region overlaps an existing slot")
        }
        guard let host = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            host != MAP_FAILED
        else {
            throw KVMError.system(call: "mmap(guest memory)", errno: errno)
        }
        let slot = UInt32(regions.count)
        let r = MemoryRegion(slot: slot, guestPhysicalAddress: guestPhysicalAddress, size: size, host: host)
        do {
            try setUserMemoryRegion(r, slot: slot, "KVM_SET_USER_MEMORY_REGION")
        } catch {
            munmap(host, size)
            throw error
        }
        regions.append(r)
        return r
    }

    /// Maps every slot into KVM's second address space too, the one a vCPU
    /// in SMM uses (`KVM_SET_USER_MEMORY_REGION`, slot | 1 << 16). Without
    /// it SMM sees no memory at all: its first fetch is a nested page fault
    /// KVM cannot resolve (an emulation failure). QEMU maps SMRAM there
    /// plus the rest of RAM; nestdbg has no SMRAM of its own, so it is all RAM.
    /// Call it after the last `addMemory`; false where KVM has one address space.
    @discardableResult
    public func mapMemoryForSMM() throws -> Bool {
        guard try checkExtension(.multiAddressSpace) >= 2 else { return false }
        for r in regions {
            try setUserMemoryRegion(r, slot: r.slot | 1 << 16, "KVM_SET_USER_MEMORY_REGION (SMM address space)")
        }
        return true
    }

    /// `KVM_SET_USER_MEMORY_REGION`: `region`'s host memory at its guest-physical address, as `slot`.
    private func setUserMemoryRegion(_ region: MemoryRegion, slot: UInt32, _ name: String) throws {
        var raw = kvm_userspace_memory_region(
            slot: slot, flags: 0, guest_phys_addr: region.guestPhysicalAddress,
            memory_size: UInt64(region.size), userspace_addr: UInt64(UInt(bitPattern: region.host)))
        try kvmIoctl(fd, CKVM_SET_USER_MEMORY_REGION, name, &raw)
    }

    /// `KVM_CREATE_IRQCHIP`. Without it HLT exits to userspace, which the
    /// debugger's patch-and-step stop mechanism relies on.
    public func createIRQChip() throws {
        try kvmIoctl(fd, CKVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP", value: 0)
        hasIRQChip = true
    }

    /// `KVM_CREATE_VCPU` with the given id, and its `kvm_run` mapping.
    public func createVCPU(id: UInt32 = 0) throws -> VCPU {
        let vfd = try kvmIoctl(fd, CKVM_CREATE_VCPU, "KVM_CREATE_VCPU", value: UInt(id))
        do {
            return try VCPU(vm: self, fd: vfd, id: id)
        } catch {
            close(vfd)
            throw error
        }
    }

    // MARK: Guest-physical memory

    /// Calls `body` for each piece of [address, address+length) in slot order;
    /// throws if any byte lies outside every slot.
    private func forEachPiece(
        _ address: UInt64, _ length: Int,
        _ body: (UnsafeMutableRawPointer, _ offsetInRequest: Int, _ count: Int) -> Void
    ) throws {
        guard length >= 0, address.addingReportingOverflow(UInt64(length)).overflow == false else {
            throw KVMError.guestMemoryOutOfRange(address: address, length: length)
        }
        // Check the whole range first, so a failed write changes nothing.
        var pieces: [(UnsafeMutableRawPointer, Int, Int)] = []
        var cursor = address
        let end = address + UInt64(length)
        while cursor < end {
            guard let r = regions.first(where: { cursor >= $0.guestPhysicalAddress && cursor < $0.end }) else {
                throw KVMError.guestMemoryOutOfRange(address: address, length: length)
            }
            let count = Int(min(end, r.end) - cursor)
            pieces.append((r.host + Int(cursor - r.guestPhysicalAddress), Int(cursor - address), count))
            cursor += UInt64(count)
        }
        for p in pieces { body(p.0, p.1, p.2) }
    }

    /// Reads guest-physical memory; bounds-checked against the slots.
    public func read(at address: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { dst in
            try forEachPiece(address, count) { src, offset, n in
                (dst.baseAddress! + offset).copyMemory(from: src, byteCount: n)
            }
        }
        return out
    }

    /// Writes guest-physical memory; bounds-checked against the slots, all or nothing.
    public func write(_ bytes: [UInt8], at address: UInt64) throws {
        try bytes.withUnsafeBytes { src in
            try forEachPiece(address, bytes.count) { dst, offset, n in
                dst.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
        }
    }

    /// Reads a little-endian integer from guest-physical memory.
    public func readInteger<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) throws -> T {
        let bytes = try read(at: address, count: MemoryLayout<T>.size)
        return bytes.reversed().reduce(T.zero) { ($0 << 8) | T($1) }
    }

    /// Writes a little-endian integer into guest-physical memory.
    public func writeInteger<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws {
        try write((0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }, at: address)
    }
}
