//! Exponential backoff with jitter.

use std::time::Duration;

use fastrand::Rng;

use crate::ConfigError;

/// How the exponential delay is randomized, after the AWS Architecture Blog's "Exponential
/// Backoff and Jitter". With `t = min(max, base · 2^(n-1))` for the `n`-th retry:
///
/// | jitter | delay |
/// |---|---|
/// | [`None`](Jitter::None) | `t` |
/// | [`Full`](Jitter::Full) | uniform in `[0, t]` |
/// | [`Equal`](Jitter::Equal) | `t/2` + uniform in `[0, t/2]` |
/// | [`Decorrelated`](Jitter::Decorrelated) (default) | uniform in `[base, min(max, 3 · previous)]` |
///
/// Decorrelated jitter is the default: it spreads clients that failed together as well as full
/// jitter does, yet never waits less than `base`, so it never turns into a tight loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// No randomness: `min(max, base · 2^(n-1))`. Clients that failed together retry together;
    /// meant for tests and single clients.
    None,
    /// Uniform in `[0, t]`: the widest spread, but may retry at once.
    Full,
    /// Half fixed, half random: uniform in `[t/2, t]`.
    Equal,
    /// Uniform in `[base, min(max, 3 · previous delay)]`, starting from `previous = base`.
    #[default]
    Decorrelated,
}

impl Jitter {
    /// A short name for reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }
}

/// Exponential backoff between retries: a [`Jitter`] over `base` doubling up to `max`.
///
/// The delay it computes is the retry layer's own pacing. A provider's hint (`Retry-After`, ...)
/// is a floor on top of it: the layer waits `max(hint, backoff)`.
///
/// ```
/// use std::time::Duration;
/// use towline_retry::{Backoff, Jitter};
///
/// let backoff = Backoff::new(Jitter::Equal, Duration::from_millis(100), Duration::from_secs(1)).unwrap();
/// let mut rng = fastrand::Rng::with_seed(7);
/// // The third retry: t = min(1 s, 100 ms · 2²) = 400 ms, so the delay is in [200 ms, 400 ms].
/// let d = backoff.delay(3, Duration::ZERO, &mut rng);
/// assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backoff {
    jitter: Jitter,
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// The default base: half a second, the OpenAI SDK's first delay.
    pub const DEFAULT_BASE: Duration = Duration::from_millis(500);
    /// The default largest computed delay: 8 seconds, the OpenAI SDK's.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(8);

    /// A backoff of `jitter` starting at `base` and never longer than `max`.
    ///
    /// Fails when `base` is zero or `max` is shorter than `base`.
    pub fn new(jitter: Jitter, base: Duration, max: Duration) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::new(
                "backoff_base",
                "must be longer than zero (a zero base retries in a tight loop)",
            ));
        }
        if max < base {
            return Err(ConfigError::new(
                "backoff_max",
                format!("{max:?} is shorter than backoff_base {base:?}"),
            ));
        }
        Ok(Backoff { jitter, base, max })
    }

    /// The jitter.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// The base delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest delay it computes.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before the `retry`-th retry (1 for the first). `previous` is the delay this
    /// backoff returned for the retry before (anything, e.g. zero, for the first); only
    /// decorrelated jitter reads it.
    pub fn delay(&self, retry: u32, previous: Duration, rng: &mut Rng) -> Duration {
        let (base, max) = (nanos(self.base), nanos(self.max));
        let t = exponential(base, max, retry);
        let delay = match self.jitter {
            Jitter::None => t,
            Jitter::Full => rng.u64(0..=t),
            Jitter::Equal => t / 2 + rng.u64(0..=t - t / 2),
            Jitter::Decorrelated => {
                let previous = nanos(previous).max(base);
                let high = previous.saturating_mul(3).min(max);
                rng.u64(base..=high.max(base))
            }
        };
        Duration::from_nanos(delay)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            jitter: Jitter::default(),
            base: Self::DEFAULT_BASE,
            max: Self::DEFAULT_MAX,
        }
    }
}

/// `min(max, base · 2^(retry-1))` in nanoseconds, without overflow.
fn exponential(base: u64, max: u64, retry: u32) -> u64 {
    let doublings = retry.saturating_sub(1);
    let factor = 1u64.checked_shl(doublings).unwrap_or(u64::MAX);
    base.saturating_mul(factor).min(max)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastrand::Rng;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ]
    }

    #[test]
    fn rejects_a_zero_base_and_a_max_below_base() {
        let err = Backoff::new(Jitter::Full, Duration::ZERO, MS).unwrap_err();
        assert_eq!(err.setting(), "backoff_base");
        let err = Backoff::new(Jitter::Full, 10 * MS, MS).unwrap_err();
        assert_eq!(err.setting(), "backoff_max");
    }

    #[test]
    fn no_jitter_doubles_up_to_the_max() {
        let b = Backoff::new(Jitter::None, 100 * MS, 1000 * MS).unwrap();
        let mut rng = Rng::with_seed(1);
        let delays: Vec<_> = (1..=6)
            .map(|n| b.delay(n, Duration::ZERO, &mut rng))
            .collect();
        assert_eq!(
            delays,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.delay(u32::MAX, Duration::ZERO, &mut rng), 1000 * MS);
    }

    #[test]
    fn same_seed_same_delays() {
        let b = Backoff::default();
        let run = |seed| {
            let mut rng = Rng::with_seed(seed);
            let mut prev = Duration::ZERO;
            (1..=5)
                .map(|n| {
                    prev = b.delay(n, prev, &mut rng);
                    prev
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn jitter_actually_spreads() {
        // Two hundred clients failing together must not retry at the same instant.
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let b = Backoff::new(jitter, 100 * MS, 10_000 * MS).unwrap();
            let mut rng = Rng::with_seed(9);
            let mut distinct: Vec<_> = (0..200).map(|_| b.delay(3, 400 * MS, &mut rng)).collect();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() > 190, "{jitter:?}: {}", distinct.len());
        }
    }

    proptest! {
        #[test]
        fn delays_stay_within_their_jitter_bounds(
            jitter in any_jitter(),
            base_ms in 1u64..5_000,
            extra_ms in 0u64..120_000,
            retry in 1u32..80,
            previous_ms in 0u64..200_000,
            seed in any::<u64>(),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra_ms);
            let b = Backoff::new(jitter, base, max).unwrap();
            let previous = Duration::from_millis(previous_ms);
            let d = b.delay(retry, previous, &mut Rng::with_seed(seed));
            let t = base.saturating_mul(2u32.saturating_pow(retry - 1)).min(max);
            prop_assert!(d <= max);
            match jitter {
                Jitter::None => prop_assert_eq!(d, t),
                Jitter::Full => prop_assert!(d <= t),
                Jitter::Equal => prop_assert!(d >= t / 2 && d <= t),
                Jitter::Decorrelated => {
                    prop_assert!(d >= base);
                    prop_assert!(d <= (previous.max(base) * 3).max(base));
                }
            }
        }

        #[test]
        fn decorrelated_chain_never_drops_below_base_nor_exceeds_max(
            base_ms in 1u64..2_000,
            extra_ms in 0u64..60_000,
            seed in any::<u64>(),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra_ms);
            let b = Backoff::new(Jitter::Decorrelated, base, max).unwrap();
            let mut rng = Rng::with_seed(seed);
            let mut prev = Duration::ZERO;
            for n in 1..50 {
                let d = b.delay(n, prev, &mut rng);
                prop_assert!(d >= base && d <= max);
                prop_assert!(d <= prev.max(base) * 3);
                prev = d;
            }
        }
    }
}
