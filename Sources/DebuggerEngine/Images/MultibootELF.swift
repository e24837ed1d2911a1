/// An ELF32 (EM_386) executable as Multiboot v1 loaders take it: PT_LOAD
/// segments at their physical addresses (virtual = physical), the Multiboot
/// header (flags 0) in the first 8 KiB, and a symbol table.
/// `GuestImage.multiboot` reads what this writes.
public struct MultibootELF: Sendable {
    public struct Segment: Sendable {
        public var address: UInt32
        public var bytes: [UInt8]
        public var isExecutable: Bool

        public init(address: UInt32, bytes: [UInt8], isExecutable: Bool = true) {
            self.address = address
            self.bytes = bytes
            self.isExecutable = isExecutable
        }
    }

    public struct Symbol: Sendable {
        public var name: String
        public var address: UInt32

        public init(name: String, address: UInt32) {
            self.name = name
            self.address = address
        }
    }

    public var segments: [Segment]
    public var symbols: [Symbol]
    public var entry: UInt32
    /// Without it the file is a plain ELF, which a Multiboot loader refuses.
    public var hasMultibootHeader: Bool

    public static let multibootMagic: UInt32 = 0x1BAD_B002

    public init(segments: [Segment], symbols: [Symbol] = [], entry: UInt32, hasMultibootHeader: Bool = true) {
        self.segments = segments
        self.symbols = symbols
        self.entry = entry
        self.hasMultibootHeader = hasMultibootHeader
    }

    /// The file: ELF header, program headers, the Multiboot header, each
    /// segment's bytes on a page of its own, then the symbol and string
    /// tables and the section headers (one PROGBITS section per segment).
    public func encoded() -> [UInt8] {
        let elfHeaderSize = 52
        let programHeaderSize = 32
        let sectionHeaderSize = 40
        let symbolSize = 16
        let pageSize = 0x1000
        let sectionAbsolute: UInt16 = 0xFFF1  // SHN_ABS: a symbol outside every segment
        let multibootOffset = (elfHeaderSize + programHeaderSize * segments.count + 3) & ~3
        var file = [UInt8](repeating: 0, count: multibootOffset + (hasMultibootHeader ? 12 : 0))
        if hasMultibootHeader {
            let header = le32(Self.multibootMagic) + le32(0) + le32(0 &- Self.multibootMagic)
            file.replaceSubrange(multibootOffset..<(multibootOffset + 12), with: header)
        }

        var programHeaders: [UInt8] = []
        var segmentOffsets: [Int] = []
        for segment in segments {
            file += [UInt8](repeating: 0, count: (pageSize - file.count % pageSize) % pageSize)
            segmentOffsets.append(file.count)
            let size = UInt32(segment.bytes.count)
            programHeaders +=
                le32(1) + le32(UInt32(file.count)) + le32(segment.address) + le32(segment.address)
                // PT_LOAD, R(W|X)
                + le32(size) + le32(size) + le32(segment.isExecutable ? 5 : 6) + le32(UInt32(pageSize))
            file += segment.bytes
        }

        // Section 0 is null, 1...n the segments, then .symtab, .strtab, .shstrtab.
        let symtabIndex = segments.count + 1
        var strtab: [UInt8] = [0]
        var symtab = [UInt8](repeating: 0, count: symbolSize)  // the null symbol
        for symbol in symbols {
            let inside = segments.firstIndex {
                symbol.address >= $0.address && UInt64(symbol.address) < UInt64($0.address) + UInt64($0.bytes.count)
            }
            let section = inside.map { UInt16($0 + 1) } ?? sectionAbsolute
            // GLOBAL NOTYPE
            symtab += le32(UInt32(strtab.count)) + le32(symbol.address) + le32(0) + [0x10, 0] + le16(section)
            strtab += Array(symbol.name.utf8) + [0]
        }
        var shstrtab: [UInt8] = [0]
        func name(_ text: String) -> UInt32 {
            defer { shstrtab += Array(text.utf8) + [0] }
            return UInt32(shstrtab.count)
        }
        func sectionHeader(
            name: UInt32, type: UInt32, flags: UInt32 = 0, address: UInt32 = 0, offset: Int, size: Int,
            link: Int = 0, info: UInt32 = 0, alignment: UInt32 = 1, entrySize: UInt32 = 0
        ) -> [UInt8] {
            le32(name) + le32(type) + le32(flags) + le32(address) + le32(UInt32(offset)) + le32(UInt32(size))
                + le32(UInt32(link)) + le32(info) + le32(alignment) + le32(entrySize)
        }
        var sectionHeaders = [UInt8](repeating: 0, count: sectionHeaderSize)
        for (i, segment) in segments.enumerated() {
            // PROGBITS, ALLOC|EXEC or ALLOC|WRITE
            sectionHeaders += sectionHeader(
                name: name(".load\(i)"), type: 1, flags: segment.isExecutable ? 6 : 3,
                address: segment.address, offset: segmentOffsets[i], size: segment.bytes.count,
                alignment: UInt32(pageSize))
        }
        sectionHeaders += sectionHeader(
            name: name(".symtab"), type: 2, offset: file.count, size: symtab.count,
            link: symtabIndex + 1, info: 1, alignment: 4, entrySize: UInt32(symbolSize))
        file += symtab
        sectionHeaders += sectionHeader(name: name(".strtab"), type: 3, offset: file.count, size: strtab.count)
        file += strtab
        let shstrtabName = name(".shstrtab")
        sectionHeaders += sectionHeader(name: shstrtabName, type: 3, offset: file.count, size: shstrtab.count)
        file += shstrtab
        file += [UInt8](repeating: 0, count: (4 - file.count % 4) % 4)
        let sectionHeaderOffset = file.count
        file += sectionHeaders

        let sectionCount = symtabIndex + 3
        let elfHeader: [UInt8] =
            [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0] + [UInt8](repeating: 0, count: 8)  // ELFCLASS32, LSB
            + le16(2) + le16(3) + le32(1) + le32(entry)  // ET_EXEC, EM_386
            + le32(UInt32(elfHeaderSize)) + le32(UInt32(sectionHeaderOffset)) + le32(0)
            + le16(UInt16(elfHeaderSize)) + le16(UInt16(programHeaderSize)) + le16(UInt16(segments.count))
            + le16(UInt16(sectionHeaderSize)) + le16(UInt16(sectionCount)) + le16(UInt16(sectionCount - 1))
        file.replaceSubrange(0..<elfHeaderSize, with: elfHeader)
        file.replaceSubrange(elfHeaderSize..<(elfHeaderSize + programHeaders.count), with: programHeaders)
        return file
    }

    private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
    private func le16(_ v: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
}
