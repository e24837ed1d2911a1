extension VMCBField {
    /// What a value of this field means, in words ("PE ET PG", "IOIO: OUT 0x80, 1 byte").
    /// `vmcb` gives context for fields read together (EXITINFO with EXITCODE).
    public func meaning(of value: FieldValue, in vmcb: VMCB? = nil) -> String {
        guard case let .integer(v) = value else {
            if case let .bytes(b) = value, meaning == .bytes, let vmcb {
                let n = Int(vmcb[integer: .insnLen])
                return n > 0 ? "fetched: " + b.prefix(n).map(byteHex).joined(separator: " ") : ""
            }
            return value.isZero ? "" : "non-zero"
        }
        switch meaning {
        case .plain, .address, .bytes: return ""
        case .reserved: return v == 0 ? "" : "reserved, non-zero"
        case .interceptCR, .interceptDR:
            let r = meaning == .interceptCR ? "CR" : "DR"
            let reads = (0..<16).filter { v & (1 << UInt64($0)) != 0 }.map { "\(r)\($0)" }
            let writes = (0..<16).filter { v & (1 << UInt64($0 + 16)) != 0 }.map { "\(r)\($0)" }
            return [
                reads.isEmpty ? nil : "read " + reads.joined(separator: ","),
                writes.isEmpty ? nil : "write " + writes.joined(separator: ","),
            ]
            .compactMap { $0 }.joined(separator: "; ")
        case .interceptExceptions:
            return (0..<32).filter { v & (1 << UInt64($0)) != 0 }.map { Bits.exceptionName($0) }.joined(separator: " ")
        case let .interceptMisc(word):
            return Bits.names(
                v, perBit: word == 3 ? Bits.interceptWord3 : word == 4 ? Bits.interceptWord4 : Bits.interceptWord5)
        case .tlbControl: return Bits.tlbControl[v] ?? "invalid \(v)"
        case .erapControl: return Bits.names(v, Bits.erapCtl)
        case .intControl:
            let tpr = v & 0xF
            let prio = v >> 16 & 0xF
            var parts = ["V_TPR=\(tpr)"]
            if prio != 0 { parts.append("V_INTR_PRIO=\(prio)") }
            let flags = Bits.names(v & ~0xF_000F, Bits.intCtl)
            if !flags.isEmpty { parts.append(flags) }
            return parts.joined(separator: " ")
        case .intVector: return v == 0 ? "" : "vector 0x\(String(v & 0xFF, radix: 16))"
        case .intState: return Bits.names(v, Bits.intState)
        case .exitCode:
            let code = vmcb?.exitCode ?? v
            return SVMExit.name(of: code).map { "SVM_EXIT_" + $0 } ?? "unknown"
        case .exitInfo1, .exitInfo2:
            guard let vmcb, vmcb.exitCode != 0 || vmcb[integer: .exitInfo1] != 0 else { return "" }
            return meaning == .exitInfo1 ? DecodedExit(vmcb: vmcb).summary : ""
        case .eventInjection: return EventInjection(v).description == "none" ? "" : EventInjection(v).description
        case .miscControl: return Bits.names(v, Bits.miscCtl)
        case .miscControl2: return Bits.names(v, Bits.miscCtl2)
        case .cleanBits: return Bits.names(v, Bits.clean)
        case .sevFeatures: return Bits.names(v, Bits.sevFeatures)
        case .cr0: return Bits.names(v, Bits.cr0)
        case .cr4: return Bits.names(v, Bits.cr4)
        case .efer: return Bits.names(v, Bits.efer)
        case .rflags:
            let iopl = v >> 12 & 3
            return Bits.names(v & ~0x3002, Bits.rflags) + (iopl != 0 ? " IOPL=\(iopl)" : "")
        case .cr3: return v & 0xFFF != 0 ? "flags \(hex(v & 0xFFF))" : ""
        case .dr6: return Bits.names(v & 0xE00F, Bits.dr6)
        case .dr7:
            let enabled = (0..<4).filter { v & (3 << UInt64($0 * 2)) != 0 }.map { "DR\($0)" }
            return enabled.isEmpty ? "" : "enabled " + enabled.joined(separator: ",")
        case .segmentSelector:
            return v == 0 ? "" : "index \(v >> 3) \(v & 4 != 0 ? "LDT" : "GDT") RPL \(v & 3)"
        case .segmentAttributes: return v == 0 ? "" : SegmentAttributes(UInt16(truncatingIfNeeded: v)).description
        }
    }
}
