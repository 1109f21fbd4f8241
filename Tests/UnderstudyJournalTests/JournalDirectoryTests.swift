import Foundation
import Synchronization
import Testing
import UnderstudyJournal

@Suite("Journal directory errors and locking")
struct JournalDirectoryTests {
    @Test("a missing directory is reported as missing")
    func missingDirectory() async throws {
        try await withTemporaryDirectory { directory in
            let path = directory.file("does-not-exist")
            let error = try #require(journalError {
                _ = try Journal.open(directory: path, configuration: JournalConfiguration(), logger: quietLogger)
            })
            #expect(error.code == .directoryMissing)
            #expect(error.file == path)
            #expect(error.description.contains(path))
            #expect(!FileManager.default.fileExists(atPath: path), "open must not create the directory")
        }
    }

    @Test("a path through a regular file is not a directory")
    func parentIsAFile() async throws {
        try await withTemporaryDirectory { directory in
            let file = directory.file("plain-file")
            try writeFileBytes(file, [1, 2, 3])
            for path in [file, file + "/journal"] {
                let error = try #require(journalError {
                    _ = try Journal.open(directory: path, configuration: JournalConfiguration(), logger: quietLogger)
                })
                #expect(error.code == .notADirectory, "\(path)")
                #expect(error.file == path)
            }
        }
    }

    @Test("an unwritable directory is reported as not writable")
    func unwritableDirectory() async throws {
        try await withTemporaryDirectory { directory in
            let target = directory.file("read-only")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: false)
            var mounted = false
            if geteuid() == 0 {
                // Root ignores permission bits: use a read-only tmpfs where mounting is allowed.
                mounted = mount("tmpfs", target, "tmpfs", UInt(MS_RDONLY), "size=64k") == 0
                guard mounted else {
                    try Test.cancel("running as root and cannot mount a read-only tmpfs to make a directory unwritable")
                }
            } else {
                chmod(target, 0o555)
            }
            defer {
                if mounted { umount2(target, Int32(MNT_DETACH)) } else { chmod(target, 0o755) }
            }
            let error = try #require(journalError {
                _ = try Journal.open(directory: target, configuration: JournalConfiguration(), logger: quietLogger)
            })
            #expect(error.code == .directoryNotWritable)
            #expect(error.file == target)
        }
    }

    @Test("a second open of the same directory in this process fails with locked, naming our pid")
    func lockedInProcess() async throws {
        try await withTemporaryDirectory { directory in
            let first = try openJournal(directory)
            try appendRecords(first, 1...3)
            let error = try #require(journalError { _ = try openJournal(directory) })
            #expect(error.code == .locked)
            #expect(error.pid == getpid())
            #expect(error.message.contains("process \(getpid())"))
            try first.close()
            let second = try openJournal(directory)
            defer { try? second.close() }
            #expect(second.lastSequence == 3)
        }
    }

    @Test("closing and reopening while this process spawns children never finds the directory still locked")
    func reopenWhileSpawning() async throws {
        // A child forked while a journal is open shares the lock file's description until it execs. The lock
        // must belong to this process, not to that description, or a reopen right after close can fail.
        try await withTemporaryDirectory { directory in
            let spawning = SpawnFlag()
            let spawner = Thread {
                var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
                defer { free(argv[0]) }
                while spawning.running.load(ordering: .relaxed) {
                    var pid: pid_t = 0
                    if posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ) == 0 {
                        var status: Int32 = 0
                        waitpid(pid, &status, 0)
                    }
                }
            }
            spawner.start()
            defer { spawning.running.store(false, ordering: .relaxed) }
            for round in 1...300 {
                let journal: Journal
                do {
                    journal = try openJournal(directory)
                } catch {
                    Issue.record("round \(round): \(error)")
                    return
                }
                try journal.append(testRecord(UInt64(round)))
                try journal.close()
            }
            let journal = try openJournal(directory)
            #expect(journal.lastSequence == 300)
            try journal.close()
        }
    }

    @Test("a directory held by another process fails with locked, naming that process")
    func lockedAcrossProcesses() async throws {
        let writer = try #require(crashWriterPath(), "journal-crash-writer must be built beside the tests")
        try await withTemporaryDirectory { directory in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: writer)
            process.arguments = [directory.path, "20"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            defer {
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
            }
            // Wait for its "ready" line: it has the lock.
            var text = ""
            while !text.contains("ready") {
                let data = output.fileHandleForReading.availableData
                guard !data.isEmpty else { break }
                text += String(decoding: data, as: UTF8.self)
            }
            #expect(text.contains("ready"))
            let error = try #require(journalError { _ = try openJournal(directory) })
            #expect(error.code == .locked)
            #expect(error.pid == process.processIdentifier)

            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            let journal = try openJournal(directory)  // the kernel released the dead process's lock
            try journal.close()
        }
    }
}

private final class SpawnFlag: Sendable {
    let running = Atomic<Bool>(true)
}
