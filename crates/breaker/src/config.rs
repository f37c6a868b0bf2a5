//! The builder, its defaults and their reasons.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use towline_core::{CircuitState, Clock, Endpoint, Error, ErrorKind, TokioClock};

use crate::error::ConfigError;
use crate::layer::BreakerLayer;
use crate::policy::Policy;
use crate::shared::{Env, FailurePredicate, Now, Shared, TransitionHook};

/// A state change of one key's circuit, as given to the
/// [`on_transition`](BreakerBuilder::on_transition) callback.
///
/// It names the key by its [`DescribeKey`](crate::DescribeKey) description (for the default
/// key, the endpoint's `host:port`, which is not a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition<'a> {
    /// The key's description.
    pub key: &'a str,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// For a change to `Open`: how long until the next probe.
    pub open_for: Option<Duration>,
    /// For a change to `Open`: the class of the failure that caused it.
    pub cause: Option<ErrorKind>,
}

/// What the breaker does with a request whose key extractor returns `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unkeyed {
    /// All such requests share one circuit (named `(no key)`). The default: a breaker that
    /// silently stops guarding is worse than a coarse one.
    #[default]
    Shared,
    /// Such requests pass through unguarded and uncounted: for key functions that pick which
    /// calls the breaker should watch.
    Bypass,
}

/// Builds a [`BreakerLayer`]; every setting is checked by [`build`](BreakerBuilder::build).
///
/// # Defaults, and why
///
/// | setting | default | why |
/// |---|---|---|
/// | [`window`](Self::window) | 10 s in 10 buckets of 1 s | LLM calls take seconds: a shorter window holds too few calls to judge a ratio, a longer one keeps failing long after an outage began. 1 s buckets let old failures age out smoothly. |
/// | [`failure_ratio`](Self::failure_ratio) | 0.5 | providers have a background error rate of a few percent; half of all calls failing is an outage, not noise. |
/// | [`min_calls`](Self::min_calls) | 10 | two or three unlucky calls out of four say little; ten calls in ten seconds is ordinary traffic for a service that needs a breaker. |
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 | catches outages on endpoints too quiet to reach `min_calls`; one call with three retries makes at most four failures in a row, so a single unlucky call cannot trip it. |
/// | [`open_duration`](Self::open_duration) | 5 s | provider incidents (overload, 5xx surges) last seconds to minutes: 5 s sheds the load at once yet looks again soon. |
/// | [`open_growth`](Self::open_growth) | 2.0 | each failed probe doubles the wait (5, 10, 20 s...), so a long outage costs few probes. |
/// | [`max_open_duration`](Self::max_open_duration) | 30 s | bounds how long callers stay locked out after the provider is back; also caps a provider's `Retry-After`. |
/// | [`half_open_probes`](Self::half_open_probes) | 2 | LLM calls are slow: probes in parallel decide in one round trip instead of several. |
/// | [`probe_successes`](Self::probe_successes) | 2 | one success can be luck on a provider failing half its calls; two is evidence. |
/// | [`idle_timeout`](Self::idle_timeout) | 5 min | forget endpoints no longer used, long after anything in their window mattered. |
/// | [`failure_if`](Self::failure_if) | [`ErrorKind::is_provider_failure`] | count only what says the provider is unhealthy: `Server`, `Overloaded`, `Timeout`, `Transport`, `StreamInterrupted`. Never 4xx classes, `RateLimited` or `QuotaExhausted` (the throttle's business: the provider is fine, the key is not). |
///
/// ```
/// use std::time::Duration;
/// use towline_breaker::BreakerLayer;
///
/// let layer = BreakerLayer::builder()
///     .window(Duration::from_secs(30), 15)
///     .failure_ratio(0.3)
///     .min_calls(20)
///     .consecutive_failures(None)
///     .open_duration(Duration::from_secs(2))
///     .max_open_duration(Duration::from_secs(60))
///     .half_open_probes(3)
///     .probe_successes(3)
///     .on_transition(|t| eprintln!("breaker {}: {:?} -> {:?}", t.key, t.from, t.to))
///     .build()
///     .expect("valid settings");
/// # drop(layer);
/// ```
pub struct BreakerBuilder<X = Endpoint> {
    extractor: X,
    now: Box<Now>,
    window: Duration,
    buckets: u32,
    failure_ratio: f64,
    min_calls: u32,
    consecutive: Option<u32>,
    open: Duration,
    max_open: Duration,
    growth: f64,
    probes: u32,
    close_after: u32,
    idle: Duration,
    is_failure: Option<Arc<FailurePredicate>>,
    on_transition: Option<Arc<TransitionHook>>,
    unkeyed: Unkeyed,
}

