/// A recurrent cell with an analytic backward pass, working on preallocated raw buffers.
///
/// The state is `stateSize` floats whose first `hiddenSize` are the output `h` (an LSTM keeps
/// its cell state `c` after them). Sizes are multiples of 8. Parameters live in a shared
/// `ParameterStore`; `backward` accumulates into its gradients.
public protocol RecurrentCell: AnyObject {
    /// Input length (a multiple of 8).
    var inputSize: Int { get }
    /// Output length `h` (a multiple of 8).
    var hiddenSize: Int { get }
    /// State length (GRU: hidden; LSTM: 2 × hidden).
    var stateSize: Int { get }
    /// Floats a forward step stores for its backward step.
    var cacheSize: Int { get }

    /// One forward step: `newState = cell(input, state)`, filling `cache` for `backward`.
    func forward(
        input: UnsafePointer<Float>, state: UnsafePointer<Float>,
        newState: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>)

    /// One backward step: given dLoss/dNewState, accumulates parameter gradients, writes
    /// dLoss/dState into `dState` (overwriting) and, when given, dLoss/dInput into `dInput`.
    func backward(
        dNewState: UnsafePointer<Float>, cache: UnsafePointer<Float>,
        dState: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>?)
}

/// The kind of recurrent cell an engine uses.
public enum RecurrentCellKind: String, Sendable, Codable, CaseIterable {
    /// Gated recurrent unit (Cho et al.), three gates.
    case gru
    /// Long short-term memory, four gates.
    case lstm
}

/// Creates a cell of the given kind with parameters reserved in `store` and initialised from `rng`.
public func makeRecurrentCell(
    _ kind: RecurrentCellKind, inputSize: Int, hiddenSize: Int, store: ParameterStore, rng: inout SplitMix64
) -> any RecurrentCell {
    switch kind {
    case .gru: return GRUCell(inputSize: inputSize, hiddenSize: hiddenSize, store: store, rng: &rng)
    case .lstm: return LSTMCell(inputSize: inputSize, hiddenSize: hiddenSize, store: store, rng: &rng)
    }
}

/// Floats a store needs for a cell of this kind and size.
public func recurrentParameterCount(_ kind: RecurrentCellKind, inputSize: Int, hiddenSize: Int) -> Int {
    let gates = kind == .gru ? 3 : 4
    let i = roundUp8(inputSize), h = roundUp8(hiddenSize)
    return gates * h * (i + h) + roundUp8(gates * h)
}
