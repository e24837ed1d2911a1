import CProcess

#if canImport(Glibc)
    import Glibc
#endif

/// Guest-physical memory of a running QEMU, read and written in QEMU's
/// address space (process_vm_readv/writev) through its RAM ranges.
/// An access must lie wholly in RAM: one that touches ROM, MMIO or a hole
/// fails before any byte moves, naming the first address that is not RAM.
public struct GuestMemory: Sendable {
    public let pid: Int32
    /// Sorted by guest-physical address.
    public let ranges: [GuestRAMRange]

    public init(pid: Int32, ranges: [GuestRAMRange]) {
        self.pid = pid
        self.ranges = ranges.sorted { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
    }

    /// The host virtual address in QEMU of a guest-physical address, nil outside RAM.
    public func hostAddress(of address: UInt64) -> UInt64? {
        ranges.first { $0.contains(address) }.map { $0.hostAddress + (address - $0.guestPhysicalAddress) }
    }

    public func read(at address: UInt64, count: Int) throws(ProcessError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        // withUnsafeMutableBytes rethrows as `any Error`: a Result keeps the error typed.
        let outcome = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(ProcessError) in try read(into: buffer, at: address) }
        }
        try outcome.get()
        return bytes
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(ProcessError) {
        for piece in try pieces(at: address, count: buffer.count) {
            try transfer(piece, verb: "process_vm_readv") { remote, done, length in
                cproc_read_memory(pid, remote, buffer.baseAddress! + done, length)
            }
        }
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws(ProcessError) {
        let outcome = bytes.withUnsafeBytes { buffer in
            Result { () throws(ProcessError) in try write(from: buffer, at: address) }
        }
        try outcome.get()
    }

    public func write(from buffer: UnsafeRawBufferPointer, at address: UInt64) throws(ProcessError) {
        for piece in try pieces(at: address, count: buffer.count) {
            try transfer(piece, verb: "process_vm_writev") { remote, done, length in
                cproc_write_memory(pid, remote, buffer.baseAddress! + done, length)
            }
        }
    }

    /// A stretch of an access inside one range.
    private struct Piece {
        let guestAddress: UInt64
        let hostAddress: UInt64
        /// Where the piece starts in the caller's buffer.
        let bufferOffset: Int
        let count: Int
    }

    /// The access split at range boundaries; it may go on into an adjacent range, never across a hole.
    private func pieces(at address: UInt64, count: Int) throws(ProcessError) -> [Piece] {
        guard count > 0 else { return [] }
        guard address <= UInt64.max - UInt64(count - 1) else { throw .outsideGuestRAM(address: address) }
        var pieces: [Piece] = []
        var done = 0
        while done < count {
            let current = address + UInt64(done)
            guard let range = ranges.first(where: { $0.contains(current) }) else {
                throw .outsideGuestRAM(address: current)
            }
            let offset = current - range.guestPhysicalAddress
            let length = Int(min(UInt64(count - done), range.size - offset))
            pieces.append(
                Piece(
                    guestAddress: current, hostAddress: range.hostAddress + offset, bufferOffset: done, count: length))
            done += length
        }
        return pieces
    }

    /// Moves one piece, going on after partial transfers. `move(remote, bufferOffset, length)` returns bytes or -errno.
    private func transfer(
        _ piece: Piece, verb: String, move: (UInt64, Int, Int) -> Int
    ) throws(ProcessError) {
        var done = 0
        while done < piece.count {
            let result = move(piece.hostAddress + UInt64(done), piece.bufferOffset + done, piece.count - done)
            if result == -Int(ESRCH) { throw .noSuchProcess(pid: pid) }
            if result == -Int(EINTR) { continue }
            guard result > 0 else {
                let guestAddress = piece.guestAddress + UInt64(done)
                let call =
                    "\(verb)(process \(pid), HVA 0x\(String(piece.hostAddress + UInt64(done), radix: 16)) "
                    + "for GPA 0x\(String(guestAddress, radix: 16)), \(piece.count - done) bytes)"
                // 0 bytes without an error: the next page is not there either.
                throw .system(call: call, errno: result == 0 ? EFAULT : Int32(-result))
            }
            done += result
        }
    }
}
