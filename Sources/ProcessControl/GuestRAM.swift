import Foundation

/// A guest-physical range backed by RAM in QEMU's address space: GPA
/// `guestPhysicalAddress + k` is at host virtual address `hostAddress + k` in QEMU.
public struct GuestRAMRange: Sendable, Equatable {
    public let guestPhysicalAddress: UInt64
    public let size: UInt64
    public let hostAddress: UInt64
    /// QEMU's RAM block ("pc.ram"), or the memory region's name where no block matched.
    public let blockName: String
    /// Where the range starts inside its block.
    public let blockOffset: UInt64

    public init(guestPhysicalAddress: UInt64, size: UInt64, hostAddress: UInt64, blockName: String, blockOffset: UInt64)
    {
        self.guestPhysicalAddress = guestPhysicalAddress
        self.size = size
        self.hostAddress = hostAddress
        self.blockName = blockName
        self.blockOffset = blockOffset
    }

    /// One past the last guest-physical address.
    public var guestPhysicalEnd: UInt64 { guestPhysicalAddress + size }

    public func contains(_ address: UInt64) -> Bool {
        address >= guestPhysicalAddress && address - guestPhysicalAddress < size
    }

    /// The flat view's RAM ranges placed in QEMU: `hostAddress(range)` gives
    /// the HVA of a range's first byte where the block table has no HVA column.
    static func resolve(
        flat: [FlatRange], blocks: [RAMBlock],
        hostAddress: (FlatRange) throws(ProcessError) -> UInt64
    ) throws(ProcessError) -> [GuestRAMRange] {
        var ranges: [GuestRAMRange] = []
        for range in flat where range.kind == .ram {
            let block = blocks.first { $0.isBlock(of: range.regionName) }
            if let block, range.offsetInRegion + range.size > block.usedLength {
                throw .qmp(
                    "info mtree -f maps 0x\(String(range.size, radix: 16)) bytes of \(range.regionName) at offset "
                        + "0x\(String(range.offsetInRegion, radix: 16)), past the end of RAM block \(block.name) "
                        + "(0x\(String(block.usedLength, radix: 16)) bytes used)")
            }
            let host: UInt64
            if let base = block?.hostAddress {
                host = base + range.offsetInRegion
            } else {
                host = try hostAddress(range)
            }
            ranges.append(
                GuestRAMRange(
                    guestPhysicalAddress: range.start, size: range.size, hostAddress: host,
                    blockName: block?.name ?? range.regionName, blockOffset: range.offsetInRegion))
        }
        return ranges.sorted { $0.guestPhysicalAddress < $1.guestPhysicalAddress }
    }

    /// The GPA below which the fallback maps RAM: every pc and q35 machine
    /// keeps at least 2 GiB of RAM below the 4 GiB hole at GPA == offset;
    /// above it the split depends on the machine type and its options.
    public static let conventionLimit: UInt64 = 0x8000_0000
    /// The legacy hole: VGA memory, option ROMs and the BIOS shadow, not RAM.
    public static let legacyHole: Range<UInt64> = 0xA0000..<0x100000

    /// Guest RAM without QMP, from a RAM block QEMU maps whole at `hostAddress`
    /// (a memfd or file backend seen in /proc/PID/maps).
    ///
    /// The convention relied on: a pc or q35 machine maps RAM below the 4 GiB
    /// hole at GPA == offset in the block, except the legacy hole
    /// 0xA0000–0xFFFFF. Only the first `conventionLimit` bytes are covered:
    /// where RAM above that goes depends on the machine (use QMP for it).
    public static func pcConvention(hostAddress: UInt64, size: UInt64, blockName: String) -> [GuestRAMRange] {
        let end = min(size, conventionLimit)
        var ranges: [GuestRAMRange] = []
        let lowEnd = min(end, legacyHole.lowerBound)
        if lowEnd > 0 {
            ranges.append(
                GuestRAMRange(
                    guestPhysicalAddress: 0, size: lowEnd, hostAddress: hostAddress, blockName: blockName,
                    blockOffset: 0))
        }
        if end > legacyHole.upperBound {
            let start = legacyHole.upperBound
            ranges.append(
                GuestRAMRange(
                    guestPhysicalAddress: start, size: end - start, hostAddress: hostAddress + start,
                    blockName: blockName, blockOffset: start))
        }
        return ranges
    }
}

