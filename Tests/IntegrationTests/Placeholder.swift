import Testing
@Test func placeholder31947() {}
