import Testing
@Test func placeholder6447() {}
