import Testing
@Test func placeholder6891() {}
