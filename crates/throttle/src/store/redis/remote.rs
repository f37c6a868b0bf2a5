//! The Redis side of the store: the connection, the three scripts, one bounded round trip per
//! call, and the health state that keeps a down Redis from costing every call its timeout.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{RedisResult, Script, Value};
use tokio::time::Instant;
use towline_core::{KeyHash, Nanos};

use super::{OnUnavailable, RedisMetrics};

/// Milliseconds a hash outlives the moment its state stops mattering (clock rounding only:
/// an expired hash and a stale one decide the same).
const MARGIN_MS: u64 = 1_000;
/// The largest interval passed to the scripts (31 years per unit): keeps every product of
/// interval and burst exact in a Lua double.
const MAX_INTERVAL_US: u64 = 1 << 50;

/// The connection and everything about it, shared by the store, its futures and its tickets.
pub(super) struct Remote {
    conn: ConnectionManager,
    admit: Script,
    learn: Script,
    refund: Script,
    prefix: Box<str>,
    pub(super) timeout: Duration,
    pub(super) policy: OnUnavailable,
    origin: Instant,
    probe_every: Duration,
    /// 0 while Redis answers; else the instant (nanoseconds since `origin`, + 1) before which
    /// calls do not try it. One call per `probe_every` probes it.
    down_until: AtomicU64,
    warn_every: Duration,
    next_warn: AtomicU64,
    /// Fallbacks or refusals since the last warning.
    unwarned: AtomicU64,
    last_failure: Mutex<String>,
    counters: Counters,
    /// Reserved slots whose callers still wait.
    pub(super) reservations: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    round_trips: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    fallbacks: AtomicU64,
    refusals: AtomicU64,
    unshared_lessons: AtomicU64,
}

/// What one admission asks the script.
#[derive(Debug, Clone, Copy)]
pub(super) struct AdmitArgs {
    pub(super) interval_us: u64,
    pub(super) burst: u32,
    pub(super) cost: u32,
    /// -1: any wait; 0: reject-only.
    pub(super) max_wait_us: i64,
    pub(super) claim: bool,
    pub(super) local_pause_us: u64,
    /// Tests only: the time to decide at instead of the server's `TIME`.
    pub(super) now_us: Option<u64>,
}

impl AdmitArgs {
    /// The time a call of this cost takes out of the bucket, in microseconds.
    pub(super) fn weight_us(&self) -> u64 {
        self.interval_us * u64::from(self.cost.min(self.burst))
    }
}

/// What one lesson writes.
#[derive(Debug, Clone, Default)]
pub(super) struct LearnArgs {
    /// No admission for this long; the bucket reads as empty at its end.
    pub(super) pause_us: Option<u64>,
    /// The key's quota is gone for this long; `error` is the provider's answer as JSON.
    pub(super) block_us: Option<u64>,
    pub(super) error: String,
    pub(super) interval_us: u64,
    pub(super) burst: u32,
    /// Units the provider says are left.
    pub(super) remaining: Option<u64>,
    /// Tests only, as in [`AdmitArgs`].
    pub(super) now_us: Option<u64>,
}

/// The admission script's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    /// Admitted now.
    Go,
    /// A slot is reserved `wait` from now; `tat` names it for a refund.
    Reserved { wait: Duration, tat: i64 },
    /// Refused: the wait is longer than the caller's.
    Refused { wait: Duration, by_pause: bool },
    /// The key's quota is blocked for `left`; `error` is the provider's answer as JSON.
    Blocked { left: Duration, error: String },
}

/// Why a round trip gave no answer.
#[derive(Debug)]
pub(super) enum Failure {
    /// No answer within the per-call timeout.
    Timeout(Duration),
    /// Redis (or the connection to it) failed.
    Redis(::redis::RedisError),
    /// The script answered something it never answers.
    Reply(Value),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout(t) => write!(f, "no answer within {t:?}"),
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Reply(v) => write!(f, "unexpected script reply {v:?}"),
        }
    }
}

pub(super) struct RemoteSettings {
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) policy: OnUnavailable,
    pub(super) probe_every: Duration,
    pub(super) warn_every: Duration,
}