impl Default for BreakerBuilder {
    fn default() -> Self {
        BreakerBuilder {
            extractor: Endpoint,
            now: clock_fn(TokioClock),
            window: Duration::from_secs(10),
            buckets: 10,
            failure_ratio: 0.5,
            min_calls: 10,
            consecutive: Some(5),
            open: Duration::from_secs(5),
            max_open: Duration::from_secs(30),
            growth: 2.0,
            probes: 2,
            close_after: 2,
            idle: Duration::from_secs(300),
            is_failure: None,
            on_transition: None,
            unkeyed: Unkeyed::Shared,
        }
    }
}

fn clock_fn(clock: impl Clock) -> Box<Now> {
    Box::new(move || clock.now())
}

impl<X> BreakerBuilder<X> {
    /// Keys circuits by `extractor` instead of the endpoint (`host:port`): any
    /// [`KeyExtractor`](towline_core::KeyExtractor), e.g. a closure reading a model header.
    /// Its key type must implement [`DescribeKey`](crate::DescribeKey).
    ///
    /// ```
    /// use towline_breaker::BreakerLayer;
    ///
    /// // One circuit per (endpoint, model header).
    /// let layer = BreakerLayer::builder()
    ///     .key(|req: &http::Request<()>| {
    ///         let model = req.headers().get("x-model")?.to_str().ok()?.to_owned();
    ///         Some((req.uri().authority()?.clone(), model))
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # drop(layer);
    /// ```
    pub fn key<Y>(self, extractor: Y) -> BreakerBuilder<Y> {
        BreakerBuilder {
            extractor,
            now: self.now,
            window: self.window,
            buckets: self.buckets,
            failure_ratio: self.failure_ratio,
            min_calls: self.min_calls,
            consecutive: self.consecutive,
            open: self.open,
            max_open: self.max_open,
            growth: self.growth,
            probes: self.probes,
            close_after: self.close_after,
            idle: self.idle,
            is_failure: self.is_failure,
            on_transition: self.on_transition,
            unkeyed: self.unkeyed,
        }
    }