/// One row of HMP `info ramblock`. QEMU 7.2 prints
/// `Block Name    PSize    Offset    Used    Total`; later versions add `HVA` and `RO` columns.
public struct RAMBlock: Sendable, Equatable {
    public let name: String
    public let pageSize: UInt64
    /// The block's place in QEMU's ram_addr_t space (not a guest address).
    public let offset: UInt64
    public let usedLength: UInt64
    public let maxLength: UInt64
    /// Where QEMU maps the block, when the table has an HVA column (newer QEMUs; 7.2 has none).
    public let hostAddress: UInt64?

    public init(
        name: String, pageSize: UInt64, offset: UInt64, usedLength: UInt64, maxLength: UInt64, hostAddress: UInt64?
    ) {
        self.name = name
        self.pageSize = pageSize
        self.offset = offset
        self.usedLength = usedLength
        self.maxLength = maxLength
        self.hostAddress = hostAddress
    }

    /// Whether this block backs the memory region `regionName`: a device's
    /// block carries its qdev path ("0000:00:02.0/vga.vram" backs "vga.vram").
    func isBlock(of regionName: String) -> Bool {
        name == regionName || name.hasSuffix("/" + regionName)
    }

    /// The rows of `info ramblock`'s output.
    public static func parseTable(_ text: String) throws(ProcessError) -> [RAMBlock] {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.split(separator: " ").map(String.init) }
        guard let header = lines.first, header.starts(with: ["Block", "Name", "PSize", "Offset", "Used", "Total"])
        else {
            throw .qmp("info ramblock: no table header in \"\(text.prefix(80))\"")
        }
        // "Block Name" and "4 KiB" are both two words: header and rows count words alike.
        let hvaColumn = header.firstIndex(of: "HVA")
        var blocks: [RAMBlock] = []
        for row in lines.dropFirst() {
            // name, page size as "4 KiB", offset, used, total[, HVA[, RO]]
            guard row.count >= 6, let pageSize = parseSize(row[1], unit: row[2]),
                let offset = parseHex(row[3]), let used = parseHex(row[4]), let total = parseHex(row[5])
            else {
                throw .qmp("info ramblock: unreadable row \"\(row.joined(separator: " "))\"")
            }
            var host: UInt64?
            if let hvaColumn, hvaColumn < row.count {
                host = parseHex(row[hvaColumn])
            }
            blocks.append(
                RAMBlock(
                    name: row[0], pageSize: pageSize, offset: offset, usedLength: used, maxLength: total,
                    hostAddress: host))
        }
        return blocks
    }

    /// QEMU's size_to_str: "4 KiB", "2 MiB", "1 GiB".
    static func parseSize(_ number: String, unit: String) -> UInt64? {
        guard let value = Double(number) else { return nil }
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        guard let power = units.firstIndex(of: unit) else { return nil }
        return UInt64(value * Double(UInt64(1) << (10 * power)))
    }
}

/// One range of a flat view in HMP `info mtree -f`:
/// `0000000000100000-0000000003ffffff (prio 0, ram): pc.ram @0000000000100000 KVM`.
public struct FlatRange: Sendable, Equatable {
    /// How the range behaves for the guest, as the flat view prints it.
    public enum Kind: Sendable, Equatable {
        case ram
        /// Read-only RAM (the BIOS, option ROMs).
        case rom
        /// ROM device: reads from RAM, writes trapped.
        case romDevice
        /// RAM of a device (VFIO BARs).
        case ramDevice
        /// Emulated MMIO or port I/O.
        case io
        case other(String)

        init(_ name: String) {
            switch name {
            case "ram": self = .ram
            case "rom": self = .rom
            case "romd": self = .romDevice
            case "ramd": self = .ramDevice
            case "i/o": self = .io
            default: self = .other(name)
            }
        }
    }

