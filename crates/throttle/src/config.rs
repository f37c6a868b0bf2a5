//! The validated builder of [`ThrottleLayer`], and what a call costs.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use towline_core::{ApiKey, KeyExtractor, KeyHash};

use crate::layer::{Core, ThrottleLayer};
use crate::store::{MemoryStore, Quota, Store};
use crate::{Adaptive, ConfigError};

/// What one unit of a call's cost is, which says which of the provider's rate-limit windows
/// (`x-ratelimit-*-requests` or `x-ratelimit-*-tokens`) the key's rate is learned from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Unit {
    /// One unit per call (requests per second / minute).
    #[default]
    Requests,
    /// Units are tokens (tokens per minute), with a [`Cost`] estimating each call's tokens.
    Tokens,
}

/// What a call costs against its key's bucket.
///
/// Implemented by [`PerCall`] (every call costs 1) and by any closure
/// `Fn(&Request<B>) -> u32`, e.g. an estimate of the tokens a call will use. A call costing
/// more than the key's burst is charged the whole burst: it waits for a full bucket rather
/// than never passing.
///
/// ```
/// use http::Request;
/// use towline_throttle::Cost;
///
/// // Roughly four bytes of prompt per token, plus the completion budget.
/// let estimate = |req: &Request<String>| (req.body().len() / 4) as u32 + 256;
/// assert_eq!(estimate.cost(&Request::new("x".repeat(400))), 356);
/// ```
pub trait Cost<B>: Clone + Send + Sync + 'static {
    /// The cost of `req`, in the layer's [`Unit`].
    fn cost(&self, req: &Request<B>) -> u32;
}

/// Every call costs one unit.
///
/// ```
/// use towline_throttle::{Cost, PerCall};
/// assert_eq!(PerCall.cost(&http::Request::new(())), 1);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PerCall;

impl<B> Cost<B> for PerCall {
    #[inline]
    fn cost(&self, _req: &Request<B>) -> u32 {
        1
    }
}

impl<B, F> Cost<B> for F
where
    F: Fn(&Request<B>) -> u32 + Clone + Send + Sync + 'static,
{
    #[inline]
    fn cost(&self, req: &Request<B>) -> u32 {
        self(req)
    }
}

/// Builds a [`ThrottleLayer`]; every setting is checked by [`ThrottleBuilder::build`].
///
/// Defaults: no configured rate (only what the provider teaches applies: its pauses, quota
/// blocks, `x-ratelimit-*` headers, and adaptive pacing), calls keyed by [`ApiKey`], each call
/// costing 1, a maximum wait of 30 s, adaptive pacing on.
///
/// ```
/// use std::time::Duration;
/// use towline_core::KeyHash;
/// use towline_throttle::{Adaptive, Quota, ThrottleLayer};
///
/// let layer = ThrottleLayer::builder()
///     .rate(10.0)
///     .burst(5)
///     .max_wait(Duration::from_secs(5))
///     .key_quota(KeyHash::of(b"sk-batch-key"), Quota::per_minute(60.0, 1))
///     .adaptive(Adaptive::default().floor(0.5))
///     .build()
///     .unwrap();
/// # let _ = layer;
///
/// let err = ThrottleLayer::builder().rate(0.0).build().unwrap_err();
/// assert_eq!(err.setting(), "rate");
/// ```
#[derive(Debug, Clone)]
pub struct ThrottleBuilder<K = KeyHash, E = ApiKey, F = PerCall> {
    extractor: E,
    cost: F,
    rate: Option<f64>,
    burst: Option<u32>,
    overrides: HashMap<K, Quota>,
    max_wait: Option<Duration>,
    reject_only: bool,
    adaptive: Option<Adaptive>,
    unit: Unit,
}

impl ThrottleBuilder {
    pub(crate) fn new() -> Self {
        ThrottleBuilder {
            extractor: ApiKey,
            cost: PerCall,
            rate: None,
            burst: None,
            overrides: HashMap::new(),
            max_wait: Some(Duration::from_secs(30)),
            reject_only: false,
            adaptive: Some(Adaptive::default()),
            unit: Unit::Requests,
        }
    }
}

