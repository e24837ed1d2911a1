/// Why an image file cannot be run.
public enum ImageError: Error, Equatable, CustomStringConvertible {
    case empty
    case notELF32
    case malformed(String)
    case noMultibootHeader
    case outsideMemory(UInt64, Int)
    case flatNeedsLoadAddress

    public var description: String {
        switch self {
        case .empty: return "the image is empty"
        case .notELF32:
            return
                "not a 32-bit little-endian x86 ELF (Multiboot v1 kernels are ELF32; use --load-at for a flat binary)"
        case let .malformed(what): return "malformed ELF: \(what)"
        case .noMultibootHeader:
            return "no Multiboot v1 header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB"
        case let .outsideMemory(a, n):
            return "a segment at 0x\(String(a, radix: 16)) (\(n) bytes) lies outside the guest's memory"
        case .flatNeedsLoadAddress: return "a flat binary needs --load-at (and --entry, default the load address)"
        }
    }
}

/// An L1 image of the user's: where its bytes go, where it starts, and what
/// its symbols say.
public struct GuestImage: Sendable {
    public struct Segment: Sendable {
        public let physicalAddress: UInt64
        public let bytes: [UInt8]
        public let memorySize: Int
        public let executable: Bool
    }
    public let segments: [Segment]
    public let entry: UInt64
    public let symbols: [String: UInt64]
    public let isMultiboot: Bool

    /// A Multiboot v1 ELF32 (the boot protocol of existing x86 test kernels).
    public static func multiboot(_ file: [UInt8]) throws -> GuestImage {
        guard !file.isEmpty else { throw ImageError.empty }
        guard file.count >= 52, file[0..<4] == [0x7F, 0x45, 0x4C, 0x46], file[4] == 1, file[5] == 1 else {
            throw ImageError.notELF32
        }
        func u16(_ o: Int) throws -> Int {
            guard o >= 0, o + 2 <= file.count else { throw ImageError.malformed("read past the end at \(o)") }
            return Int(file[o]) | Int(file[o + 1]) << 8
        }
        func u32(_ o: Int) throws -> UInt64 {
            guard o >= 0, o + 4 <= file.count else { throw ImageError.malformed("read past the end at \(o)") }
            return (0..<4).reduce(UInt64(0)) { $0 | UInt64(file[o + $1]) << (8 * UInt64($1)) }
        }
        guard try u16(18) == 3 else { throw ImageError.notELF32 }  // EM_386
        // Multiboot header: 4-byte aligned in the first 8 KiB, magic + flags + checksum == 0 (mod 2^32).
        var found = false
        var o = 0
        while o + 12 <= min(file.count, 8192) {
            if try u32(o) == 0x1BAD_B002, (try u32(o) + u32(o + 4) + u32(o + 8)) & 0xFFFF_FFFF == 0 {
                found = true
                break
            }
            o += 4
        }
        guard found else { throw ImageError.noMultibootHeader }

        let entry = try u32(24)
        let phoff = Int(try u32(28))
        let phentsize = try u16(42)
        let phnum = try u16(44)
        guard phentsize >= 32, phnum > 0, phnum < 64 else { throw ImageError.malformed("program headers") }
        var segments: [Segment] = []
        var mapping: [(vaddr: UInt64, paddr: UInt64, size: UInt64)] = []
        for i in 0..<phnum {
            let p = phoff + i * phentsize
            guard try u32(p) == 1 else { continue }  // PT_LOAD
            let offset = Int(try u32(p + 4))
            let vaddr = try u32(p + 8)
            let paddr = try u32(p + 12)
            let filesz = Int(try u32(p + 16))
            let memsz = Int(try u32(p + 20))
            let flags = try u32(p + 24)
            guard offset >= 0, filesz >= 0, offset + filesz <= file.count, memsz >= filesz else {
                throw ImageError.malformed("segment \(i) extends past the file")
            }
            segments.append(
                Segment(
                    physicalAddress: paddr, bytes: Array(file[offset..<(offset + filesz)]),
                    memorySize: memsz, executable: flags & 1 != 0))
            mapping.append((vaddr, paddr, UInt64(memsz)))
        }
        guard !segments.isEmpty else { throw ImageError.malformed("no loadable segment") }
        // Symbols (.symtab with its string table), translated to physical addresses.
        var symbols: [String: UInt64] = [:]
        let shoff = Int(try u32(32))
        let shentsize = try u16(46)
        let shnum = try u16(48)
        if shoff > 0, shentsize >= 40, shnum < 1024 {
            for i in 0..<shnum {
                let sh = shoff + i * shentsize
                guard try u32(sh + 4) == 2 else { continue }  // SHT_SYMTAB
                let symoff = Int(try u32(sh + 16))
                let symsize = Int(try u32(sh + 20))
                let link = Int(try u32(sh + 24))
                let strsh = shoff + link * shentsize
                let stroff = Int(try u32(strsh + 16))
                let strsize = Int(try u32(strsh + 20))
                guard stroff + strsize <= file.count else { throw ImageError.malformed("string table") }
                for s in stride(from: symoff, to: symoff + symsize - 15, by: 16) {
                    let nameOff = Int(try u32(s))
                    let value = try u32(s + 4)
                    guard nameOff > 0, nameOff < strsize else { continue }
                    var end = stroff + nameOff
                    while end < stroff + strsize, file[end] != 0 { end += 1 }
                    let name = String(decoding: file[(stroff + nameOff)..<end], as: UTF8.self)
                    let phys =
                        mapping.first { value >= $0.vaddr && value < $0.vaddr + $0.size }.map {
                            $0.paddr + (value - $0.vaddr)
                        } ?? value
                    symbols[name] = phys
                }
            }
        }
        let physEntry =
            mapping.first { entry >= $0.vaddr && entry < $0.vaddr + $0.size }.map { $0.paddr + (entry - $0.vaddr) }
            ?? entry
        return GuestImage(segments: segments, entry: physEntry, symbols: symbols, isMultiboot: true)
    }

    /// A flat binary loaded at `loadAddress`, entered at `entry` (default: the load address).
    public static func flat(_ file: [UInt8], loadAddress: UInt64, entry: UInt64?) throws -> GuestImage {
        guard !file.isEmpty else { throw ImageError.empty }
        return GuestImage(
            segments: [Segment(physicalAddress: loadAddress, bytes: file, memorySize: file.count, executable: true)],
            entry: entry ?? loadAddress, symbols: [:], isMultiboot: false)
    }

    /// VMRUN sites: symbols whose name mentions vmrun and that point at 0F 01 D8,
    /// else every 0F 01 D8 in executable segments.
    public func vmrunSites() -> [UInt64] {
        func isVMRUN(_ a: UInt64) -> Bool {
            segments.contains { s in
                a >= s.physicalAddress && a + 3 <= s.physicalAddress + UInt64(s.bytes.count)
                    && Array(s.bytes[Int(a - s.physicalAddress)..<Int(a - s.physicalAddress + 3)]) == [
                        0x0F, 0x01, 0xD8,
                    ]
            }
        }
        let named = symbols.filter { $0.key.lowercased().contains("vmrun") && isVMRUN($0.value) }.map(\.value)
        if !named.isEmpty { return Array(Set(named)).sorted() }
        var found: [UInt64] = []
        for s in segments where s.executable && s.bytes.count >= 3 {
            for i in 0..<(s.bytes.count - 2)
            where s.bytes[i] == 0x0F && s.bytes[i + 1] == 0x01 && s.bytes[i + 2] == 0xD8 {
                found.append(s.physicalAddress + UInt64(i))
            }
        }
        return found
    }
}
