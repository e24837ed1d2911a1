/// Where a QEMU command line puts a QMP monitor.
public enum QMPSocketSource: Sendable, Equatable {
    /// `-qmp unix:PATH,…`, or `-chardev socket,id=X,path=PATH,…` with `-mon chardev=X,mode=control`.
    /// PATH is as written: relative to QEMU's working directory when not absolute.
    case path(String)
    /// `-chardev socket,id=X,fd=N,…` (libvirt passes its listening socket): QEMU's descriptor N.
    case inheritedDescriptor(Int32)
}

/// The parts of QEMU's command line nestdbg reads.
public enum QEMUCommandLine {
    /// The QMP monitors on a Unix socket, in command-line order. `-qmp-pretty`
    /// is left out (its answers span lines), so are TCP and stdio monitors.
    public static func qmpSockets(in arguments: [String]) -> [QMPSocketSource] {
        var sources: [QMPSocketSource] = []
        var chardevs: [Chardev] = []
        var controlMonitors: [String] = []
        var index = 0
        while index + 1 < arguments.count {
            // QEMU takes -option and --option alike.
            let option = arguments[index].hasPrefix("--") ? String(arguments[index].dropFirst()) : arguments[index]
            let value = arguments[index + 1]
            switch option {
            case "-qmp":
                if value.hasPrefix("unix:"), let path = parts(String(value.dropFirst(5))).first, !path.isEmpty {
                    sources.append(.path(path))
                }
            case "-chardev":
                chardevs.append(Chardev(options(value)))
            case "-mon":
                let parsed = options(value)
                if parsed.contains(Option(key: "mode", value: "control")),
                    let chardev = parsed.first(where: { $0.key == "chardev" })?.value
                {
                    controlMonitors.append(chardev)
                }
            default:
                index += 1
                continue
            }
            index += 2
        }
        for monitor in controlMonitors {
            guard let chardev = chardevs.first(where: { $0.id == monitor }), chardev.backend == "socket" else {
                continue
            }
            if let path = chardev.path {
                sources.append(.path(path))
            } else if let fd = chardev.descriptor {
                sources.append(.inheritedDescriptor(fd))
            }
        }
        return sources
    }

    /// One `key=value` of a QemuOpts string; a bare word has an empty key.
    struct Option: Equatable {
        let key: String
        let value: String
    }

    /// QemuOpts syntax: `key=value` parts.
    static func options(_ text: String) -> [Option] {
        parts(text).map { part in
            guard let equals = part.firstIndex(of: "=") else { return Option(key: "", value: part) }
            return Option(key: String(part[..<equals]), value: String(part[part.index(after: equals)...]))
        }
    }

    /// QemuOpts syntax: comma-separated, ",," is a literal comma.
    static func parts(_ text: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var characters = text[...]
        while let character = characters.popFirst() {
            if character == "," {
                if characters.first == "," {
                    characters.removeFirst()
                    current.append(",")
                } else {
                    parts.append(current)
                    current = ""
                }
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    private struct Chardev {
        let backend: String?
        let id: String?
        let path: String?
        let descriptor: Int32?

        init(_ options: [Option]) {
            // The backend is the first bare word ("socket,id=…") or backend=….
            backend =
                options.first.flatMap { $0.key.isEmpty ? $0.value : nil }
                ?? options.first { $0.key == "backend" }?.value
            id = options.first { $0.key == "id" }?.value
            path = options.first { $0.key == "path" }?.value
            descriptor = options.first { $0.key == "fd" }.flatMap { Int32($0.value) }
        }
    }
}
