import SVMModel

/// A recording driven like a live vCPU: the front end and batch mode send
/// the same commands, and the stops come back as events. Nothing runs: a
/// cursor moves over the recorded stops, forwards as the live commands did
/// (n, e, step to the next stop, continue to a breakpoint) and backwards
/// (the previous nested exit, VMRUN or stop, reverse-continue), or jumps
/// (goto, search). The history the front end shows is the recording up to
/// the cursor. Answers are posted at once; one thread drives it.
public final class ReplaySession: DebugSession {
    public let targetName: String
    public var capabilities: SessionCapabilities { .replaysRecording }
    public var stopSourceKind: StopSourceKind? { nil }
    /// Every recorded stop, in order.
    public let stops: [Stop]
    /// Where the replay is (an index into `stops`).
    public private(set) var cursor = 0
    /// For each stop, the last one before it that had vmcb12 (watch baselines).
    private let previousWithVMCB: [Int?]
    private var breakpoints: [Breakpoint] = []
    private var events: [SessionEvent] = []
    private var ended = false

    /// Starts at the recording's first stop (posted, as a live session posts its start).
    public init(stops: [Stop], name: String) throws(CommandRefusal) {
        guard !stops.isEmpty else { throw CommandRefusal(description: "the recording holds no stop") }
        self.stops = stops
        targetName = name
        var last: Int?
        previousWithVMCB = stops.indices.map { i in
            defer { if stops[i].vmcb12 != nil { last = i } }
            return last
        }
        post(0)
    }

    public var state: SessionState { ended ? .ended : .stopped }
    public var vcpuThreadID: Int32 { 0 }
    public var isAttached: Bool { false }
    public var atEnd: Bool { cursor == stops.count - 1 }

    public var stoppedDescription: String {
        "replay #\(stops[cursor].index), \(cursor + 1) of \(stops.count)"
    }

    public func requestSample() {}

    public func takeEvents(waitingUpTo timeout: Duration) -> [SessionEvent] {
        defer { events.removeAll() }
        return events
    }

    @discardableResult
    public func shutdown(timeout: Duration) -> Bool {
        ended = true
        return true
    }

    public func send(_ command: EngineCommand) throws(CommandRefusal) {
        guard !ended else { throw CommandRefusal(description: "the replay has ended") }
        switch command {
        case .nextStop: try move(forward: true, "the next stop") { _ in true }
        case .next: try move(forward: true, "the next stop that is not a VMRUN") { [stops] in stops[$0].kind != .vmrun }
        case .nextVMRUN: try move(forward: true, "the next VMRUN") { [stops] in stops[$0].kind != .nestedExit }
        case .continueRunning:
            try move(forward: true, "a breakpoint") { [self] in
                hit($0) != nil || stops[$0].endsRun || stops[$0].kind == .paused
            }
        case .previousStop: try move(forward: false, "the previous stop") { _ in true }
        case .previous:
            try move(forward: false, "a previous nested #VMEXIT") { [stops] in stops[$0].kind == .nestedExit }
        case .previousVMRUN: try move(forward: false, "a previous VMRUN") { [stops] in stops[$0].kind == .vmrun }
        case .reverseContinue:
            guard !breakpoints.isEmpty else {
                throw CommandRefusal(description: "reverse-continue needs a breakpoint (b, break …, watch FIELD)")
            }
            try move(forward: false, "a breakpoint") { [self] in hit($0) != nil }
        case let .goto(number):
            guard let i = stops.firstIndex(where: { $0.index == number }) else {
                throw CommandRefusal(
                    description:
                        "goto \(number): the recording has stops #\(stops[0].index) to #\(stops[stops.count - 1].index)"
                )
            }
            cursor = i
            post(i)
        case let .search(text):
            let query = StopQuery(text)
            let order = Array(cursor + 1..<stops.count) + Array(0...cursor)
            guard let i = order.first(where: { query.matches(stops[$0], previousVMCB: previousVMCB(before: $0)) })
            else {
                throw CommandRefusal(description: "search \(query): no stop in the recording matches")
            }
            let wrapped = i <= cursor
            cursor = i
            post(i)
            events.append(
                .notice(
                    "search \(query): stop #\(stops[i].index)\(wrapped ? " (wrapped to the start)" : ""): \(stops[i].reason)"
                ))
        case let .addBreakpoint(breakpoint):
            breakpoints.append(breakpoint)
            events.append(.breakpoints(breakpoints))
        case let .deleteBreakpoints(index):
            if let index {
                if breakpoints.indices.contains(index) { breakpoints.remove(at: index) }
            } else {
                breakpoints.removeAll()
            }
            events.append(.breakpoints(breakpoints))
        case .stepInstruction:
            throw CommandRefusal(
                description: "a recording holds stops, not instructions: S goes back one stop, n/N, e/E, c/C move")
        case .watch, .stopWatch, .pause, .captureState, .record:
            throw CommandRefusal(description: "a recording does not run: nothing to watch, pause, save or record")
        }
    }

    /// Moves the cursor to the first stop in that direction `wanted` accepts;
    /// at the recording's edge, says so and stays.
    private func move(forward: Bool, _ what: String, where wanted: (Int) -> Bool) throws(CommandRefusal) {
        let range = forward ? Array(cursor + 1..<stops.count) : Array((0..<cursor).reversed())
        guard let i = range.first(where: wanted) else {
            let edge = forward ? "ends at stop #\(stops[stops.count - 1].index)" : "starts at stop #\(stops[0].index)"
            throw CommandRefusal(
                description:
                    "no \(what) \(forward ? "after" : "before") stop #\(stops[cursor].index): the recording \(edge)")
        }
        cursor = i
        post(i)
    }

    /// The first breakpoint the stop at `i` matches (watches against the last stop before it with vmcb12).
    private func hit(_ i: Int) -> Breakpoint? {
        let previous = previousVMCB(before: i)
        return breakpoints.first { $0.matches(stops[i], previousVMCB: previous) }
    }

    private func previousVMCB(before i: Int) -> VMCB? { previousWithVMCB[i].flatMap { stops[$0].vmcb12 } }

    private func post(_ i: Int) {
        var shown = stops[i]
        shown.hit = hit(i)  // this replay's breakpoints, not the live run's
        events.append(.stopped(shown, history: stops[...i]))
    }
}
