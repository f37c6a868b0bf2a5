//! Where the buckets live: the [`Store`] trait and the default [`MemoryStore`].
//!
//! A store answers two questions per call: may this call of this key go now (or when, or
//! never), and what does the provider's answer teach about the key. The in-memory store
//! answers both synchronously with a few atomics, so its futures are
//! [`std::future::Ready`]; a shared store (a Redis store for fleets sharing one quota) answers
//! with one round trip each. The throttle service drives either through the same state
//! machine, so a shared store can be added without touching it:
//!
//! - [`Store::admit`] takes everything a decision needs in an [`Ask`] (the instant, the cost,
//!   the configured quota, the deadline), so a remote store can run the whole GCRA step in one
//!   atomic script, and returns an [`Admission`]. A store that cannot be reached decides its own
//!   fallback (fail open to a local bucket, or reject with
//!   [`ThrottleReason::StoreUnavailable`](towline_core::ThrottleReason::StoreUnavailable)).
//! - A call that must wait holds the store's [`Ticket`]: its place in the key's queue. Dropping
//!   it gives the place back. The service asks again with the ticket when the ticket wakes it or
//!   the `until` instant passes.
//! - [`Store::learn`] records a [`Lesson`] (a pause, a quota block, a rate) so that every
//!   replica sharing the store obeys it.
//!
//! # Writing a shared store
//!
//! A Redis store (for fleets sharing one quota) fits this trait as follows; nothing in the
//! service changes. The `redis` module (feature `redis`) is that store:
//!
//! - `admit` evaluates one Lua script per call: it reads the server's `TIME` (replica clocks
//!   may disagree), the key's `tat` and its pause/block (one hash per key, named with a
//!   configurable prefix and the key's [`KeyHash`](towline_core::KeyHash), with a TTL of about
//!   the bucket's depth plus the longest pause), runs the same GCRA step as
//!   [`MemoryStore`] (`earliest = max(tat, now) + cost × interval − burst × interval`) and either
//!   admits, or reserves the slot when the wait fits [`Ask::deadline`] and returns the wait,
//!   or refuses. Its `Admit` future is the round trip under a per-call timeout.
//! - Its `Ticket` can be an enum: a reservation (never wakes; `until` is the reserved slot) or,
//!   on the fallback path, a [`MemoryTicket`].
//! - `learn` writes pauses and quota blocks (`HSET` + `PEXPIREAT`) so that one replica's 429
//!   holds the key for all; the learned rate may stay local.
//! - When Redis is slow or down, the store decides: fail open by delegating to an inner
//!   [`MemoryStore`] (the default), or refuse with
//!   [`ThrottleReason::StoreUnavailable`](towline_core::ThrottleReason). The request is never
//!   lost and never hangs on the store.

mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

use std::fmt;
use std::future::Future;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;
use towline_core::{ApiError, Error, ErrorKind, RateLimitSnapshot};

use crate::gcra::Gcra;

#[cfg(feature = "redis")]
pub(crate) use memory::LocalView;
pub use memory::{MemoryStore, MemoryTicket};

/// The configured limit of one key: `per_second` units (calls, or cost units such as tokens)
/// per second, up to `burst` units at once.
///
/// Values are checked when the layer is built (rate finite and > 0, burst ≥ 1).
///
/// ```
/// use towline_throttle::Quota;
///
/// let rpm = Quota::per_minute(600.0, 10);
/// assert_eq!(rpm.per_second(), 10.0);
/// assert_eq!(rpm.burst(), 10);
/// ```
#[derive(Clone, Copy)]
pub struct Quota {
    per_second: f64,
    burst: u32,
    /// Its bucket's interval (`1 / rate` in nanoseconds), computed once here rather than by a
    /// division and a rounding on every admission.
    interval: u64,
}

impl Quota {
    /// `per_second` units per second, `burst` at once.
    pub const fn new(per_second: f64, burst: u32) -> Self {
        Quota {
            per_second,
            burst,
            interval: Gcra::from_rate(per_second, burst).interval,
        }
    }

    /// `per_minute` units per minute, `burst` at once.
    pub fn per_minute(per_minute: f64, burst: u32) -> Self {
        Quota::new(per_minute / 60.0, burst)
    }

