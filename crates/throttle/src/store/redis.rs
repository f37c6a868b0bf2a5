//! A Redis store: one shared quota per key across a fleet of replicas.
//!
//! A provider's limit belongs to the API key, not to one process: ten replicas with ten
//! in-memory buckets each believe they own the whole quota, and together collect 429s.
//! [`RedisStore`] keeps each key's bucket in Redis instead, so that every replica spends the
//! same budget and obeys the same pauses.
//!
//! # How it works
//!
//! - **One round trip per admission.** A Lua script runs the same GCRA step as the in-memory
//!   store, atomically, on the key's hash, in the Redis server's `TIME` (replica clocks may
//!   disagree; the server's is the only one that counts). It admits, or reserves the key's next
//!   slot when the wait fits the call's maximum wait and says how long to wait, or refuses. A
//!   call that waited for a reserved slot confirms it with a second, read-only round trip, so
//!   that a pause learned meanwhile by any replica still holds it.
//! - **Keys are digests.** Each key's hash is named `{prefix}{KeyHash}` (see [`StoreKey`]):
//!   16 hex digits of the key's XXH3 digest, the same on every replica; the key itself never
//!   reaches Redis. Calls without a key share `{prefix}unkeyed`.
//! - **Idle keys expire.** Every write sets the hash to expire when its state stops mattering
//!   (the bucket full again, a pause's empty bucket refilled, a quota block over), plus a
//!   second. A key that comes back later finds the same answer as if it had stayed.
//! - **Pauses are shared.** A `RateLimited` answer with a hint, an exhausted
//!   `x-ratelimit-remaining-*` window, or a `QuotaExhausted` answer with a known reset is written
//!   to the key's hash before the answer is returned, so one replica's 429 holds the key for
//!   all of them; a quota block carries the provider's error (type, code, message), which every
//!   replica then returns without a round trip to the provider. A low remaining count caps the
//!   shared bucket too.
//! - **Rates**: the configured quota, or the slower one the provider's `x-ratelimit-*` headers
//!   give (every replica reads the same headers). Adaptive pacing is not used: it learns from
//!   the send rate of one process, a fraction of the key's; give the throttle the fleet's quota.
//!
//! # When Redis is down or slow
//!
//! No call waits on Redis longer than the store's [`timeout`](RedisStoreBuilder::timeout)
//! (default 50 ms), and none is lost. Past it, the [`OnUnavailable`] policy decides:
//!
//! - [`FailOpen`](OnUnavailable::FailOpen) (the default): the call is decided by this
//!   process's own in-memory bucket, with the key's quota times
//!   [`fallback_share`](RedisStoreBuilder::fallback_share) and every pause this process learned.
//! - [`FailClosed`](OnUnavailable::FailClosed): the call fails with
//!   [`ThrottleReason::StoreUnavailable`].
//!
//! After a failed round trip Redis is left alone for
//! [`probe_every`](RedisStoreBuilder::probe_every) (default 1 s): calls go straight to the
//! policy instead of each paying the timeout, and one call per period probes Redis. The
//! connection manager reconnects in the background; the first probe Redis answers brings the
//! shared limit back. Every fallback (or refusal) is counted in [`RedisMetrics`]
//! ([`RedisStore::fallbacks`], [`RedisStore::metrics`]) and reported by a `tracing` warning
//! (target `towline::throttle`) at most once per [`warn_every`](RedisStoreBuilder::warn_every),
//! saying how many calls fell back and why; an info line says when Redis answers again.
//!
//! A round trip that timed out may still have been executed by Redis: the slot it took is
//! then spent twice (in Redis and locally), which only makes the fleet slower.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use towline_throttle::ThrottleLayer;
//! use towline_throttle::store::redis::{OnUnavailable, RedisStore};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Every replica: 600 requests a minute per API key for the whole fleet, bursts of 10.
//! let store = RedisStore::builder(redis::Client::open("redis://redis.internal:6379/")?)
//!     .prefix("myapp:llm:")
//!     .timeout(Duration::from_millis(50))
//!     .on_unavailable(OnUnavailable::FailOpen)
//!     .fallback_share(0.25) // four replicas
//!     .build()?;
//! store.ping().await?; // optional: check Redis at startup
//! let layer = ThrottleLayer::builder()
//!     .per_minute(600.0)
//!     .burst(10)
//!     .max_wait(Duration::from_secs(20))
//!     .build_with_store(store)?;
//! // ServiceBuilder::new().layer(layer.clone()).layer(NormalizeLayer::new()).service(client)
//!
//! // Later, e.g. in a metrics exporter:
//! let metrics = layer.store().metrics();
//! println!("{} calls fell back to the local bucket", metrics.fallbacks);
//! # Ok(()) }
//! ```
//!
//! # Costs
//!
//! A Redis admission is one `EVALSHA` on a multiplexed connection: concurrent calls are
//! pipelined on it (no pool, no lock). The local work per call is one map lookup (the key's
//! learned state), the hash's name and one allocation for the round trip's future. Measured by
//! `benches/redis.rs` on a loaded two-core machine, Redis on loopback:
//!
//! | | p50 | p99 |
//! |---|---|---|
//! | in-memory store, one admission | 0.19 µs | 0.25 µs |
//! | Redis store, one admission at a time | 146 µs | 290 µs |
//! | a bare `PING` on the same connection, for reference | 79 µs | 116 µs |
//!
//! With 64 admissions in flight they pipeline: about 25 µs each, 40,000 a second on one
//! connection. A Redis admission costs about one loopback HTTP exchange: nothing beside an LLM
//! call, and the price of a limit shared by the fleet.

