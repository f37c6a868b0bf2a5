//! The validated builder of [`RedisStore`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use towline_core::KeyHash;

use super::remote::{Remote, RemoteSettings};
use super::{RedisStore, Shared, StoreKey};
use crate::{ConfigError, MemoryStore, Unit};

/// What the store does when Redis does not answer within the timeout (down, slow, or
/// unreachable).
///
/// ```
/// use towline_throttle::store::redis::OnUnavailable;
/// assert_eq!(OnUnavailable::default(), OnUnavailable::FailOpen);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OnUnavailable {
    /// Decide with this process's own in-memory bucket (the default): calls keep flowing, each
    /// replica enforcing the key's quota (times
    /// [`fallback_share`](RedisStoreBuilder::fallback_share)) on its own, so the fleet as a
    /// whole may exceed the shared limit while Redis is away.
    #[default]
    FailOpen,
    /// Refuse the call with
    /// [`ThrottleReason::StoreUnavailable`](towline_core::ThrottleReason::StoreUnavailable)
    /// (within the timeout): the shared limit is never exceeded, at the price of failing
    /// calls while Redis is away.
    FailClosed,
}

/// Builds a [`RedisStore`]; every setting is checked by [`RedisStoreBuilder::build`].
///
/// Defaults: prefix `towline:throttle:`, a 50 ms timeout per round trip, fail open, one probe
/// of a down Redis per second, at most one warning per 10 s, a full quota per replica while
/// falling back, rates learned from the `x-ratelimit-*-requests` headers.
///
/// ```
/// use std::time::Duration;
/// use towline_throttle::store::redis::{OnUnavailable, RedisStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap(); // nothing connects yet
/// let store = RedisStore::builder(client)
///     .prefix("myapp:llm:")
///     .timeout(Duration::from_millis(20))
///     .on_unavailable(OnUnavailable::FailOpen)
///     .fallback_share(0.25) // four replicas: each takes a quarter of the quota alone
///     .build()
///     .unwrap();
/// # let _: RedisStore = store;
///
/// let err = RedisStore::<towline_core::KeyHash>::builder(redis::Client::open("redis://127.0.0.1/").unwrap())
///     .timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.setting(), "timeout");
/// # }
/// ```
pub struct RedisStoreBuilder<K = KeyHash> {
    client: ::redis::Client,
    prefix: String,
    timeout: Duration,
    policy: OnUnavailable,
    probe_every: Duration,
    warn_every: Duration,
    fallback_share: f64,
    unit: Unit,
    connection: Option<ConnectionManagerConfig>,
    _key: PhantomData<fn() -> K>,
}

impl<K> RedisStoreBuilder<K> {
    pub(super) fn new(client: ::redis::Client) -> Self {
        RedisStoreBuilder {
            client,
            prefix: "towline:throttle:".to_owned(),
            timeout: Duration::from_millis(50),
            policy: OnUnavailable::FailOpen,
            probe_every: Duration::from_secs(1),
            warn_every: Duration::from_secs(10),
            fallback_share: 1.0,
            unit: Unit::Requests,
            connection: None,
            _key: PhantomData,
        }
    }

    /// The prefix of every hash the store writes (not empty; default `towline:throttle:`).
    /// Replicas sharing a quota use the same prefix; applications sharing one Redis use
    /// different ones.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one round trip may take (> 0, default 50 ms). A call never waits longer on
    /// Redis: past it, the [`OnUnavailable`] policy decides.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do when Redis does not answer (default [`OnUnavailable::FailOpen`]).
    pub fn on_unavailable(mut self, policy: OnUnavailable) -> Self {
        self.policy = policy;
        self
    }

    /// Refuse calls with `StoreUnavailable` while Redis is away.
    pub fn fail_closed(self) -> Self {
        self.on_unavailable(OnUnavailable::FailClosed)
    }

    /// After a failed round trip, Redis is left alone for this long (> 0, default 1 s): calls
    /// meanwhile go straight to the [`OnUnavailable`] policy instead of each paying the
    /// timeout, and one call per period probes it. The shared limit resumes with the first
    /// probe that Redis answers.
    pub fn probe_every(mut self, period: Duration) -> Self {
        self.probe_every = period;
        self
    }

    /// At most one warning per period while Redis is away (> 0, default 10 s); each says how
    /// many calls fell back (or were refused) since the last.
    pub fn warn_every(mut self, period: Duration) -> Self {
        self.warn_every = period;
        self
    }

    /// The part of a key's quota each replica takes on its own while falling back, in
    /// `(0, 1]` (default 1: the whole quota). With `n` replicas, `1 / n` keeps the fleet
    /// within the shared limit during an outage (burst rounded up, at least 1).
    pub fn fallback_share(mut self, share: f64) -> Self {
        self.fallback_share = share;
        self
    }

    /// Which of the provider's windows (`x-ratelimit-*-requests` or `-tokens`) the key's rate
    /// is learned from; match the throttle's [`Unit`] (default [`Unit::Requests`]).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = unit;
        self
    }

    /// The connection manager's own settings (reconnect backoff, connection timeout, pipeline
    /// buffer). The default reconnects within a second once Redis is back: retries from
    /// 50 ms up to 1 s apart, a 1 s connection timeout, room for 1024 pipelined calls.
    pub fn connection(mut self, config: ConnectionManagerConfig) -> Self {
        self.connection = Some(config);
        self
    }

    /// Checks every setting and builds the store. Nothing connects yet: the connection is made
    /// by the first call (so a store can be built while Redis is still starting; until it
    /// answers, the [`OnUnavailable`] policy applies).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the connection manager spawns its reconnect task).
    pub fn build(self) -> Result<RedisStore<K>, ConfigError>
    where
        K: StoreKey + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    {
        if self.prefix.is_empty() {
            return Err(ConfigError::new("prefix", "must not be empty"));
        }
        for (setting, value) in [
            ("timeout", self.timeout),
            ("probe_every", self.probe_every),
            ("warn_every", self.warn_every),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(setting, "must be longer than zero"));
            }
        }
        let share = self.fallback_share;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return Err(ConfigError::new(
                "fallback_share",
                format!("must lie in (0, 1], got {share}"),
            ));
        }
        let config = self.connection.unwrap_or_else(default_connection);
        let conn = ConnectionManager::new_lazy_with_config(self.client, config)
            .map_err(|e| ConfigError::new("connection", e.to_string()))?;
        let remote = Remote::new(
            conn,
            RemoteSettings {
                prefix: self.prefix,
                timeout: self.timeout,
                policy: self.policy,
                probe_every: self.probe_every,
                warn_every: self.warn_every,
            },
        );
        // The local bucket: fallback, and what this process learns (pauses, header rates).
        // No adaptive pacing: it measures this process's own sends, a fraction of the key's.
        let local = MemoryStore::with_settings(tokio::time::Instant::now(), None, self.unit);
        Ok(RedisStore {
            shared: Arc::new(Shared {
                remote: Arc::new(remote),
                local,
                fallback_share: share,
                unit: self.unit,
            }),
        })
    }
}

fn default_connection() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(4)
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_pipeline_buffer_size(1024)
}

impl<K> fmt::Debug for RedisStoreBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client is left out: its address may carry a password.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("policy", &self.policy)
            .field("probe_every", &self.probe_every)
            .field("warn_every", &self.warn_every)
            .field("fallback_share", &self.fallback_share)
            .field("unit", &self.unit)
            .finish()
    }
}