    public let start: UInt64
    public let size: UInt64
    public let priority: Int
    public let kind: Kind
    public let regionName: String
    /// The `@offset` into the region: for RAM, the offset inside its RAM block.
    public let offsetInRegion: UInt64

    public init(start: UInt64, size: UInt64, priority: Int, kind: Kind, regionName: String, offsetInRegion: UInt64) {
        self.start = start
        self.size = size
        self.priority = priority
        self.kind = kind
        self.regionName = regionName
        self.offsetInRegion = offsetInRegion
    }

    /// The CPU's view of guest-physical memory (the address space QEMU calls "memory").
    public static let systemAddressSpace = "memory"

    /// The ranges of the flat view that address space `addressSpace` uses
    /// (the flat views' numbering and order change between runs; the AS lines name them).
    public static func parseFlatView(_ text: String, addressSpace: String) throws(ProcessError) -> [FlatRange] {
        var inWantedView = false
        var found = false
        var ranges: [FlatRange] = []
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.trimmingPrefix(while: { $0 == " " })
            if line.hasPrefix("FlatView #") {
                if found { break }
                inWantedView = false
            } else if line.hasPrefix("AS \"") {
                if line.hasPrefix("AS \"\(addressSpace)\",") {
                    inWantedView = true
                    found = true
                }
            } else if inWantedView, let range = parseRange(String(line)) {
                ranges.append(range)
            }
        }
        guard found else {
            throw .qmp("info mtree -f: no flat view for address space \"\(addressSpace)\"")
        }
        return ranges
    }

    /// `START-END (prio P, KIND): NAME[ @OFFSET][ KVM]`, or nil for any other line.
    static func parseRange(_ line: String) -> FlatRange? {
        guard let dash = line.firstIndex(of: "-"), let open = line.firstIndex(of: "("),
            let close = line.firstIndex(of: ")"), open < close,
            let start = UInt64(line[..<dash], radix: 16),
            let last = UInt64(line[line.index(after: dash)..<open].trimmingCharacters(in: .whitespaces), radix: 16),
            last >= start
        else { return nil }
        let attributes = line[line.index(after: open)..<close].split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard attributes.count == 2, attributes[0].hasPrefix("prio "), let priority = Int(attributes[0].dropFirst(5))
        else { return nil }
        // "nv-ram" is non-volatile RAM: RAM all the same for reading and writing.
        let kind = Kind(String(attributes[1].trimmingPrefix("nv-")))
        var rest = line[line.index(after: close)...].trimmingPrefix(":").trimmingCharacters(in: .whitespaces)
        for accelerator in [" KVM", " HVF", " WHPX", " NVMM", " HAX"] where rest.hasSuffix(accelerator) {
            rest.removeLast(accelerator.count)
        }
        var name = rest
        var offset: UInt64 = 0
        if let at = rest.range(of: " @", options: .backwards), let value = UInt64(rest[at.upperBound...], radix: 16) {
            name = String(rest[..<at.lowerBound])
            offset = value
        }
        return FlatRange(
            start: start, size: last - start + 1, priority: priority, kind: kind, regionName: name,
            offsetInRegion: offset)
    }
}

/// HMP `gpa2hva ADDR`: "Host virtual address for 0x100000 (pc.ram) is 0x7fed9ff00000".
struct HostAddressAnswer: Equatable {
    let regionName: String
    let hostAddress: UInt64

    static func parse(_ text: String, command: String) throws(ProcessError) -> HostAddressAnswer {
        let line = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard line.hasPrefix("Host virtual address for "),
            let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"), open < close,
            let isRange = line.range(of: " is 0x", options: .backwards),
            let address = UInt64(line[isRange.upperBound...], radix: 16)
        else {
            // "Memory at address 0xa0000 is not RAM", "No memory is mapped at address 0x10000000"
            throw .qmp("\(command): \(line)")
        }
        return HostAddressAnswer(regionName: String(line[line.index(after: open)..<close]), hostAddress: address)
    }
}

func parseHex(_ text: some StringProtocol) -> UInt64? {
    UInt64(text.hasPrefix("0x") ? text.dropFirst(2) : text[...], radix: 16)
}