mod config;
mod future;
mod remote;
mod ticket;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use towline_core::{
    ApiError, Error, ErrorKind, HintSource, KeyHash, RateLimitSnapshot, RetryHint, ThrottleReason,
};

pub use self::config::{OnUnavailable, RedisStoreBuilder};
pub use self::future::{RedisAdmit, RedisLearn};
pub use self::ticket::RedisTicket;
/// The `redis` crate this store is built on, for its `Client` and connection settings.
pub use ::redis;

use self::remote::{AdmitArgs, LearnArgs, Remote, Reply, micros_ceil};
use self::ticket::{Place, Reservation};
use super::{
    Admission, Ask, Grant, Lesson, LocalView, MemoryStore, MemoryTicket, Quota, Signal, Store,
    StoreStats,
};
use crate::Unit;

/// A key a shared store can name: its [`KeyHash`], the same on every replica.
///
/// Implemented for [`KeyHash`] (what the default [`ApiKey`](towline_core::ApiKey) extractor
/// yields), for [`Authority`](http::uri::Authority) (the [`Endpoint`](towline_core::Endpoint)
/// extractor) and for plain strings and bytes; implement it for your own key type.
///
/// ```
/// use towline_core::KeyHash;
/// use towline_throttle::store::redis::StoreKey;
///
/// assert_eq!(KeyHash::of(b"sk-1").key_hash(), KeyHash::of(b"sk-1"));
/// assert_eq!("tenant-7".to_string().key_hash(), KeyHash::of(b"tenant-7"));
/// ```
pub trait StoreKey {
    /// The key's digest. Must be stable across processes and versions.
    fn key_hash(&self) -> KeyHash;
}

impl StoreKey for KeyHash {
    fn key_hash(&self) -> KeyHash {
        *self
    }
}

impl StoreKey for http::uri::Authority {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self.as_str().as_bytes())
    }
}

impl StoreKey for String {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self.as_bytes())
    }
}

impl StoreKey for Box<str> {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self.as_bytes())
    }
}

impl StoreKey for Vec<u8> {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self)
    }
}

/// The throttle's [`Store`] in Redis: every replica using the same Redis (and prefix) shares
/// each key's bucket, pauses and quota blocks. See the [module docs](self).
///
/// Cheap to clone: clones share the connection, the local fallback bucket and the metrics.
#[derive(Clone)]
pub struct RedisStore<K = KeyHash> {
    shared: Arc<Shared<K>>,
}

struct Shared<K> {
    remote: Arc<Remote>,
    /// The fallback bucket, and what this process learned (pauses, blocks, header rates).
    local: MemoryStore<K>,
    fallback_share: f64,
    unit: Unit,
}

/// What the store counted since it was built. See the [module docs](self) for the policy.
///
/// ```
/// let m = towline_throttle::store::redis::RedisMetrics::default();
/// assert_eq!(m.fallbacks, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisMetrics {
    /// Round trips Redis answered.
    pub round_trips: u64,
    /// Round trips that failed or timed out; each leaves Redis alone until the next probe.
    pub failures: u64,
    /// Of the failures, those that hit the timeout.
    pub timeouts: u64,
    /// Admissions decided by the local bucket because Redis did not answer (fail open).
    pub fallbacks: u64,
    /// Calls refused with `StoreUnavailable` because Redis did not answer (fail closed).
    pub refusals: u64,
    /// Pauses and quota blocks that only this process knows, because Redis did not take them.
    pub unshared_lessons: u64,
    /// Whether Redis answered the last round trip.
    pub available: bool,
}

