import SVMModel

/// Tab completion on the command line: exit names after `break exit`, VMCB
/// fields after `watch`, command names first.
public enum Completion {
    public static let commands = [
        "step", "next", "vmrun", "continue", "pause", "watch", "break", "delete", "goto", "theme", "migrate", "help",
        "quit",
    ]

    /// The line with its last word completed as far as it is unambiguous, and the candidates.
    public static func complete(_ line: String) -> (line: String, candidates: [String]) {
        let words = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard let last = words.last else { return (line, []) }
        let pool: [String]
        if words.count >= 3, words[0] == "break", words[1] == "exit" {
            pool = SVMExit.allNamed.map { $0.name.lowercased() }
        } else if words.count == 2, words[0] == "watch" {
            pool = VMCBLayout.fields.filter { !$0.isReserved }.map(\.name)
        } else if words.count == 1 {
            pool = commands
        } else {
            return (line, [])
        }
        let matches = pool.filter { $0.hasPrefix(last.lowercased()) || $0.hasPrefix(last) }
        guard var common = matches.first else { return (line, []) }
        for m in matches.dropFirst() { while !m.hasPrefix(common) { common.removeLast() } }
        return ((words.dropLast() + [matches.count == 1 ? common + " " : common]).joined(separator: " "), matches)
    }
}
