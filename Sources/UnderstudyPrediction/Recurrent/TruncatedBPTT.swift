/// Runs a recurrent cell over a stream and back-propagates through the last `window` steps.
///
/// Each `step` stores the input, state and cache in preallocated ring storage. Losses attach
/// gradients to the output `h` of any stored step with `addHiddenGradient`; `backward()` runs
/// back-propagation through time over the stored steps (accumulating into the store's gradients)
/// and starts a new window whose initial state is the current one (detached).
/// Mutable stored properties are `@exclusivity(unchecked)` (dynamic exclusivity checks were a
/// visible share of `PredictionEngine.observe`): the class is not `Sendable`, so one instance is
/// only reached from one thread, and no method calls back into the instance while it holds an
/// `inout` access to one of them; static exclusivity diagnostics still apply.
public final class TruncatedBPTT {
    /// The cell.
    public let cell: any RecurrentCell
    /// The most steps kept for one backward pass.
    public let window: Int
    private let states: FloatBuffer      // (window + 1) × stateSize; slot 0 is the window's initial state
    private let caches: FloatBuffer      // window × cacheSize
    private let stateGradients: FloatBuffer  // window × stateSize, gradients from losses at each step
    private let carry: FloatBuffer
    private let carryNext: FloatBuffer
    /// Steps stored in the current window.
    @exclusivity(unchecked) public private(set) var stored = 0

    /// Creates a runner with zero initial state.
    public init(cell: any RecurrentCell, window: Int) {
        precondition(window >= 1, "window must be at least 1")
        self.cell = cell
        self.window = window
        states = FloatBuffer(count: (window + 1) * cell.stateSize)
        caches = FloatBuffer(count: window * roundUp8(cell.cacheSize))
        stateGradients = FloatBuffer(count: window * cell.stateSize)
        carry = FloatBuffer(count: cell.stateSize)
        carryNext = FloatBuffer(count: cell.stateSize)
    }

    /// The current state (after the latest step); its first `hiddenSize` floats are `h`.
    public var state: UnsafePointer<Float> { UnsafePointer(states.pointer + stored * cell.stateSize) }

    /// Whether the window is full (the next `step` needs a `backward()` or `detach()` first).
    public var isFull: Bool { stored == window }

    /// Resets the state to zero and forgets the window.
    public func reset() {
        states.zero()
        stateGradients.zero()
        stored = 0
    }

    /// Advances one step with `input` (cell.inputSize floats). Drops the window without
    /// back-propagating if it is full.
    public func step(input: UnsafePointer<Float>) {
        if stored == window { detach() }
        let s = cell.stateSize
        cell.forward(
            input: input, state: states.pointer + stored * s, newState: states.pointer + (stored + 1) * s,
            cache: caches.pointer + stored * roundUp8(cell.cacheSize))
        (stateGradients.pointer + stored * s).update(repeating: 0, count: s)
        stored += 1
    }

    /// Adds dLoss/dh for the step `age` steps back from the latest (0 = latest).
    public func addHiddenGradient(_ gradient: UnsafePointer<Float>, age: Int = 0) {
        guard age < stored else { return }
        let slot = stored - 1 - age
        Kernels.axpy(1, gradient, stateGradients.pointer + slot * cell.stateSize, cell.hiddenSize)
    }

    /// Back-propagates through the stored steps, accumulating parameter gradients, then starts
    /// a new window from the current state.
    public func backward() {
        let s = cell.stateSize
        carry.zero()
        var t = stored - 1
        while t >= 0 {
            Kernels.axpy(1, stateGradients.pointer + t * s, carry.pointer, roundUp8(s))
            cell.backward(
                dNewState: carry.pointer, cache: caches.pointer + t * roundUp8(cell.cacheSize),
                dState: carryNext.pointer, dInput: nil)
            carry.pointer.update(from: carryNext.pointer, count: s)
            t -= 1
        }
        detach()
    }

    /// Starts a new window from the current state without back-propagating.
    public func detach() {
        let s = cell.stateSize
        states.pointer.update(from: states.pointer + stored * s, count: s)
        stored = 0
    }
}