impl<K> RedisStore<K>
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder for a store on `client`'s Redis (see [`RedisStoreBuilder`] for the
    /// defaults).
    pub fn builder(client: ::redis::Client) -> RedisStoreBuilder<K> {
        RedisStoreBuilder::new(client)
    }

    /// What the store counted: round trips, failures, fallbacks, refusals.
    pub fn metrics(&self) -> RedisMetrics {
        self.shared.remote.metrics()
    }

    /// How many admissions the local bucket decided because Redis did not answer.
    pub fn fallbacks(&self) -> u64 {
        self.metrics().fallbacks
    }

    /// Whether Redis answered the last round trip (false while it is left alone after a
    /// failure).
    pub fn is_available(&self) -> bool {
        self.shared.remote.is_up()
    }

    /// The name of the Redis hash that holds `key`'s state: the prefix and the key's digest.
    ///
    /// ```
    /// use towline_core::KeyHash;
    /// use towline_throttle::store::redis::RedisStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let store = RedisStore::builder(client).prefix("app:").build().unwrap();
    /// let key = KeyHash::of(b"sk-secret");
    /// assert_eq!(store.hash_name(Some(&key)), format!("app:{key}"));
    /// assert!(!store.hash_name(Some(&key)).contains("secret"));
    /// # }
    /// ```
    pub fn hash_name(&self, key: Option<&K>) -> String {
        self.shared.remote.hash_name(key.map(StoreKey::key_hash))
    }

    /// Sends a `PING`, e.g. to check Redis at startup. Not bounded by the store's timeout.
    pub async fn ping(&self) -> Result<(), ::redis::RedisError> {
        let mut conn = self.shared.remote.connection();
        ::redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }

    /// The local bucket: the fallback, and what this process learned from the provider.
    pub fn local(&self) -> &MemoryStore<K> {
        &self.shared.local
    }
}

impl<K> Shared<K>
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The arguments of an admission, from the ask and the key's local state.
    fn admit_args(&self, ask: &Ask, view: &LocalView, claim: bool, now: Instant) -> AdmitArgs {
        let max_wait_us = match (ask.reject_only, ask.deadline) {
            (true, _) => 0,
            (false, None) => -1,
            (false, Some(deadline)) => {
                i64::try_from(deadline.saturating_duration_since(now).as_micros())
                    .unwrap_or(i64::MAX)
            }
        };
        AdmitArgs {
            interval_us: view.limits.interval.div_ceil(1_000),
            burst: view.limits.burst,
            cost: ask.cost,
            max_wait_us,
            claim,
            local_pause_us: micros_ceil(view.pause),
            now_us: None,
        }
    }

    /// Redis answered: what it means for the call.
    fn on_reply(
        &self,
        reply: Reply,
        ask: &Ask,
        hash: String,
        args: &AdmitArgs,
        reservation: Option<Reservation>,
    ) -> Admission<RedisTicket> {
        // Whatever the answer, an earlier reservation is now used or superseded.
        if let Some(old) = reservation {
            old.settle();
        }
        match reply {
            Reply::Go => Admission::Go(Grant::default()),
            Reply::Reserved { wait, tat } => {
                let ticket =
                    Reservation::new(Arc::clone(&self.remote), hash, tat, args.weight_us());
                // Counted from the answer, not the question: never earlier than the slot.
                Admission::Wait {
                    until: Some(Instant::now() + wait),
                    ticket: RedisTicket(Place::Reserved(ticket)),
                }
            }
            Reply::Refused { wait, by_pause } => {
                let reason = if by_pause {
                    ThrottleReason::PausedByProvider
                } else if ask.reject_only {
                    ThrottleReason::RateExceeded
                } else {
                    ThrottleReason::WaitTooLong
                };
                Admission::Reject(Error::throttled(reason, Some(wait)))
            }
            Reply::Blocked { left, error } => {
                Admission::Reject(Error::from(decode_block(&error, left)))
            }
        }
    }

    /// Redis did not answer: the policy decides.
    fn unavailable(
        &self,
        key: Option<&K>,
        ask: &Ask,
        reservation: Option<Reservation>,
    ) -> Admission<RedisTicket> {
        if let Some(old) = reservation {
            old.settle();
        }
        self.remote.unavailable();
        match self.remote.policy {
            OnUnavailable::FailOpen => {
                let quota = ask.quota.map(|q| self.fallback_quota(q));
                let ask = ask.with_quota(quota).at(Instant::now());
                self.local_admit(key, &ask, None)
            }
            OnUnavailable::FailClosed => {
                Admission::Reject(Error::throttled(ThrottleReason::StoreUnavailable, None))
            }
        }
    }

    fn fallback_quota(&self, quota: Quota) -> Quota {
        if self.fallback_share >= 1.0 {
            return quota;
        }
        let burst = (f64::from(quota.burst()) * self.fallback_share).ceil() as u32;
        Quota::new(quota.per_second() * self.fallback_share, burst.max(1))
    }

    fn local_admit(
        &self,
        key: Option<&K>,
        ask: &Ask,
        ticket: Option<MemoryTicket>,
    ) -> Admission<RedisTicket> {
        match self.local.admit(key, ask, ticket).into_inner() {
            Admission::Go(grant) => Admission::Go(grant),
            Admission::Wait { until, ticket } => Admission::Wait {
                until,
                ticket: RedisTicket(Place::Local(ticket)),
            },
            Admission::Reject(error) => Admission::Reject(error),
        }
    }
}

