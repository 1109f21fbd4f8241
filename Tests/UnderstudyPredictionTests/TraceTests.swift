import Foundation
import Testing
@testable import UnderstudyPrediction

@Suite("Trace CSV")
struct TraceTests {
    @Test("a good file with a header parses; size -1 and decimal timestamps are accepted")
    func goodFile() throws {
        let text = "timestamp,op,key,size\n1,get,a,10\n2,SET,b,-1\n\n3.5,write,c,0\r\n4,read,\"x,y\",7\n"
        let (records, skipped) = try TraceCSV.parse(text)
        #expect(skipped == 0)
        #expect(records.count == 4)
        #expect(records[0] == TraceRecord(timeMillis: 1, op: "get", key: "a", size: 10, line: 2))
        #expect(records[1].size == -1)
        #expect(records[1].isWrite)
        #expect(!records[0].isWrite)
        #expect(records[2].timeMillis == 3 && records[2].isWrite && records[2].line == 5)
        #expect(records[3].key == "\"x,y\"")
    }

    @Test("a first line that is data is kept")
    func noHeader() throws {
        let (records, _) = try TraceCSV.parse("0,get,a,1\n1,get,b,1\n")
        #expect(records.map(\.key) == ["a", "b"])
    }

    @Test("a malformed line is an error naming its line number", arguments: [
        ("index,op,key,size\n1,get,a,1\n2,get\n", 3),
        ("index,op,key,size\n1,get,a,1\nx,get,b,1\n", 3),
        ("index,op,key,size\n1,get,a,big\n", 2),
        ("index,op,key,size\n1,get,,4\n", 2),
    ])
    func malformed(_ text: String, _ line: Int) {
        #expect(throws: TraceError.self) { try TraceCSV.parse(text) }
        do {
            _ = try TraceCSV.parse(text, path: "t.csv")
        } catch let error as TraceError {
            #expect(error.code == .malformedLine)
            #expect(error.line == line)
            #expect(error.description.contains("line \(line)"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("skip-malformed skips and counts")
    func skipMalformed() throws {
        let (records, skipped) = try TraceCSV.parse("i,op,key,size\n1,get,a,1\nbad\n2,get,b,x\n3,get,c,1\n", skipMalformed: true)
        #expect(records.map(\.key) == ["a", "c"])
        #expect(skipped == 2)
    }

    @Test("a missing file and an empty trace are clear errors")
    func missingAndEmpty() {
        #expect(throws: TraceError(code: .unreadable, path: "/nonexistent/x.csv", line: nil, reason: "no such file")) {
            try TraceCSV.read(path: "/nonexistent/x.csv")
        }
        #expect(throws: TraceError.self) { try TraceCSV.parse("index,op,key,size\n") }
    }

    @Test("replaying a file reports every predictor and encodes the documented JSON keys")
    func replayFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("prediction-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("trace.csv")
        var text = "index,op,key,size\n"
        for (i, e) in SyntheticWorkload.loops.generate(count: 3000).enumerated() {
            text += "\(i),\(e.isWrite ? "set" : "get"),\(e.key),-1\n"
        }
        try text.write(to: url, atomically: true, encoding: .utf8)
        let result = try TraceReplay.run(path: url.path, hidden: 16, seed: 3)
        #expect(result.requests == 3000)
        #expect(result.predictors.map(\.name) == ["engine", "reranker", "last", "popularity", "markov1", "markov2", "recency"])
        #expect(result.seen > 0.9 && result.candidates > 0.8)
        let engine = try #require(result.predictors.first)
        let best = result.predictors.dropFirst(2).map(\.top1).max()!
        #expect(engine.top1 >= best - 0.005)
        #expect(engine.top1SecondHalf > 0.7)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(result)) as? [String: Any]
        #expect(Set(json?.keys.map { $0 } ?? []) == ["requests", "seen", "candidates", "us_per_observation", "predictors"])
        let first = (json?["predictors"] as? [[String: Any]])?.first
        #expect(Set(first?.keys.map { $0 } ?? []) == ["name", "top1", "top5", "top1_second_half", "top5_second_half"])
    }
}
