import Testing
@Test func placeholder26482() {}