impl<K> Store<K> for RedisStore<K>
where
    K: StoreKey + Hash + Eq + Clone + Send + Sync + 'static,
{
    type Ticket = RedisTicket;
    type Admit = RedisAdmit;
    type Learn = RedisLearn;

    fn admit(&self, key: Option<&K>, ask: &Ask, ticket: Option<RedisTicket>) -> RedisAdmit {
        let shared = &self.shared;
        let reservation = match ticket.map(|t| t.0) {
            // A call waiting in the local queue (it fell back) stays there until it goes.
            Some(Place::Local(ticket)) => {
                let ask = ask.with_quota(ask.quota.map(|q| shared.fallback_quota(q)));
                return RedisAdmit::ready(shared.local_admit(key, &ask, Some(ticket)));
            }
            Some(Place::Reserved(reservation)) => Some(reservation),
            None => None,
        };
        let view = shared.local.local_view(key, ask.quota, ask.now);
        if let Some(error) = view.block {
            // This process learned the key's quota is gone: answer without any round trip.
            if let Some(old) = reservation {
                old.settle();
            }
            return RedisAdmit::ready(Admission::Reject(error));
        }
        let now = Instant::now();
        if !shared.remote.may_call(now) {
            return RedisAdmit::ready(shared.unavailable(key, ask, reservation));
        }
        let args = shared.admit_args(ask, &view, reservation.is_some(), now);
        let hash = shared.remote.hash_name(key.map(StoreKey::key_hash));
        let (shared, key, ask) = (Arc::clone(shared), key.cloned(), *ask);
        RedisAdmit::remote(async move {
            match shared.remote.admit(&hash, &args).await {
                Ok(reply) => shared.on_reply(reply, &ask, hash, &args, reservation),
                Err(_) => shared.unavailable(key.as_ref(), &ask, reservation),
            }
        })
    }

    fn learn(&self, key: Option<&K>, quota: Option<Quota>, lesson: Lesson) -> RedisLearn {
        let shared = &self.shared;
        let share = Share::of(&lesson, shared.unit);
        let learned = shared.local.learn(key, quota, lesson).into_inner();
        if share.is_empty() {
            return RedisLearn::ready(learned);
        }
        let now = Instant::now();
        // After learning: a rate the headers just gave applies to the cap below.
        let limits = shared.local.local_view(key, quota, now).limits;
        let remaining = share
            .remaining
            .filter(|&r| limits.interval > 0 && r < u64::from(limits.burst));
        if share.pause.is_none() && share.block.is_none() && remaining.is_none() {
            return RedisLearn::ready(learned);
        }
        if !shared.remote.may_call(now) {
            shared.remote.unshared_lesson();
            return RedisLearn::ready(learned);
        }
        let args = LearnArgs {
            pause_us: share.pause.map(micros_ceil),
            block_us: share.block.as_ref().map(|(reset, _)| micros_ceil(*reset)),
            error: share
                .block
                .as_ref()
                .map(|(_, error)| encode_block(error))
                .unwrap_or_default(),
            interval_us: limits.interval.div_ceil(1_000),
            burst: limits.burst,
            remaining,
            now_us: None,
        };
        let hash = shared.remote.hash_name(key.map(StoreKey::key_hash));
        let remote = Arc::clone(&shared.remote);
        RedisLearn::remote(async move {
            if remote.learn(&hash, &args).await.is_err() {
                remote.unshared_lesson();
            }
            learned
        })
    }

    /// Live keys of the local bucket; waiters in the local queue plus calls holding a slot
    /// reserved in Redis.
    fn stats(&self) -> StoreStats {
        let local = self.shared.local.stats();
        StoreStats {
            live_keys: local.live_keys,
            waiters: local.waiters + self.shared.remote.reservations.load(Ordering::Relaxed),
        }
    }
}