    /// Units per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Units the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The GCRA bucket of this quota.
    #[inline]
    pub(crate) fn gcra(&self) -> Gcra {
        Gcra {
            interval: self.interval,
            burst: self.burst.max(1),
        }
    }
}

// By hand, to compare and print what the user gave; the bucket follows from it.
impl PartialEq for Quota {
    fn eq(&self, other: &Self) -> bool {
        self.per_second == other.per_second && self.burst == other.burst
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quota")
            .field("per_second", &self.per_second)
            .field("burst", &self.burst)
            .finish()
    }
}

/// Everything a store needs to decide one admission.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Ask {
    /// The instant of the decision.
    pub now: Instant,
    /// The call's cost in units (1 for a plain call, estimated tokens for a token meter).
    pub cost: u32,
    /// The configured quota of the key (after per-key overrides), or `None` when the key has no
    /// configured rate and only what the provider taught applies.
    pub quota: Option<Quota>,
    /// The latest instant the call may be admitted at; `None` waits as long as it takes.
    pub deadline: Option<Instant>,
    /// Whether the caller never waits (reject-only mode).
    pub reject_only: bool,
}

impl Ask {
    /// An ask for a call of `cost` at `now` with no configured quota, no deadline.
    ///
    /// ```
    /// use towline_throttle::{Ask, Quota};
    /// let ask = Ask::new(tokio::time::Instant::now(), 1).with_quota(Some(Quota::new(5.0, 1)));
    /// assert_eq!(ask.cost, 1);
    /// ```
    pub fn new(now: Instant, cost: u32) -> Self {
        Ask {
            now,
            cost,
            quota: None,
            deadline: None,
            reject_only: false,
        }
    }

    /// Sets the configured quota.
    pub fn with_quota(mut self, quota: Option<Quota>) -> Self {
        self.quota = quota;
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Never waits.
    pub fn reject_only(mut self, reject_only: bool) -> Self {
        self.reject_only = reject_only;
        self
    }

    /// The same ask at a later instant.
    pub fn at(mut self, now: Instant) -> Self {
        self.now = now;
        self
    }
}

/// A store's answer to an [`Ask`].
#[derive(Debug)]
pub enum Admission<T> {
    /// Send the call now.
    Go(Grant),
    /// Not yet. Ask again, with `ticket`, once `until` has passed or the ticket wakes the task
    /// (see [`Ticket::register`]). `None` means only the ticket will wake it.
    Wait {
        /// When to ask again at the latest.
        until: Option<Instant>,
        /// The call's place in the key's queue.
        ticket: T,
    },
    /// Refused: a [`towline_core::Error::Throttled`], or the provider's own quota error while
    /// the key is blocked.
    Reject(Error),
}

/// What an admitted call should know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The key learns from successes too (it has a learned rate): report them, and every other
    /// answer that is no rate signal ([`Signal::Other`]: it passed the provider's limiter), with
    /// [`Store::learn`]. When false, such an answer without rate-limit headers teaches nothing
    /// and the service skips the call to `learn`.
    pub learns_from_success: bool,
}

/// A waiting call's place in its key's queue. Dropping it gives the place back.
pub trait Ticket: Send + Sync + 'static {
    /// Wakes `waker` when the place's situation changes (it reached the front of the queue,
    /// the key was paused or blocked). If that already happened since the ticket was issued,
    /// wakes it at once, so no notification is lost between an answer and this call.
    fn register(&self, waker: &Waker);
}

/// What a call's outcome teaches about its key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lesson {
    /// When the answer arrived.
    pub now: Instant,
    /// When the call was admitted (sent).
    pub sent_at: Instant,
    /// The class of the answer.
    pub signal: Signal,
    /// The rate-limit headers of the answer, if any.
    pub snapshot: Option<RateLimitSnapshot>,
}