impl Remote {
    pub(super) fn new(conn: ConnectionManager, settings: RemoteSettings) -> Remote {
        Remote {
            conn,
            admit: Script::new(include_str!("admit.lua")),
            learn: Script::new(include_str!("learn.lua")),
            refund: Script::new(include_str!("refund.lua")),
            prefix: settings.prefix.into_boxed_str(),
            timeout: settings.timeout,
            policy: settings.policy,
            origin: Instant::now(),
            probe_every: settings.probe_every,
            down_until: AtomicU64::new(0),
            warn_every: settings.warn_every,
            next_warn: AtomicU64::new(0),
            unwarned: AtomicU64::new(0),
            last_failure: Mutex::new(String::new()),
            counters: Counters::default(),
            reservations: AtomicUsize::new(0),
        }
    }

    /// The name of a key's hash: the prefix and the key's digest, never the key itself.
    pub(super) fn hash_name(&self, key: Option<KeyHash>) -> String {
        match key {
            Some(hash) => format!("{}{hash}", self.prefix),
            None => format!("{}unkeyed", self.prefix),
        }
    }

    /// A copy of the connection, for a round trip.
    pub(super) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs the admission script.
    pub(super) async fn admit(&self, hash: &str, args: &AdmitArgs) -> Result<Reply, Failure> {
        let mut call = self.admit.prepare_invoke();
        call.key(hash)
            .arg(args.interval_us.min(MAX_INTERVAL_US))
            .arg(args.burst)
            .arg(args.cost)
            .arg(args.max_wait_us)
            .arg(if args.claim { "1" } else { "0" })
            .arg(args.local_pause_us)
            .arg(now_arg(args.now_us))
            .arg(MARGIN_MS);
        let mut conn = self.connection();
        let value = self.bounded(call.invoke_async::<Value>(&mut conn)).await?;
        parse_admit(value).inspect_err(|f| self.failed(f))
    }

    /// Runs the learning script.
    pub(super) async fn learn(&self, hash: &str, args: &LearnArgs) -> Result<(), Failure> {
        let mut call = self.learn.prepare_invoke();
        call.key(hash)
            .arg(or_none(args.pause_us))
            .arg(or_none(args.block_us))
            .arg(args.error.as_str())
            .arg(args.interval_us.min(MAX_INTERVAL_US))
            .arg(args.burst)
            .arg(or_none(args.remaining))
            .arg(now_arg(args.now_us))
            .arg(MARGIN_MS);
        let mut conn = self.connection();
        self.bounded(call.invoke_async::<Value>(&mut conn))
            .await
            .map(drop)
    }

    /// Gives back a reserved slot if no later call reserved after it.
    pub(super) async fn refund(&self, hash: &str, tat: i64, weight_us: u64) -> Result<(), Failure> {
        let mut call = self.refund.prepare_invoke();
        call.key(hash).arg(tat).arg(weight_us);
        let mut conn = self.connection();
        self.bounded(call.invoke_async::<Value>(&mut conn))
            .await
            .map(drop)
    }