impl<K, E, F> ThrottleBuilder<K, E, F> {
    /// Every key's rate, in units per second (must be finite and > 0). Without it, keys have
    /// no configured rate.
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }

    /// Every key's rate as units per minute.
    pub fn per_minute(self, per_minute: f64) -> Self {
        self.rate(per_minute / 60.0)
    }

    /// How many units a full bucket holds (≥ 1, default 1). Needs a [`rate`](Self::rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// A different quota for one key (a batch key, a higher tier). For the default key
    /// extractor, the key is [`KeyHash::of`] the API key: the secret itself is never stored.
    pub fn key_quota(mut self, key: K, quota: Quota) -> Self
    where
        K: Hash + Eq,
    {
        self.overrides.insert(key, quota);
        self
    }

    /// The longest a call waits for its key (default 30 s). A call that would wait longer
    /// fails at once with [`ThrottleReason::WaitTooLong`](towline_core::ThrottleReason) (or
    /// `PausedByProvider` when a provider's pause is the cause), carrying when to try again.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Calls wait as long as their key needs.
    pub fn wait_forever(mut self) -> Self {
        self.max_wait = None;
        self
    }

    /// Never wait: a call its key cannot admit at once fails with
    /// [`ThrottleReason::RateExceeded`](towline_core::ThrottleReason).
    pub fn reject_only(mut self) -> Self {
        self.reject_only = true;
        self
    }

    /// Adaptive pacing with these settings (on by default).
    pub fn adaptive(mut self, adaptive: Adaptive) -> Self {
        self.adaptive = Some(adaptive);
        self
    }

    /// No adaptive pacing: the key's rate is the configured one (or none), slowed only by the
    /// provider's headers and paused by its hints.
    pub fn no_adaptive(mut self) -> Self {
        self.adaptive = None;
        self
    }

    /// What a unit of cost is (default [`Unit::Requests`]).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// Keys calls with `extractor` instead of [`ApiKey`]. Per-key quotas set before are
    /// dropped (they were keyed differently).
    pub fn key<E2>(self, extractor: E2) -> ThrottleBuilder<E2::KeyOf, E2, F>
    where
        E2: KeyType,
    {
        ThrottleBuilder {
            extractor,
            cost: self.cost,
            rate: self.rate,
            burst: self.burst,
            overrides: HashMap::new(),
            max_wait: self.max_wait,
            reject_only: self.reject_only,
            adaptive: self.adaptive,
            unit: self.unit,
        }
    }

    /// Charges each call `cost` units instead of one.
    pub fn cost<F2>(self, cost: F2) -> ThrottleBuilder<K, E, F2> {
        ThrottleBuilder {
            extractor: self.extractor,
            cost,
            rate: self.rate,
            burst: self.burst,
            overrides: self.overrides,
            max_wait: self.max_wait,
            reject_only: self.reject_only,
            adaptive: self.adaptive,
            unit: self.unit,
        }
    }

    /// Checks every setting and builds the layer over the default [`MemoryStore`].
    pub fn build(self) -> Result<ThrottleLayer<K, E, F, MemoryStore<K>>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        let store =
            MemoryStore::with_settings(tokio::time::Instant::now(), self.adaptive, self.unit);
        self.build_with_store(store)
    }

    /// Checks every setting and builds the layer over `store` (a shared store for a fleet).
    pub fn build_with_store<St>(self, store: St) -> Result<ThrottleLayer<K, E, F, St>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        St: Store<K>,
    {
        let quota = match (self.rate, self.burst) {
            (Some(rate), burst) => Some(check_quota(
                "rate",
                "burst",
                Quota::new(rate, burst.unwrap_or(1)),
            )?),
            (None, Some(_)) => return Err(ConfigError::new("burst", "needs a rate")),
            (None, None) => None,
        };
        for quota in self.overrides.values() {
            check_quota("key_quota", "key_quota", *quota)?;
        }
        if let Some(adaptive) = &self.adaptive {
            check_adaptive(adaptive)?;
        }
        if let Some(wait) = self.max_wait
            && tokio::time::Instant::now().checked_add(wait).is_none()
        {
            return Err(ConfigError::new(
                "max_wait",
                "is too large; use wait_forever",
            ));
        }
        let core = Core {
            store,
            quota,
            overrides: self.overrides,
            max_wait: self.max_wait,
            reject_only: self.reject_only,
            total_wait_ns: Default::default(),
        };
        Ok(ThrottleLayer::from_parts(
            Arc::new(core),
            self.extractor,
            self.cost,
        ))
    }
}