impl Lesson {
    /// Reads the lesson out of a call's outcome: the response's [`RateLimitSnapshot`]
    /// extension, or the error's class, hint and snapshot.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::StatusCode;
    /// use towline_core::{ApiError, Error, ErrorKind, HintSource, RetryHint};
    /// use towline_throttle::{Lesson, Signal};
    ///
    /// let now = tokio::time::Instant::now();
    /// let err = Error::from(ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
    ///     .with_retry_hint(RetryHint::new(Duration::from_secs(2), HintSource::RetryAfter)));
    /// let lesson = Lesson::from_error(&err, now, now);
    /// assert!(matches!(lesson.signal, Signal::RateLimited { hint: Some(h) } if h == Duration::from_secs(2)));
    /// ```
    pub fn from_error(err: &Error, sent_at: Instant, now: Instant) -> Lesson {
        let api = match err {
            Error::Api(api) => Some(&**api),
            _ => None,
        };
        let snapshot = api.and_then(ApiError::rate_limit).copied();
        let signal = match api {
            Some(api) => Signal::of(api, snapshot.as_ref()),
            None => Signal::Other,
        };
        Lesson {
            now,
            sent_at,
            signal,
            snapshot,
        }
    }

    /// The lesson of a success that carried `snapshot`.
    pub fn success(snapshot: Option<RateLimitSnapshot>, sent_at: Instant, now: Instant) -> Lesson {
        Lesson {
            now,
            sent_at,
            signal: Signal::Success,
            snapshot,
        }
    }
}

/// The class of an answer, as far as the throttle cares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Signal {
    /// A success.
    Success,
    /// The key's rate was exceeded; pause for `hint` if the provider gave one.
    RateLimited {
        /// The provider's retry hint.
        hint: Option<Duration>,
    },
    /// The provider is overloaded: slow the key, no pause.
    Overloaded,
    /// The key's quota is gone until `reset`: fail its calls locally with `error` until then.
    QuotaExhausted {
        /// How long until the quota resets, from [`Lesson::now`].
        reset: Duration,
        /// The provider's error, returned to every call of the key until the reset.
        error: Box<ApiError>,
    },
    /// Anything else (a server error, a timeout, ...): no rate signal. It still passed the
    /// provider's limiter, which a key learning its rate counts.
    Other,
}

impl Signal {
    fn of(api: &ApiError, snapshot: Option<&RateLimitSnapshot>) -> Signal {
        match api.kind() {
            ErrorKind::RateLimited => Signal::RateLimited {
                hint: api.retry_after(),
            },
            ErrorKind::Overloaded => Signal::Overloaded,
            ErrorKind::QuotaExhausted => {
                let reset = api
                    .retry_after()
                    .or_else(|| snapshot.and_then(RateLimitSnapshot::exhausted_until))
                    .filter(|d| !d.is_zero());
                match reset {
                    Some(reset) => Signal::QuotaExhausted {
                        reset,
                        error: Box::new(api.clone()),
                    },
                    None => Signal::Other,
                }
            }
            _ => Signal::Other,
        }
    }
}

/// What a store did with a [`Lesson`], for the service to report as events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Learned {
    /// The key was paused (or blocked) for this long, because of an answer of this class.
    pub paused: Option<(Duration, ErrorKind)>,
    /// The key's learned rate changed to this many units per second.
    pub rate: Option<f64>,
}

/// Counts a store can report, e.g. to check that nothing is left behind after a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Keys with state in memory.
    pub live_keys: usize,
    /// Calls waiting in a queue.
    pub waiters: usize,
}

/// Where the throttle keeps its per-key state. See the [module docs](self).
///
/// Implemented by [`MemoryStore`]; a shared store implements it with remote round trips.
pub trait Store<K>: Send + Sync + 'static {
    /// A waiting call's place in its key's queue.
    type Ticket: Ticket;
    /// The answer to [`Store::admit`]. `Ready` for the in-memory store.
    type Admit: Future<Output = Admission<Self::Ticket>> + Send + Unpin + 'static;
    /// The completion of [`Store::learn`]. `Ready` for the in-memory store.
    type Learn: Future<Output = Learned> + Send + Unpin + 'static;

    /// May a call of `key` (`None`: the shared bucket of calls without a key) go now?
    /// `ticket` is the call's place from an earlier [`Admission::Wait`].
    fn admit(&self, key: Option<&K>, ask: &Ask, ticket: Option<Self::Ticket>) -> Self::Admit;

    /// Records what an answer taught about `key`. `quota` is the key's configured quota.
    fn learn(&self, key: Option<&K>, quota: Option<Quota>, lesson: Lesson) -> Self::Learn;

    /// Live keys and waiters.
    fn stats(&self) -> StoreStats;
}