    /// One round trip under the per-call timeout, with the health state kept up to date.
    async fn bounded<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, Failure> {
        let failure = match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => {
                self.succeeded();
                return Ok(value);
            }
            Ok(Err(e)) => Failure::Redis(e),
            Err(_) => Failure::Timeout(self.timeout),
        };
        self.failed(&failure);
        Err(failure)
    }

    /// Whether to call Redis now: yes while it answers; while it is down, only the one call
    /// per `probe_every` that probes it.
    pub(super) fn may_call(&self, now: Instant) -> bool {
        let down = self.down_until.load(Ordering::Acquire);
        if down == 0 {
            return true;
        }
        let now = self.nanos(now);
        now >= down
            && self
                .down_until
                .compare_exchange(
                    down,
                    now + nanos(self.probe_every),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Whether Redis answered the last round trip.
    pub(super) fn is_up(&self) -> bool {
        self.down_until.load(Ordering::Acquire) == 0
    }

    fn succeeded(&self) {
        self.counters.round_trips.fetch_add(1, Ordering::Relaxed);
        if self.down_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!(
                target: "towline::throttle",
                "Redis store reachable again: keys share their limits across the fleet"
            );
        }
    }

    fn failed(&self, failure: &Failure) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        if matches!(failure, Failure::Timeout(_)) {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        let until = self.nanos(Instant::now()) + nanos(self.probe_every);
        self.down_until.fetch_max(until, Ordering::AcqRel);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = failure.to_string();
    }

    /// An admission the local bucket decided (fail-open) or refused (fail-closed) because
    /// Redis could not answer: counted, and warned about at most once per `warn_every`.
    pub(super) fn unavailable(&self) {
        match self.policy {
            OnUnavailable::FailOpen => &self.counters.fallbacks,
            OnUnavailable::FailClosed => &self.counters.refusals,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.warn();
    }

    /// A lesson kept local because Redis could not take it.
    pub(super) fn unshared_lesson(&self) {
        self.counters
            .unshared_lessons
            .fetch_add(1, Ordering::Relaxed);
    }

    fn warn(&self) {
        self.unwarned.fetch_add(1, Ordering::Relaxed);
        let now = self.nanos(Instant::now());
        let due = self.next_warn.load(Ordering::Relaxed);
        if now < due
            || self
                .next_warn
                .compare_exchange(
                    due,
                    now + nanos(self.warn_every),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let calls = self.unwarned.swap(0, Ordering::Relaxed);
        let cause = self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match self.policy {
            OnUnavailable::FailOpen => tracing::warn!(
                target: "towline::throttle",
                calls,
                cause = %cause,
                "Redis store unavailable: keys fall back to this process's own bucket (fail open); \
                 the fleet may exceed a key's shared limit until Redis answers again"
            ),
            OnUnavailable::FailClosed => tracing::warn!(
                target: "towline::throttle",
                calls,
                cause = %cause,
                "Redis store unavailable: calls are refused with StoreUnavailable (fail closed)"
            ),
        }
    }

    pub(super) fn metrics(&self) -> RedisMetrics {
        let c = &self.counters;
        RedisMetrics {
            round_trips: c.round_trips.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            fallbacks: c.fallbacks.load(Ordering::Relaxed),
            refusals: c.refusals.load(Ordering::Relaxed),
            unshared_lessons: c.unshared_lessons.load(Ordering::Relaxed),
            available: self.is_up(),
        }
    }

    /// Nanoseconds since the origin, + 1 so that 0 keeps meaning "up".
    fn nanos(&self, at: Instant) -> u64 {
        Nanos::since(self.origin, at).0 + 1
    }
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The connection is left out: its address may carry a password.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .field("probe_every", &self.probe_every)
            .field("metrics", &self.metrics())
            .finish()
    }
}

fn nanos(d: Duration) -> u64 {
    Nanos::from(d).0
}

/// A number for a script, -1 for none.
fn or_none(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn now_arg(now_us: Option<u64>) -> String {
    now_us.map(|n| n.to_string()).unwrap_or_default()
}

/// Microseconds, rounded up: a wait or a pause is never shortened.
pub(super) fn micros_ceil(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000)).unwrap_or(u64::MAX)
}

fn parse_admit(value: Value) -> Result<Reply, Failure> {
    let Value::Array(items) = &value else {
        return Err(Failure::Reply(value));
    };
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let micros = |n: i64| Duration::from_micros(u64::try_from(n).unwrap_or(0));
    let reply = match (int(items.first()), int(items.get(1))) {
        (Some(0), _) => Some(Reply::Go),
        (Some(1), Some(wait)) => int(items.get(2)).map(|tat| Reply::Reserved {
            wait: micros(wait),
            tat,
        }),
        (Some(2), Some(wait)) => int(items.get(2)).map(|flag| Reply::Refused {
            wait: micros(wait),
            by_pause: flag == 1,
        }),
        (Some(3), Some(left)) => match items.get(2) {
            Some(Value::BulkString(bytes)) => Some(Reply::Blocked {
                left: micros(left),
                error: String::from_utf8_lossy(bytes).into_owned(),
            }),
            _ => None,
        },
        _ => None,
    };
    reply.ok_or(Failure::Reply(value))
}
