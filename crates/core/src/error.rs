use std::fmt;
use std::time::Duration;

use crate::{ApiError, ErrorKind};

/// A type-erased error, as tower uses for errors it passes along without inspecting.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The one error every towline layer returns.
///
/// It is either the provider's answer ([`Error::Api`]), a failure on the way to the provider
/// ([`Error::Transport`], [`Error::Timeout`], [`Error::StreamInterrupted`]), or a decision a
/// towline layer took ([`Error::Throttled`], [`Error::CircuitOpen`], [`Error::SessionQueueFull`],
/// [`Error::DeadlineExceeded`], [`Error::BudgetExhausted`]). Whatever it is, [`Error::kind`]
/// classifies it, [`Error::is_retryable`] says whether trying again can help,
/// [`Error::retry_after`] says when, and [`Error::user_message`] says it to an end user.
///
/// Neither `Display` nor `Debug` ever prints a credential: no variant holds request headers.
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use towline_core::{ApiError, Error, ErrorKind};
///
/// let err = Error::from(ApiError::new(ErrorKind::Overloaded, StatusCode::from_u16(529).unwrap()));
/// assert_eq!(err.kind(), ErrorKind::Overloaded);
/// assert!(err.is_retryable());
///
/// let open = Error::circuit_open(Duration::from_secs(5));
/// assert_eq!(open.kind(), ErrorKind::CircuitOpen);
/// assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
/// assert!(!open.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider answered with an error.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The request could not be sent or no response arrived (connect refused, reset, ...).
    #[error("transport error: {0}")]
    Transport(#[source] BoxError),
    /// An attempt took longer than its timeout.
    #[error("attempt timed out after {0:?}")]
    Timeout(Duration),
    /// A streamed response failed after output had been delivered; the cause inside says how.
    #[error("stream interrupted after output was delivered: {0}")]
    StreamInterrupted(#[source] Box<Error>),
    /// The per-key throttle would not wait that long.
    #[error("{0}")]
    Throttled(Throttled),
    /// The circuit breaker for this endpoint is open.
    #[error("{0}")]
    CircuitOpen(CircuitOpen),
    /// The conversation's queue is full, or the request waited in it too long.
    #[error("{0}")]
    SessionQueueFull(SessionQueueFull),
    /// The call's overall deadline passed; the last attempt's error is inside, if there was one.
    #[error("deadline exceeded: {0}")]
    DeadlineExceeded(GaveUp),
    /// The shared retry budget had no retry left; the last attempt's error is inside.
    #[error("retry budget exhausted: {0}")]
    BudgetExhausted(GaveUp),
}

impl Error {
    /// A transport failure caused by `source`.
    ///
    /// ```
    /// let err = towline_core::Error::transport(std::io::Error::other("connection reset"));
    /// assert_eq!(err.kind(), towline_core::ErrorKind::Transport);
    /// ```
    pub fn transport(source: impl Into<BoxError>) -> Self {
        Error::Transport(source.into())
    }

    /// An attempt that hit its `timeout`.
    pub fn timeout(timeout: Duration) -> Self {
        Error::Timeout(timeout)
    }

    /// A stream that failed with `cause` after output had been delivered.
    pub fn stream_interrupted(cause: Error) -> Self {
        Error::StreamInterrupted(Box::new(cause))
    }

    /// A throttle refusal; `retry_after` is the earliest time the key could admit the call.
    pub fn throttled(reason: ThrottleReason, retry_after: Option<Duration>) -> Self {
        Error::Throttled(Throttled {
            reason,
            retry_after,
        })
    }

    /// An open circuit whose next probe is allowed in `retry_after`.
    pub fn circuit_open(retry_after: Duration) -> Self {
        Error::CircuitOpen(CircuitOpen { retry_after })
    }

    /// A session queue refusal.
    pub fn session_queue_full(reason: SessionQueueReason) -> Self {
        Error::SessionQueueFull(SessionQueueFull { reason })
    }

    /// The overall deadline passed after `attempts` attempts, the last one failing with `last`.
    pub fn deadline_exceeded(attempts: u32, last: Option<Error>) -> Self {
        Error::DeadlineExceeded(GaveUp::new(attempts, last))
    }

    /// The retry budget was empty after `attempts` attempts, the last one failing with `last`.
    pub fn budget_exhausted(attempts: u32, last: Error) -> Self {
        Error::BudgetExhausted(GaveUp::new(attempts, Some(last)))
    }

    /// The unified class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api(api) => api.kind(),
            Error::Transport(_) => ErrorKind::Transport,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::StreamInterrupted(_) => ErrorKind::StreamInterrupted,
            Error::Throttled(_) => ErrorKind::Throttled,
            Error::CircuitOpen(_) => ErrorKind::CircuitOpen,
            Error::SessionQueueFull(_) => ErrorKind::SessionQueueFull,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::BudgetExhausted(_) => ErrorKind::BudgetExhausted,
        }
    }

    /// Whether sending the same request again may succeed. Local decisions are final: the layer
    /// that took them already waited as long as it was configured to.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(api) => api.is_retryable(),
            other => other.kind().is_retryable(),
        }
    }

    /// How long to wait before trying again, when the provider or a layer said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(api) => api.retry_after(),
            Error::Throttled(t) => t.retry_after,
            Error::CircuitOpen(c) => Some(c.retry_after),
            Error::StreamInterrupted(cause) => cause.retry_after(),
            Error::DeadlineExceeded(g) | Error::BudgetExhausted(g) => {
                g.last().and_then(Error::retry_after)
            }
            Error::Transport(_) | Error::Timeout(_) | Error::SessionQueueFull(_) => None,
        }
    }

    /// The provider's error behind this one: the error itself, the cause of an interrupted
    /// stream, or the last attempt's error when a layer gave up.
    ///
    /// ```
    /// use http::StatusCode;
    /// use towline_core::{ApiError, Error, ErrorKind};
    ///
    /// let last = Error::from(ApiError::new(ErrorKind::Server, StatusCode::BAD_GATEWAY).with_request_id("r-9"));
    /// let gave_up = Error::budget_exhausted(2, last);
    /// assert_eq!(gave_up.kind(), ErrorKind::BudgetExhausted);
    /// assert_eq!(gave_up.api().and_then(|a| a.request_id()), Some("r-9"));
    /// ```
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            Error::StreamInterrupted(cause) => cause.api(),
            Error::DeadlineExceeded(g) | Error::BudgetExhausted(g) => g.last().and_then(Error::api),
            _ => None,
        }
    }

    /// The HTTP status of the provider's answer behind this error, if there was one.
    pub fn status(&self) -> Option<http::StatusCode> {
        self.api().map(ApiError::status)
    }

    /// Wording fit for an end user. When a layer gave up on retrying, the wording of the last
    /// provider error is used, since that is what the user is waiting on.
    ///
    /// ```
    /// use http::StatusCode;
    /// use towline_core::{ApiError, Error, ErrorKind};
    ///
    /// let err = Error::from(ApiError::new(ErrorKind::Authentication, StatusCode::UNAUTHORIZED));
    /// assert_eq!(err.user_message(), "Server configuration error. Please try again later.");
    /// ```
    pub fn user_message(&self) -> &'static str {
        match self {
            Error::DeadlineExceeded(g) | Error::BudgetExhausted(g) => match g.last() {
                Some(last) => last.user_message(),
                None => self.kind().user_message(),
            },
            other => other.kind().user_message(),
        }
    }
}

