//! A count-based sliding window over the last N calls, updated with atomics only.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

const EMPTY: u8 = 0;
const SUCCESS: u8 = 1;
const FAILURE: u8 = 2;

/// The outcomes of the last `len` calls in a ring of slots.
///
/// Each record takes the next slot and swaps its outcome in; the value swapped out is the call that
/// left the window, so the totals are adjusted by exactly what entered and what left. Under
/// concurrent records the totals may lag by the records in flight; once they end, the totals equal a
/// recount of the slots.
#[derive(Debug)]
pub(crate) struct SlidingWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    calls: AtomicI64,
    failures: AtomicI64,
}

impl SlidingWindow {
    pub(crate) fn new(len: u32) -> Self {
        SlidingWindow {
            slots: (0..len).map(|_| AtomicU8::new(EMPTY)).collect(),
            next: AtomicU64::new(0),
            calls: AtomicI64::new(0),
            failures: AtomicI64::new(0),
        }
    }

    /// Records one call and returns the totals `(calls, failures)` after it.
    pub(crate) fn record(&self, failed: bool) -> (u64, u64) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64;
        let entering = if failed { FAILURE } else { SUCCESS };
        let leaving = self.slots[index as usize].swap(entering, Ordering::AcqRel);
        self.account(leaving, entering);
        self.totals()
    }

    /// Empties every slot.
    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            let leaving = slot.swap(EMPTY, Ordering::AcqRel);
            self.account(leaving, EMPTY);
        }
        self.next.store(0, Ordering::Relaxed);
    }

    /// Returns `(calls, failures)` currently in the window.
    pub(crate) fn totals(&self) -> (u64, u64) {
        let calls = self.calls.load(Ordering::Acquire).max(0) as u64;
        let failures = self.failures.load(Ordering::Acquire).max(0) as u64;
        (calls, failures.min(calls))
    }

    fn account(&self, leaving: u8, entering: u8) {
        let calls_delta = i64::from(entering != EMPTY) - i64::from(leaving != EMPTY);
        let failures_delta = i64::from(entering == FAILURE) - i64::from(leaving == FAILURE);
        if calls_delta != 0 {
            self.calls.fetch_add(calls_delta, Ordering::AcqRel);
        }
        if failures_delta != 0 {
            self.failures.fetch_add(failures_delta, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn totals_match_recount(len in 1u32..50, outcomes in proptest::collection::vec(any::<bool>(), 0..400), reset_at in proptest::option::of(0usize..400)) {
            let window = SlidingWindow::new(len);
            let mut history: Vec<bool> = Vec::new();
            for (i, failed) in outcomes.iter().enumerate() {
                if reset_at == Some(i) {
                    window.reset();
                    history.clear();
                }
                let (calls, failures) = window.record(*failed);
                history.push(*failed);
                let tail = &history[history.len().saturating_sub(len as usize)..];
                prop_assert_eq!(calls, tail.len() as u64);
                prop_assert_eq!(failures, tail.iter().filter(|f| **f).count() as u64);
            }
        }
    }

    #[test]
    fn concurrent_records_settle_exactly() {
        let window = std::sync::Arc::new(SlidingWindow::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let window = window.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u32 {
                        window.record((i + t) % 3 == 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("recording thread panicked");
        }
        let recount_failures = window
            .slots
            .iter()
            .filter(|slot| slot.load(Ordering::Relaxed) == FAILURE)
            .count() as u64;
        assert_eq!(window.totals(), (64, recount_failures));
    }
}
