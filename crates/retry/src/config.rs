//! The retry layer's settings and their validating builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fastrand::Rng;
use http::HeaderName;

use crate::policy::policy_name;
use crate::{Backoff, ConfigError, DefaultPolicy, Jitter, Policy, RetryBudget, RetryLayer};

/// The default largest provider hint the layer waits for: two minutes. A longer one fails at
/// once; providers that ask for more usually mean a quota, not a rate limit.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The default largest request body kept for replay: 1 MiB.
pub const DEFAULT_REPLAY_LIMIT: usize = 1024 * 1024;
/// The default number of retries per call.
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The validated settings, shared by a layer and every service it built.
pub(crate) struct Config {
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_retry_after: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) replay_limit: usize,
    pub(crate) idempotency_header: Option<HeaderName>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) seed: Option<Seed>,
}

/// A seeded source of per-call random generators: call `k` (in the order calls first need
/// randomness) gets a generator seeded from `(seed, k)`, so tests are reproducible.
pub(crate) struct Seed {
    base: u64,
    next: AtomicU64,
}

impl Config {
    /// A random generator for one call: seeded when a seed was configured, otherwise seeded
    /// from the thread-local generator (no shared state, no lock).
    pub(crate) fn rng(&self) -> Rng {
        match &self.seed {
            Some(seed) => {
                let k = seed.next.fetch_add(1, Ordering::Relaxed);
                Rng::with_seed(seed.base ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            }
            None => Rng::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("max_retry_after", &self.max_retry_after)
            .field("deadline", &self.deadline)
            .field("replay_limit", &self.replay_limit)
            .field("idempotency_header", &self.idempotency_header)
            .field("budget", &self.budget)
            .field("seeded", &self.seed.is_some())
            .finish()
    }
}

/// The configuration and the policy, behind one `Arc`.
pub(crate) struct Shared<P> {
    pub(crate) config: Config,
    pub(crate) policy: P,
}

impl<P> fmt::Debug for Shared<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("policy", &policy_name(&self.policy))
            .finish()
    }
}

#[derive(Debug, Clone)]
enum BudgetChoice {
    Build {
        ratio: f64,
        floor: u32,
        ttl: Duration,
    },
    Shared(RetryBudget),
    Disabled,
}

/// Builds a [`RetryLayer`], checking every setting; see [`RetryLayer::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`max_retries`](Self::max_retries) | 3 |
/// | [`budget_ratio`](Self::budget_ratio) / [`budget_floor`](Self::budget_floor) / [`budget_ttl`](Self::budget_ttl) | 0.2 / 10 per s / 10 s |
/// | [`jitter`](Self::jitter) / [`backoff_base`](Self::backoff_base) / [`backoff_max`](Self::backoff_max) | decorrelated / 500 ms / 8 s |
/// | [`max_retry_after`](Self::max_retry_after) | 120 s |
/// | [`deadline`](Self::deadline) | none |
/// | [`replay_limit`](Self::replay_limit) | 1 MiB |
/// | [`idempotency_key`](Self::idempotency_key) | off |
/// | [`policy`](Self::policy) | [`DefaultPolicy`]: the error's class decides |
///
/// ```
/// use std::time::Duration;
/// use towline_retry::{Jitter, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .max_retries(5)
///     .budget_ratio(0.1)
///     .jitter(Jitter::Full)
///     .backoff_base(Duration::from_millis(200))
///     .deadline(Duration::from_secs(60))
///     .idempotency_key(true)
///     .build()
///     .expect("valid settings");
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct RetryLayerBuilder<P = DefaultPolicy> {
    max_retries: u32,
    jitter: Jitter,
    backoff_base: Duration,
    backoff_max: Duration,
    max_retry_after: Duration,
    deadline: Option<Duration>,
    replay_limit: usize,
    idempotency_header: Option<HeaderName>,
    budget: BudgetChoice,
    seed: Option<u64>,
    policy: P,
}

impl RetryLayerBuilder {
    pub(crate) fn new() -> Self {
        RetryLayerBuilder {
            max_retries: DEFAULT_MAX_RETRIES,
            jitter: Jitter::default(),
            backoff_base: Backoff::DEFAULT_BASE,
            backoff_max: Backoff::DEFAULT_MAX,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            deadline: None,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            idempotency_header: None,
            budget: BudgetChoice::Build {
                ratio: RetryBudget::DEFAULT_RATIO,
                floor: RetryBudget::DEFAULT_FLOOR,
                ttl: RetryBudget::DEFAULT_TTL,
            },
            seed: None,
            policy: DefaultPolicy,
        }
    }
}

impl<P: Policy> RetryLayerBuilder<P> {
    /// Retries per call after the first attempt (the `--max-retries` of the `towline`
    /// command); 0 disables retries. Default 3.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The jitter of the backoff. Default [`Jitter::Decorrelated`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The first backoff delay; must be above zero. Default 500 ms.
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// The longest computed backoff delay; must be at least `backoff_base`. Default 8 s.
    /// (A provider's hint may be longer, up to [`max_retry_after`](Self::max_retry_after).)
    pub fn backoff_max(mut self, max: Duration) -> Self {
        self.backoff_max = max;
        self
    }