// Bodies that cannot fail (`Full`, `String`, `Empty`) have `Infallible` errors.
impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

impl From<ApiError> for Error {
    fn from(api: ApiError) -> Self {
        Error::Api(Box::new(api))
    }
}

/// Why the throttle refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThrottleReason {
    /// The key's bucket is empty and the throttle is in reject-only mode.
    RateExceeded,
    /// Waiting for the key's bucket would take longer than the maximum wait.
    WaitTooLong,
    /// The provider asked for a pause (Retry-After, `remaining: 0`) that outlasts the maximum
    /// wait.
    PausedByProvider,
    /// The shared store (Redis) could not be reached and the policy is to fail closed.
    StoreUnavailable,
}

impl ThrottleReason {
    /// A short name for reports and spans.
    pub const fn as_str(self) -> &'static str {
        match self {
            ThrottleReason::RateExceeded => "rate_exceeded",
            ThrottleReason::WaitTooLong => "wait_too_long",
            ThrottleReason::PausedByProvider => "paused_by_provider",
            ThrottleReason::StoreUnavailable => "store_unavailable",
        }
    }
}

/// The throttle refused a call. See [`Error::Throttled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// Why.
    pub reason: ThrottleReason,
    /// The earliest time the key could admit the call, when known.
    pub retry_after: Option<Duration>,
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "throttled ({})", self.reason.as_str())?;
        if let Some(after) = self.retry_after {
            write!(f, ", try again in {after:?}")?;
        }
        Ok(())
    }
}