    /// Reads time from `clock` (default [`TokioClock`]); tests pass a
    /// [`FakeClock`](towline_core::FakeClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.now = clock_fn(clock);
        self
    }

    /// The closed-state sliding window: its length, cut into `buckets` buckets that age out one
    /// at a time. Length from 1 ms to 1 day, 1 to 1,000 buckets of at least 1 ms.
    pub fn window(mut self, length: Duration, buckets: u32) -> Self {
        self.window = length;
        self.buckets = buckets;
        self
    }

    /// The share of failed calls in the window, in (0, 1], that opens the circuit.
    pub fn failure_ratio(mut self, ratio: f64) -> Self {
        self.failure_ratio = ratio;
        self
    }

    /// How many calls the window must hold before the ratio is judged (at least 1).
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.min_calls = calls;
        self
    }

    /// Open after this many counted failures in a row, whatever the window says; `None`
    /// disables it.
    pub fn consecutive_failures(mut self, failures: impl Into<Option<u32>>) -> Self {
        self.consecutive = failures.into();
        self
    }

    /// How long the circuit stays open after a first trip (at least 1 ms).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open = duration;
        self
    }

    /// The factor the open time grows by each time the circuit re-opens without a full window
    /// of health in between (from 1.0, no growth, to 100).
    pub fn open_growth(mut self, factor: f64) -> Self {
        self.growth = factor;
        self
    }

    /// The longest the circuit stays open, whatever the growth or the provider's
    /// `Retry-After` (from `open_duration` to 1 day).
    pub fn max_open_duration(mut self, duration: Duration) -> Self {
        self.max_open = duration;
        self
    }

    /// How many probe calls may be in flight while half-open (1 to 65,535).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.probes = probes;
        self
    }

    /// How many probe successes close the circuit (1 to 65,535). One probe failure re-opens
    /// it.
    pub fn probe_successes(mut self, successes: u32) -> Self {
        self.close_after = successes;
        self
    }

    /// Forget a key's circuit once nothing happened on it for this long (at least the window
    /// length). Open circuits are kept until their probe time, and circuits with a probe in
    /// flight are kept.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Decides which errors count as failures, replacing
    /// [`ErrorKind::is_provider_failure`]. An error it does not count is a sign of a live
    /// provider (a success), except local decisions ([`ErrorKind::is_local`]), which are not
    /// counted at all.
    ///
    /// ```
    /// use towline_breaker::BreakerLayer;
    /// use towline_core::ErrorKind;
    ///
    /// // Also treat rate limiting as an outage, e.g. for a gateway that sheds load with 429s.
    /// let layer = BreakerLayer::builder()
    ///     .failure_if(|err| err.kind().is_provider_failure() || err.kind() == ErrorKind::RateLimited)
    ///     .build()
    ///     .unwrap();
    /// # drop(layer);
    /// ```
    pub fn failure_if(
        mut self,
        predicate: impl Fn(&Error) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.is_failure = Some(Arc::new(predicate));
        self
    }

    /// Calls `hook` on every state change of every key (for alerts), from the task whose call
    /// caused it. Keep it quick and non-blocking: hand the transition to a channel or a
    /// metrics counter.
    pub fn on_transition(mut self, hook: impl Fn(&Transition<'_>) + Send + Sync + 'static) -> Self {
        self.on_transition = Some(Arc::new(hook));
        self
    }

    /// What to do with requests without a key (default: [`Unkeyed::Shared`]).
    pub fn unkeyed(mut self, unkeyed: Unkeyed) -> Self {
        self.unkeyed = unkeyed;
        self
    }

    /// Checks every setting and builds the layer.
    pub fn build(self) -> Result<BreakerLayer<X>, ConfigError> {
        let policy = self.policy()?;
        let env = Env::new(policy, self.now, self.is_failure, self.on_transition);
        Ok(BreakerLayer::from_parts(
            self.extractor,
            Arc::new(Shared::new(env, self.unkeyed)),
        ))
    }

    fn policy(&self) -> Result<Policy, ConfigError> {
        const DAY: Duration = Duration::from_secs(86_400);
        const MS: Duration = Duration::from_millis(1);
        let err = ConfigError::new;
        if self.window < MS || self.window > DAY {
            return Err(err(
                "window",
                format!("length must be from 1 ms to 1 day, got {:?}", self.window),
            ));
        }
        if !(1..=1_000).contains(&self.buckets) {
            return Err(err(
                "window",
                format!("buckets must be from 1 to 1000, got {}", self.buckets),
            ));
        }
        let bucket = self.window / self.buckets;
        if bucket < MS {
            return Err(err(
                "window",
                format!("each bucket must cover at least 1 ms, got {bucket:?}"),
            ));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(err(
                "failure_ratio",
                format!("must be in (0, 1], got {}", self.failure_ratio),
            ));
        }
        if !(1..=1_000_000).contains(&self.min_calls) {
            return Err(err(
                "min_calls",
                format!("must be from 1 to 1,000,000, got {}", self.min_calls),
            ));
        }
        if self.consecutive == Some(0) {
            return Err(err(
                "consecutive_failures",
                "must be at least 1 (use None to disable)".to_owned(),
            ));
        }
        if self.open < MS {
            return Err(err(
                "open_duration",
                format!("must be at least 1 ms, got {:?}", self.open),
            ));
        }
        if self.max_open < self.open || self.max_open > DAY {
            return Err(err(
                "max_open_duration",
                format!(
                    "must be from open_duration ({:?}) to 1 day, got {:?}",
                    self.open, self.max_open
                ),
            ));
        }
        if !(self.growth >= 1.0 && self.growth <= 100.0) {
            return Err(err(
                "open_growth",
                format!("must be from 1.0 to 100, got {}", self.growth),
            ));
        }
        let probes = u16::try_from(self.probes)
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| {
                err(
                    "half_open_probes",
                    format!("must be from 1 to 65535, got {}", self.probes),
                )
            })?;
        let close_after = u16::try_from(self.close_after)
            .ok()
            .filter(|&p| p >= 1)
            .ok_or_else(|| {
                err(
                    "probe_successes",
                    format!("must be from 1 to 65535, got {}", self.close_after),
                )
            })?;
        let bucket_nanos = u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX);
        let window = Duration::from_nanos(bucket_nanos * u64::from(self.buckets));
        if self.idle < window {
            return Err(err(
                "idle_timeout",
                format!(
                    "must be at least the window ({window:?}), got {:?}",
                    self.idle
                ),
            ));
        }
        Ok(Policy {
            buckets: self.buckets as usize,
            bucket_nanos,
            failure_ratio: self.failure_ratio,
            min_calls: self.min_calls,
            consecutive: self.consecutive,
            base_open: self.open,
            max_open: self.max_open,
            growth: self.growth,
            max_probes: probes,
            close_after,
            idle: self.idle,
        })
    }
}

