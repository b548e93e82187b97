//! A duration histogram with fixed buckets that records with atomic additions only.
//!
//! prometheus-client 0.23's `Histogram` takes a write lock on every observation, which every
//! attempt on a busy provider would contend for. This one adds to two atomics instead, and the
//! collector encodes it at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the call-duration buckets, in seconds. A healthy generation can stream for
/// minutes, so the buckets reach 5 minutes.
pub(crate) const CALL_DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds of the queue-wait buckets, in seconds. The default queue timeout is 5 seconds.
pub(crate) const QUEUE_WAIT_BOUNDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Counts durations into buckets with fixed upper bounds, plus one unbounded bucket.
#[derive(Debug)]
pub(crate) struct DurationHistogram {
    bounds: &'static [f64],
    /// `bounds` in whole microseconds, compared with each observation.
    bound_micros: Box<[u64]>,
    /// Observations per bucket (not cumulative); the last bucket has no upper bound.
    buckets: Box<[AtomicU64]>,
    /// The sum of the observations in microseconds: at 1,000 seconds of calls per second it
    /// overflows after about 584 years.
    sum_micros: AtomicU64,
}

/// The state of a histogram at one scrape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// The sum of the observations, in seconds.
    pub(crate) sum: f64,
    /// The number of observations.
    pub(crate) count: u64,
    /// `(upper bound, observations)` per bucket, not cumulative; the last bound is `f64::MAX`,
    /// which the OpenMetrics text encoder writes as `+Inf`.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl DurationHistogram {
    /// Creates a histogram whose buckets end at `bounds`, in seconds, in increasing order.
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        DurationHistogram {
            bounds,
            bound_micros: bounds
                .iter()
                .map(|seconds| (seconds * MICROS_PER_SECOND).round() as u64)
                .collect(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one duration, truncated to whole microseconds. A duration equal to a bound falls
    /// into that bound's bucket, as the `le` (less than or equal) label means.
    pub(crate) fn observe(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let index = self
            .bound_micros
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(self.bound_micros.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Reads the buckets and the sum. The count is the sum of the buckets, so the two always
    /// agree.
    ///
    /// NOTE: an observation that runs concurrently with the scrape can be in the buckets but not
    /// yet in the sum; the next scrape includes it.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.buckets.iter())
            .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / MICROS_PER_SECOND,
            count: buckets.iter().map(|(_, count)| count).sum(),
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_value_falls_into_its_bucket() {
        let histogram = DurationHistogram::new(&[0.1, 1.0]);
        histogram.observe(Duration::from_millis(100));
        histogram.observe(Duration::from_millis(101));
        histogram.observe(Duration::from_secs(2));

        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets, vec![(0.1, 1), (1.0, 1), (f64::MAX, 1)]);
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.sum, 2.201);
    }

    #[test]
    fn zero_and_huge_durations_are_counted() {
        let histogram = DurationHistogram::new(QUEUE_WAIT_BOUNDS);
        histogram.observe(Duration::ZERO);
        histogram.observe(Duration::MAX);

        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.buckets.first(), Some(&(0.001, 1)));
        assert_eq!(snapshot.buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(snapshot.count, 2);
    }

    #[test]
    fn bounds_increase() {
        for bounds in [CALL_DURATION_BOUNDS, QUEUE_WAIT_BOUNDS] {
            assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
