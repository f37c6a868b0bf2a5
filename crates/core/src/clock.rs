use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A source of monotonic time for pure state (buckets, breaker windows, budgets).
///
/// towline never reads `std::time::Instant`: the default [`TokioClock`] reads
/// `tokio::time::Instant`, which follows tokio's paused test time (`start_paused`, `advance`),
/// and [`FakeClock`] moves only when a test tells it to, so that state machines are tested with
/// no runtime at all (governor's `FakeRelativeClock` idea).
///
/// ```
/// use std::time::Duration;
/// use towline_core::{Clock, FakeClock};
///
/// let clock = FakeClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now() - start, Duration::from_millis(250));
/// ```
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The default clock: `tokio::time::Instant::now()`, which honours paused test time.
///
/// ```
/// use towline_core::{Clock, TokioClock};
/// let a = TokioClock.now();
/// assert!(TokioClock.now() >= a);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to; clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use towline_core::{Clock, FakeClock};
///
/// let clock = FakeClock::new();
/// let other = clock.clone();
/// let t0 = other.now();
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(other.now() - t0, Duration::from_secs(1));
/// ```
#[derive(Clone)]
pub struct FakeClock {
    origin: Instant,
    offset_nanos: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock frozen at the current instant.
    pub fn new() -> Self {
        FakeClock {
            origin: Instant::now(),
            offset_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::AcqRel);
    }

    /// How far the clock has moved since it was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }
}

impl fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeClock")
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

/// Nanoseconds since a fixed origin, for state kept in atomics.
///
/// Lock-free state (a GCRA "theoretical arrival time", a breaker's open-until) is stored as a
/// `u64` count of nanoseconds since an origin instant captured when the state was created.
/// `u64` nanoseconds last 584 years.
///
/// ```
/// use std::time::Duration;
/// use towline_core::{Clock, FakeClock, Nanos};
///
/// let clock = FakeClock::new();
/// let origin = clock.now();
/// clock.advance(Duration::from_micros(3));
/// assert_eq!(Nanos::since(origin, clock.now()), Nanos(3_000));
/// assert_eq!(Nanos(3_000).to_instant(origin), clock.now());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The time from `origin` to `now`, zero if `now` is earlier.
    #[inline]
    pub fn since(origin: Instant, now: Instant) -> Self {
        Nanos::from(now.saturating_duration_since(origin))
    }

    /// The instant this many nanoseconds after `origin`.
    #[inline]
    pub fn to_instant(self, origin: Instant) -> Instant {
        origin + Duration::from_nanos(self.0)
    }

    /// As a `Duration`.
    #[inline]
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }
}

impl From<Duration> for Nanos {
    #[inline]
    fn from(d: Duration) -> Self {
        // Whole seconds and the rest in u64 arithmetic: `as_nanos` goes through u128.
        let nanos = d
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())));
        Nanos(nanos.unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_from_a_duration_is_exact_and_saturates() {
        assert_eq!(
            Nanos::from(Duration::new(3, 7)).as_duration(),
            Duration::new(3, 7)
        );
        assert_eq!(Nanos::from(Duration::from_nanos(u64::MAX)), Nanos(u64::MAX));
        // One nanosecond more than a u64 holds, by seconds and by the sub-second part.
        assert_eq!(Nanos::from(Duration::MAX), Nanos(u64::MAX));
        let just_over = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1);
        assert_eq!(Nanos::from(just_over), Nanos(u64::MAX));
    }
}