/// Names the key type of a key extractor independently of the request body type, so the
/// builder can store per-key quotas before the body type is known. Implemented for the core
/// extractors and any [`KeyExtractor`] whose key does not depend on the body (use
/// [`KeyFn`] to wrap a closure).
pub trait KeyType: Clone + Send + Sync + 'static {
    /// The key.
    type KeyOf: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static;
}

impl KeyType for ApiKey {
    type KeyOf = KeyHash;
}

impl KeyType for towline_core::SessionHeader {
    type KeyOf = KeyHash;
}

impl KeyType for towline_core::Endpoint {
    type KeyOf = http::uri::Authority;
}

/// A closure key extractor with its key type named: `KeyFn::new(|req| ...)`.
///
/// ```
/// use http::Request;
/// use towline_core::KeyHash;
/// use towline_throttle::{KeyFn, ThrottleLayer};
///
/// let by_tenant = KeyFn::new(|req: &Request<String>| {
///     req.headers().get("x-tenant").map(|v| KeyHash::of(v.as_bytes()))
/// });
/// let layer = ThrottleLayer::builder().key(by_tenant).rate(5.0).build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone, Copy)]
pub struct KeyFn<Fun, Key> {
    f: Fun,
    _key: std::marker::PhantomData<fn() -> Key>,
}

impl<Fun, Key> KeyFn<Fun, Key> {
    /// Wraps `f`.
    pub fn new<B>(f: Fun) -> Self
    where
        Fun: Fn(&Request<B>) -> Option<Key>,
    {
        KeyFn {
            f,
            _key: std::marker::PhantomData,
        }
    }
}

impl<Fun, Key> std::fmt::Debug for KeyFn<Fun, Key> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFn(..)")
    }
}

impl<Fun, Key> KeyType for KeyFn<Fun, Key>
where
    Fun: Clone + Send + Sync + 'static,
    Key: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
{
    type KeyOf = Key;
}

impl<B, Fun, Key> KeyExtractor<B> for KeyFn<Fun, Key>
where
    Fun: Fn(&Request<B>) -> Option<Key> + Clone + Send + Sync + 'static,
    Key: Clone + Eq + Hash + Send + Sync + std::fmt::Debug + 'static,
{
    type Key = Key;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<Key> {
        (self.f)(req)
    }
}

fn check_quota(
    rate: &'static str,
    burst: &'static str,
    quota: Quota,
) -> Result<Quota, ConfigError> {
    let r = quota.per_second();
    if !(r.is_finite() && r > 0.0 && r <= 1e9) {
        return Err(ConfigError::new(
            rate,
            format!("must be a finite rate > 0 and ≤ 1e9 per second, got {r}"),
        ));
    }
    if quota.burst() == 0 {
        return Err(ConfigError::new(burst, "must be at least 1"));
    }
    Ok(quota)
}

fn check_adaptive(a: &Adaptive) -> Result<(), ConfigError> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(a.floor) {
        return Err(ConfigError::new(
            "adaptive.floor",
            format!("must be a finite rate > 0, got {}", a.floor),
        ));
    }
    if let Some(c) = a.ceiling
        && (!positive(c) || c < a.floor)
    {
        return Err(ConfigError::new(
            "adaptive.ceiling",
            format!("must be finite and ≥ the floor, got {c}"),
        ));
    }
    if !(a.decrease > 0.0 && a.decrease < 1.0) {
        return Err(ConfigError::new(
            "adaptive.decrease",
            format!("must lie strictly between 0 and 1, got {}", a.decrease),
        ));
    }
    if !positive(a.growth) {
        return Err(ConfigError::new(
            "adaptive.growth",
            format!("must be finite and > 0, got {}", a.growth),
        ));
    }
    if !(a.max_background >= 0.0 && a.max_background < 0.5) {
        return Err(ConfigError::new(
            "adaptive.max_background",
            format!("must lie in [0, 0.5), got {}", a.max_background),
        ));
    }
    if a.forget_after.is_zero() {
        return Err(ConfigError::new(
            "adaptive.forget_after",
            "must be longer than zero",
        ));
    }
    Ok(())
}
