//! The validated numbers a circuit decides by.

use std::time::Duration;

/// The settings of every circuit of one layer, after validation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    /// Number of buckets in the closed-state window.
    pub(crate) buckets: usize,
    /// Width of one bucket, in nanoseconds (≥ 1 ms).
    pub(crate) bucket_nanos: u64,
    /// Failure ratio in (0, 1] that trips the circuit.
    pub(crate) failure_ratio: f64,
    /// Calls the window must hold before the ratio is trusted.
    pub(crate) min_calls: u32,
    /// Failures in a row that trip the circuit whatever the ratio, if set.
    pub(crate) consecutive: Option<u32>,
    /// Open time after a first trip.
    pub(crate) base_open: Duration,
    /// Cap on the open time, whatever the backoff or the provider's hint.
    pub(crate) max_open: Duration,
    /// Factor the open time grows by on each repeated trip.
    pub(crate) growth: f64,
    /// Probe calls allowed in flight while half-open.
    pub(crate) max_probes: u16,
    /// Probe successes that close the circuit.
    pub(crate) close_after: u16,
    /// A circuit unused for this long is forgotten.
    pub(crate) idle: Duration,
}

impl Policy {
    /// The length of the closed-state window.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_nanos(self.bucket_nanos.saturating_mul(self.buckets as u64))
    }

    /// How long the circuit stays open after its `trips`-th trip in a row (1 for the first).
    pub(crate) fn open_duration(&self, trips: u32) -> Duration {
        let exponent = trips.saturating_sub(1).min(64) as i32;
        let secs = self.base_open.as_secs_f64() * self.growth.powi(exponent);
        if secs.is_finite() && secs < self.max_open.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_open
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Policy {
        Policy {
            buckets: 10,
            bucket_nanos: 100_000_000,
            failure_ratio: 0.5,
            min_calls: 4,
            consecutive: None,
            base_open: Duration::from_secs(1),
            max_open: Duration::from_secs(5),
            growth: 2.0,
            max_probes: 2,
            close_after: 2,
            idle: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_time_grows_and_is_capped() {
        let p = Policy::for_tests();
        let secs: Vec<_> = (1..=5).map(|t| p.open_duration(t).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        assert_eq!(p.open_duration(0), p.base_open);
        assert_eq!(p.open_duration(u32::MAX), p.max_open);
        let flat = Policy {
            growth: 1.0,
            ..Policy::for_tests()
        };
        assert_eq!(flat.open_duration(30), flat.base_open);
    }
}
