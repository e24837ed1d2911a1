import ProcessControl
import Testing

@Suite("process errors")
struct ProcessErrorTests {
    @Test("a failed system call names the call and the errno")
    func systemError() {
        let error = ProcessError.system(call: "ptrace(PTRACE_SEIZE, 12)", errno: 1)
        #expect(error.description == "ptrace(PTRACE_SEIZE, 12) failed: Operation not permitted (errno 1)")
    }
}
