import ArgumentParser
import DebuggerEngine
import KVMControl

/// `nestdbg kvm-info`: what this KVM offers a nested debugger.
struct KVMInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvm-info",
        abstract:
            "Report the KVM capabilities nestdbg relies on (nested state, SREGS2, guest debug, SVM CPUID) and the stop sources this host supports."
    )

    @Option(help: "The KVM device.") var device = "/dev/kvm"

    func run() throws {
        do {
            let kvm = try KVM(path: device)
            print("device: \(device) (KVM API 12)")
            for cap in Capability.reported {
                print("\(cap.name): \(try kvm.checkExtension(cap))")
            }
            let cpuid = try kvm.supportedCPUID()
            print("supported CPUID SVM (0x80000001 ECX[2]): \(CPUIDEntry.hasSVM(cpuid) ? "yes" : "no")")
            for kind in StopSourceKind.allCases {
                switch kind.availability {
                case let .available(what): print("stop source \(kind.rawValue): available: \(what)")
                case let .unavailable(why): print("stop source \(kind.rawValue): unavailable: \(why)")
                }
            }
        } catch let error as KVMError {
            throw fail(error.description, status: 1)
        }
    }
}
