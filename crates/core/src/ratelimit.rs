use std::time::Duration;

/// What a provider said about one rate-limit window (requests or tokens) in a response.
///
/// Every header form is reduced to this: `x-ratelimit-{limit,remaining,reset}-*` with
/// integers, Go-style durations (`6m0s`), epoch seconds or milliseconds, or RFC 3339 instants
/// (Anthropic). `reset` is always relative to the moment the response was received. A limit of
/// `-1` (Azure: unknown) is stored as `None`.
///
/// ```
/// use std::time::Duration;
/// use towline_core::RateLimitWindow;
///
/// let w = RateLimitWindow { limit: Some(60), remaining: Some(0), reset: Some(Duration::from_secs(12)) };
/// assert!(w.is_exhausted());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitWindow {
    /// The most the window allows (`x-ratelimit-limit-*`).
    pub limit: Option<u64>,
    /// What is left in the window (`x-ratelimit-remaining-*`).
    pub remaining: Option<u64>,
    /// When the window refills, from the moment the response was received.
    pub reset: Option<Duration>,
}

impl RateLimitWindow {
    /// Whether the provider said nothing at all about this window.
    ///
    /// ```
    /// assert!(towline_core::RateLimitWindow::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.limit.is_none() && self.remaining.is_none() && self.reset.is_none()
    }

    /// Whether the window is used up (`remaining == 0`), or has no quota at all (`limit == 0`,
    /// as Mistral reports a key without access).
    ///
    /// ```
    /// use towline_core::RateLimitWindow;
    /// assert!(RateLimitWindow { limit: Some(0), ..Default::default() }.is_exhausted());
    /// assert!(!RateLimitWindow { remaining: Some(3), ..Default::default() }.is_exhausted());
    /// ```
    pub fn is_exhausted(&self) -> bool {
        self.remaining == Some(0) || self.limit == Some(0)
    }
}

/// The rate-limit state a provider reported with a response, success or error.
///
/// The Normalize layer attaches it to successful responses as an `http::Extensions` value, and
/// to errors through [`ApiError::rate_limit`](crate::ApiError::rate_limit), so that the
/// throttle can learn the key's real limit from either.
///
/// ```
/// use std::time::Duration;
/// use towline_core::{RateLimitSnapshot, RateLimitWindow};
///
/// let snapshot = RateLimitSnapshot {
///     requests: RateLimitWindow { limit: Some(60), remaining: Some(0), reset: Some(Duration::from_secs(1)) },
///     tokens: RateLimitWindow::default(),
/// };
/// assert_eq!(snapshot.exhausted_until(), Some(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// The requests-per-window limit.
    pub requests: RateLimitWindow,
    /// The tokens-per-window limit.
    pub tokens: RateLimitWindow,
}

impl RateLimitSnapshot {
    /// Whether the provider reported nothing.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty() && self.tokens.is_empty()
    }

    /// If a window is used up, how long until the last exhausted one resets (`Duration::ZERO`
    /// when it is exhausted but no reset was sent).
    pub fn exhausted_until(&self) -> Option<Duration> {
        [self.requests, self.tokens]
            .into_iter()
            .filter(RateLimitWindow::is_exhausted)
            .map(|w| w.reset.unwrap_or_default())
            .max()
    }
}

/// Where a retry hint came from, in order of precedence (highest first).
///
/// ```
/// use towline_core::HintSource;
/// assert!(HintSource::RetryAfterMs > HintSource::RetryAfter);
/// assert!(HintSource::RetryAfter > HintSource::Body);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HintSource {
    /// A reset time from the rate-limit headers of an exhausted window.
    RateLimitReset,
    /// A hint inside the body: Gemini `RetryInfo.retryDelay`, aiapi `data.retry_after`,
    /// "try again in 23.5s", "retry after 6 seconds".
    Body,
    /// The standard `Retry-After` header, in seconds or as an HTTP-date.
    RetryAfter,
    /// The `retry-after-ms` header (OpenAI, Azure), which takes precedence.
    RetryAfterMs,
}

impl HintSource {
    /// A short name for reports and spans.
    pub const fn as_str(self) -> &'static str {
        match self {
            HintSource::RateLimitReset => "ratelimit_reset",
            HintSource::Body => "body",
            HintSource::RetryAfter => "retry_after",
            HintSource::RetryAfterMs => "retry_after_ms",
        }
    }
}

/// The provider's word on when to try again.
///
/// ```
/// use std::time::Duration;
/// use towline_core::{HintSource, RetryHint};
///
/// let hint = RetryHint::new(Duration::from_millis(1500), HintSource::RetryAfterMs);
/// assert_eq!(hint.delay, Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryHint {
    /// How long to wait, from the moment the response was received.
    pub delay: Duration,
    /// Which header or body field said so.
    pub source: HintSource,
}

impl RetryHint {
    /// A hint of `delay` from `source`.
    pub const fn new(delay: Duration, source: HintSource) -> Self {
        RetryHint { delay, source }
    }
}