    /// The longest provider hint (`retry-after-ms`, `Retry-After`, body hint) the layer waits
    /// for; a longer one returns the error at once instead of sleeping. Default 120 s.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The overall deadline of a call, attempts and waits together. When it passes, the call
    /// fails with [`Error::DeadlineExceeded`](towline_core::Error::DeadlineExceeded); a wait
    /// that would end past it is not started. Default: none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The largest request body kept in memory for a replay. A larger (streaming) body is sent
    /// once, its buffered prefix first, and is never retried. Default 1 MiB.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Adds an `Idempotency-Key` header (a random UUID v4) to calls that have none, the same on
    /// every attempt of a call, so that a provider can recognize a retry. Default off.
    pub fn idempotency_key(mut self, enabled: bool) -> Self {
        self.idempotency_header = enabled.then(|| HeaderName::from_static("idempotency-key"));
        self
    }

    /// Like [`idempotency_key(true)`](Self::idempotency_key) with another header name.
    pub fn idempotency_header(mut self, name: HeaderName) -> Self {
        self.idempotency_header = Some(name);
        self
    }

    /// The fraction of calls that may be retried, 0 to 1 (the `--retry-budget` of the
    /// `towline` command). Default 0.2.
    pub fn budget_ratio(mut self, ratio: f64) -> Self {
        let (_, floor, ttl) = self.budget_parts();
        self.budget = BudgetChoice::Build { ratio, floor, ttl };
        self
    }

    /// Retries per second always allowed, so that a quiet client can retry at all. Default 10.
    pub fn budget_floor(mut self, per_second: u32) -> Self {
        let (ratio, _, ttl) = self.budget_parts();
        self.budget = BudgetChoice::Build {
            ratio,
            floor: per_second,
            ttl,
        };
        self
    }

    /// How long a call's deposit counts, in whole seconds from 1 s to 1 h. Default 10 s.
    pub fn budget_ttl(mut self, ttl: Duration) -> Self {
        let (ratio, floor, _) = self.budget_parts();
        self.budget = BudgetChoice::Build { ratio, floor, ttl };
        self
    }

    /// Uses an existing budget, to share it with other layers (clones of one layer always
    /// share theirs).
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// No budget: only `max_retries` bounds retries. Not recommended: an outage then
    /// multiplies load by `1 + max_retries`.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::Disabled;
        self
    }

    /// Seeds the jitter and idempotency keys, for reproducible tests. Default: seeded from
    /// the thread-local generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Overrides the retry decision with `policy`; see [`Policy`].
    pub fn policy<Q: Policy>(self, policy: Q) -> RetryLayerBuilder<Q> {
        RetryLayerBuilder {
            max_retries: self.max_retries,
            jitter: self.jitter,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            max_retry_after: self.max_retry_after,
            deadline: self.deadline,
            replay_limit: self.replay_limit,
            idempotency_header: self.idempotency_header,
            budget: self.budget,
            seed: self.seed,
            policy,
        }
    }

    /// Checks every setting and builds the layer; the error names the first bad setting.
    pub fn build(self) -> Result<RetryLayer<P>, ConfigError> {
        let backoff = Backoff::new(self.jitter, self.backoff_base, self.backoff_max)?;
        if self.max_retry_after.is_zero() {
            return Err(ConfigError::new(
                "max_retry_after",
                "must be longer than zero",
            ));
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("deadline", "must be longer than zero"));
        }
        let budget = match self.budget {
            BudgetChoice::Build { ratio, floor, ttl } => Some(RetryBudget::new(ratio, floor, ttl)?),
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::Disabled => None,
        };
        let config = Config {
            max_retries: self.max_retries,
            backoff,
            max_retry_after: self.max_retry_after,
            deadline: self.deadline,
            replay_limit: self.replay_limit,
            idempotency_header: self.idempotency_header,
            budget,
            seed: self.seed.map(|base| Seed {
                base,
                next: AtomicU64::new(0),
            }),
        };
        Ok(RetryLayer::from_shared(Arc::new(Shared {
            config,
            policy: self.policy,
        })))
    }

    fn budget_parts(&self) -> (f64, u32, Duration) {
        match &self.budget {
            BudgetChoice::Build { ratio, floor, ttl } => (*ratio, *floor, *ttl),
            BudgetChoice::Shared(b) => (b.ratio(), b.floor(), b.ttl()),
            BudgetChoice::Disabled => (
                RetryBudget::DEFAULT_RATIO,
                RetryBudget::DEFAULT_FLOOR,
                RetryBudget::DEFAULT_TTL,
            ),
        }
    }
}

impl<P> fmt::Debug for RetryLayerBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayerBuilder")
            .field("max_retries", &self.max_retries)
            .field("jitter", &self.jitter)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_retry_after", &self.max_retry_after)
            .field("deadline", &self.deadline)
            .field("replay_limit", &self.replay_limit)
            .field("idempotency_header", &self.idempotency_header)
            .field("budget", &self.budget)
            .field("seeded", &self.seed.is_some())
            .field("policy", &policy_name(&self.policy))
            .finish()
    }
}
