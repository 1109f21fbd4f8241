import Testing
@Test func placeholder11400() {}
