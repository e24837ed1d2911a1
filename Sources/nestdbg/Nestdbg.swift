import ArgumentParser

@main
struct Nestdbg: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nestdbg",
        abstract: "A terminal debugger for nested AMD SVM on Linux KVM.",
        version: NestdbgVersion.string,
        subcommands: [
            VersionCommand.self, RunCommand.self, AttachCommand.self, WatchCommand.self, BenchCommand.self,
            MigrateCheckCommand.self, ReplayCommand.self, ExportCommand.self, VMCBCommand.self,
            NestedStateCommand.self, KVMInfoCommand.self, WriteImageCommand.self,
        ])
}

enum NestdbgVersion {
    static let string = "0.1.0"
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print nestdbg's version.")
    func run() { print("nestdbg \(NestdbgVersion.string)") }
}
