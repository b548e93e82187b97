//! The breaker's state word: state, half-open counters and epoch packed into one `u64`, so that a
//! probe's admission and its result are each one compare-and-swap checked against the epoch.

use serde::Serialize;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls pass; failures are counted.
    Closed,
    /// A limited number of probe calls pass; their results decide whether the circuit closes.
    HalfOpen,
    /// Calls are rejected until the open period ends.
    Open,
}

impl CircuitState {
    /// Returns the value of the `circuit_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    /// Returns the snake_case name used in metrics labels and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

impl std::fmt::Display for CircuitState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATE_MASK: u64 = 0b11;
const INFLIGHT_SHIFT: u32 = 2;
const SUCCESSES_SHIFT: u32 = 17;
const COUNT_MASK: u64 = 0x7fff;
const EPOCH_SHIFT: u32 = 32;

/// Bits 0-1 hold the state, bits 2-16 the probes in flight, bits 17-31 the successful probes and
/// bits 32-63 the epoch, which grows by one at every transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    pub(crate) fn new(state: CircuitState, epoch: u32) -> Self {
        let bits = match state {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        };
        Word(u64::from(epoch) << EPOCH_SHIFT | bits)
    }

    pub(crate) fn state(self) -> CircuitState {
        match self.0 & STATE_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::HalfOpen,
            _ => CircuitState::Open,
        }
    }

    pub(crate) fn epoch(self) -> u32 {
        (self.0 >> EPOCH_SHIFT) as u32
    }

    pub(crate) fn in_flight(self) -> u32 {
        ((self.0 >> INFLIGHT_SHIFT) & COUNT_MASK) as u32
    }

    pub(crate) fn successes(self) -> u32 {
        ((self.0 >> SUCCESSES_SHIFT) & COUNT_MASK) as u32
    }

    /// Returns the word with one more probe in flight. The caller checks the limit first, and the
    /// limit is at most `COUNT_MASK`, so the field never overflows into the next one.
    pub(crate) fn with_probe_admitted(self) -> Self {
        Word(self.0 + (1 << INFLIGHT_SHIFT))
    }

    /// Returns the word with one probe fewer in flight and, if it succeeded, one more success.
    /// Successes saturate at the field's maximum.
    pub(crate) fn with_probe_finished(self, succeeded: bool) -> Self {
        debug_assert!(
            self.in_flight() > 0,
            "a probe finished that was never admitted"
        );
        let mut bits = self.0 - (1 << INFLIGHT_SHIFT);
        if succeeded && self.successes() < COUNT_MASK as u32 {
            bits += 1 << SUCCESSES_SHIFT;
        }
        Word(bits)
    }

    /// Returns the word of the next epoch in `state`, with no successful probes. The probes in
    /// flight carry over: a probe admitted in an earlier half-open period holds its slot until it
    /// ends, so a reopened circuit never runs more than the limit of probes at once.
    pub(crate) fn next(self, state: CircuitState) -> Self {
        let in_flight = self.0 & (COUNT_MASK << INFLIGHT_SHIFT);
        Word(Word::new(state, self.epoch().wrapping_add(1)).0 | in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_do_not_overlap() {
        let mut word = Word::new(CircuitState::HalfOpen, u32::MAX);
        for _ in 0..COUNT_MASK {
            word = word.with_probe_admitted();
        }
        assert_eq!(word.in_flight(), COUNT_MASK as u32);
        for _ in 0..COUNT_MASK {
            word = word.with_probe_finished(true);
        }
        assert_eq!(word.in_flight(), 0);
        assert_eq!(word.successes(), COUNT_MASK as u32);
        assert_eq!(word.state(), CircuitState::HalfOpen);
        assert_eq!(word.epoch(), u32::MAX);
        assert_eq!(word.next(CircuitState::Closed).epoch(), 0);
    }
}