/// The circuit breaker refused a call. See [`Error::CircuitOpen`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    /// How long until the breaker lets a probe through.
    pub retry_after: Duration,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open, next probe in {:?}", self.retry_after)
    }
}

/// Why the session queue refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionQueueReason {
    /// The conversation already had `limit` requests waiting.
    Full {
        /// The configured maximum queue depth.
        limit: usize,
    },
    /// The request waited `waited` for its turn, the configured maximum.
    WaitTooLong {
        /// How long it waited.
        waited: Duration,
    },
}

/// The session queue refused a call. See [`Error::SessionQueueFull`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionQueueFull {
    /// Why.
    pub reason: SessionQueueReason,
}

impl fmt::Display for SessionQueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            SessionQueueReason::Full { limit } => {
                write!(f, "session queue full ({limit} requests already waiting)")
            }
            SessionQueueReason::WaitTooLong { waited } => {
                write!(f, "waited {waited:?} for the session's earlier requests")
            }
        }
    }
}

/// A layer stopped retrying; the last attempt's error is kept.
/// See [`Error::DeadlineExceeded`] and [`Error::BudgetExhausted`].
#[derive(Debug)]
pub struct GaveUp {
    attempts: u32,
    last: Option<Box<Error>>,
}

impl GaveUp {
    fn new(attempts: u32, last: Option<Error>) -> Self {
        GaveUp {
            attempts,
            last: last.map(Box::new),
        }
    }

    /// How many attempts were sent.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt's error, if an attempt had finished.
    pub fn last(&self) -> Option<&Error> {
        self.last.as_deref()
    }

    /// Takes the last attempt's error.
    pub fn into_last(self) -> Option<Error> {
        self.last.map(|b| *b)
    }
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "after {} attempt(s)", self.attempts)?;
        if let Some(last) = &self.last {
            write!(f, ", last error: {last}")?;
        }
        Ok(())
    }
}

// `Display` already includes the last error, so it is not repeated as a `source`; reach it
// with `GaveUp::last`.
impl std::error::Error for GaveUp {}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn error_stays_small() {
        // `Result<Response, Error>` is moved through every layer's future.
        assert!(
            std::mem::size_of::<Error>() <= 32,
            "{}",
            std::mem::size_of::<Error>()
        );
    }

    #[test]
    fn gave_up_keeps_the_last_provider_answer() {
        let last = Error::from(
            ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS).with_retry_hint(
                crate::RetryHint::new(Duration::from_secs(2), crate::HintSource::RetryAfter),
            ),
        );
        let err = Error::deadline_exceeded(3, Some(last));
        assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
        assert!(!err.is_retryable());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(err.user_message(), ErrorKind::RateLimited.user_message());
        assert!(err.to_string().contains("after 3 attempt(s)"));
    }

    #[test]
    fn stream_interrupted_is_final_whatever_its_cause() {
        let cause = Error::from(ApiError::new(ErrorKind::Overloaded, StatusCode::OK));
        let err = Error::stream_interrupted(cause);
        assert_eq!(err.kind(), ErrorKind::StreamInterrupted);
        assert!(!err.is_retryable());
        assert_eq!(err.api().map(ApiError::kind), Some(ErrorKind::Overloaded));
    }
}