/// What a lesson shares through Redis: what the in-memory store learns from it, but for the
/// learned rates (see `MemoryStore::learn_into`).
struct Share {
    /// A pause: the provider's hint (zero without one), an exhausted window's reset, or the
    /// end of a quota block. The bucket reads as empty at its end.
    pause: Option<Duration>,
    /// A quota block and the provider's error.
    block: Option<(Duration, Box<ApiError>)>,
    /// Units the provider says are left in the window the key is metered by.
    remaining: Option<u64>,
}

impl Share {
    fn of(lesson: &Lesson, unit: Unit) -> Share {
        let (refused, block) = match &lesson.signal {
            // A 429 empties the bucket as of now, with or without a hint.
            Signal::RateLimited { hint } => (Some(hint.unwrap_or_default()), None),
            Signal::QuotaExhausted { reset, error } => {
                (Some(*reset), Some((*reset, error.clone())))
            }
            _ => (None, None),
        };
        let snapshot = lesson.snapshot.filter(|s| !s.is_empty());
        let exhausted = snapshot
            .as_ref()
            .and_then(RateLimitSnapshot::exhausted_until);
        let pause = refused.max(exhausted);
        let remaining = snapshot
            .map(|s| match unit {
                Unit::Requests => s.requests,
                Unit::Tokens => s.tokens,
            })
            .and_then(|w| w.remaining)
            .filter(|&r| r > 0);
        Share {
            pause,
            block,
            remaining,
        }
    }

    fn is_empty(&self) -> bool {
        self.pause.is_none() && self.block.is_none() && self.remaining.is_none()
    }
}

/// The provider's quota error as the hash keeps it: what every replica returns while the block
/// runs. No request id (it named one request) and nothing that could hold a key.
fn encode_block(error: &ApiError) -> String {
    serde_json::json!({
        "status": error.status().as_u16(),
        "kind": error.kind().as_str(),
        "type": error.provider_type(),
        "code": error.provider_code(),
        "message": error.message(),
        "hint": error.retry_hint().map(|h| h.source.as_str()),
    })
    .to_string()
}

/// The provider's quota error back from the hash, its hint set to the time `left`.
fn decode_block(json: &str, left: Duration) -> ApiError {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let text = |field: &str| value.get(field).and_then(serde_json::Value::as_str);
    let status = value
        .get("status")
        .and_then(serde_json::Value::as_u64)
        .and_then(|s| StatusCode::from_u16(u16::try_from(s).ok()?).ok())
        .unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let kind = text("kind")
        .and_then(|k| k.parse().ok())
        .unwrap_or(ErrorKind::QuotaExhausted);
    let mut error = ApiError::new(kind, status);
    if let Some(t) = text("type") {
        error = error.with_provider_type(t);
    }
    if let Some(c) = text("code") {
        error = error.with_provider_code(c);
    }
    if let Some(m) = text("message") {
        error = error.with_message(m);
    }
    let source = match text("hint") {
        Some("retry_after_ms") => Some(HintSource::RetryAfterMs),
        Some("retry_after") => Some(HintSource::RetryAfter),
        Some("body") => Some(HintSource::Body),
        Some("ratelimit_reset") => Some(HintSource::RateLimitReset),
        _ => None,
    };
    if let Some(source) = source {
        error = error.with_retry_hint(RetryHint::new(left, source));
    }
    error
}

impl<K> fmt::Debug for RedisStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &*self.shared.remote)
            .field("local", &self.shared.local)
            .field("fallback_share", &self.shared.fallback_share)
            .finish()
    }
}

#[cfg(test)]
mod tests;