impl<X: fmt::Debug> fmt::Debug for BreakerBuilder<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerBuilder")
            .field("extractor", &self.extractor)
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .field("failure_ratio", &self.failure_ratio)
            .field("min_calls", &self.min_calls)
            .field("consecutive_failures", &self.consecutive)
            .field("open_duration", &self.open)
            .field("max_open_duration", &self.max_open)
            .field("open_growth", &self.growth)
            .field("half_open_probes", &self.probes)
            .field("probe_successes", &self.close_after)
            .field("idle_timeout", &self.idle)
            .field("unkeyed", &self.unkeyed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting_of(builder: BreakerBuilder) -> &'static str {
        builder.build().unwrap_err().setting()
    }

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let policy = BreakerBuilder::default().policy().unwrap();
        assert_eq!(policy.window(), Duration::from_secs(10));
        assert_eq!(policy.buckets, 10);
        assert_eq!(policy.failure_ratio, 0.5);
        assert_eq!(policy.min_calls, 10);
        assert_eq!(policy.consecutive, Some(5));
        assert_eq!(policy.base_open, Duration::from_secs(5));
        assert_eq!(policy.max_open, Duration::from_secs(30));
        assert_eq!((policy.max_probes, policy.close_after), (2, 2));
        assert_eq!(policy.idle, Duration::from_secs(300));
    }

    #[test]
    fn every_nonsense_setting_is_rejected_by_name() {
        let b = BreakerBuilder::default;
        let secs = Duration::from_secs;
        assert_eq!(setting_of(b().window(Duration::ZERO, 10)), "window");
        assert_eq!(setting_of(b().window(secs(10), 0)), "window");
        assert_eq!(setting_of(b().window(secs(10), 5_000)), "window");
        assert_eq!(
            setting_of(b().window(Duration::from_millis(5), 10)),
            "window"
        );
        assert_eq!(setting_of(b().window(secs(100_000), 10)), "window");
        for ratio in [0.0, -0.5, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(
                setting_of(b().failure_ratio(ratio)),
                "failure_ratio",
                "{ratio}"
            );
        }
        assert_eq!(setting_of(b().min_calls(0)), "min_calls");
        assert_eq!(
            setting_of(b().consecutive_failures(0)),
            "consecutive_failures"
        );
        assert_eq!(
            setting_of(b().open_duration(Duration::ZERO)),
            "open_duration"
        );
        assert_eq!(setting_of(b().open_duration(secs(60))), "max_open_duration");
        assert_eq!(
            setting_of(b().max_open_duration(secs(200_000))),
            "max_open_duration"
        );
        for growth in [0.5, f64::NAN, 1_000.0] {
            assert_eq!(
                setting_of(b().open_growth(growth)),
                "open_growth",
                "{growth}"
            );
        }
        assert_eq!(setting_of(b().half_open_probes(0)), "half_open_probes");
        assert_eq!(setting_of(b().half_open_probes(70_000)), "half_open_probes");
        assert_eq!(setting_of(b().probe_successes(0)), "probe_successes");
        assert_eq!(setting_of(b().idle_timeout(secs(5))), "idle_timeout");
    }

    #[test]
    fn edge_values_are_accepted() {
        let built = BreakerBuilder::default()
            .window(Duration::from_millis(1), 1)
            .failure_ratio(1.0)
            .min_calls(1)
            .consecutive_failures(None)
            .open_duration(Duration::from_secs(30))
            .open_growth(1.0)
            .half_open_probes(65_535)
            .probe_successes(1)
            .idle_timeout(Duration::from_millis(1))
            .build();
        assert!(built.is_ok(), "{built:?}");
    }
}
