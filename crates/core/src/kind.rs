use std::fmt;
use std::str::FromStr;

/// The unified class of a failed LLM provider call.
///
/// Every provider dialect (Moonshot/Kimi, OpenAI, MiMo, Kaiko V2, aiapi.services, kimi-free-api,
/// Anthropic, Gemini, ...) is normalized to one of these classes, and every towline layer decides
/// from the class alone: retry reads it, the breaker counts it, the throttle learns from it and
/// tracing records it as `error.type`. This is towline's equivalent of tower-http's
/// `FailureClass`, computed once instead of re-parsed by each layer.
///
/// The first group are answers of the provider (or of the network on the way to it); the last
/// five are decisions towline took locally.
///
/// | class | default retry | trips breaker |
/// |---|---|---|
/// | `Authentication`, `PermissionDenied`, `QuotaExhausted` | no | no |
/// | `RateLimited` | yes, after the hint | no |
/// | `Overloaded`, `Server`, `Timeout`, `Transport` | yes | yes |
/// | `InvalidRequest`, `ContextLengthExceeded`, `ContentFiltered`, `NotFound`, `PayloadTooLarge` | no | no |
/// | `Conflict` | yes | no |
/// | `StreamInterrupted` | no | yes |
/// | `Unknown` | no | no |
/// | local decisions | no | no |
///
/// ```
/// use towline_core::ErrorKind;
///
/// assert!(ErrorKind::RateLimited.is_retryable());
/// assert!(!ErrorKind::QuotaExhausted.is_retryable());
/// assert_eq!(ErrorKind::ContextLengthExceeded.as_str(), "context_length_exceeded");
/// assert_eq!("circuit_open".parse::<ErrorKind>(), Ok(ErrorKind::CircuitOpen));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credentials were missing, wrong, revoked or expired (401, kimi-free-api -2002).
    Authentication,
    /// The credentials are valid but may not use this resource (403 without a quota reason).
    PermissionDenied,
    /// The account's balance, plan or quota is used up; nothing helps until it is reset or
    /// topped up (Moonshot `exceeded_current_quota_error`, OpenAI `insufficient_quota`, 402,
    /// aiapi `quota_not_enough`, a retry hint longer than two minutes, ...).
    QuotaExhausted,
    /// Too many requests for the key right now; retry after the provider's hint.
    RateLimited,
    /// The provider is at capacity (529, `engine_overloaded_error`, 503 overloaded, 498).
    Overloaded,
    /// The request is malformed or its parameters are invalid (400, 422).
    InvalidRequest,
    /// The prompt is longer than the model's context window.
    ContextLengthExceeded,
    /// The input or output was blocked by the provider's content policy.
    ContentFiltered,
    /// The model, route or resource does not exist (404, `model_not_found`).
    NotFound,
    /// The request conflicts with the resource's state (409); a retry may succeed.
    Conflict,
    /// The request body is larger than the provider accepts (413).
    PayloadTooLarge,
    /// The provider failed (500, 502, generic 5xx).
    Server,
    /// The provider or a gateway timed out (408, 504), or an attempt hit its local timeout.
    Timeout,
    /// The connection failed before any response arrived.
    Transport,
    /// A streamed response failed after output had already been delivered.
    StreamInterrupted,
    /// Nothing better could be said.
    Unknown,
    /// Local: the per-key throttle refused to wait that long.
    Throttled,
    /// Local: the circuit breaker for this endpoint is open.
    CircuitOpen,
    /// Local: the conversation's queue is full, or the request waited in it too long.
    SessionQueueFull,
    /// Local: the call's overall deadline passed.
    DeadlineExceeded,
    /// Local: the shared retry budget had no retry left for this call.
    BudgetExhausted,
}

impl ErrorKind {
    /// Every class, in declaration order.
    pub const ALL: [ErrorKind; 21] = [
        ErrorKind::Authentication,
        ErrorKind::PermissionDenied,
        ErrorKind::QuotaExhausted,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::InvalidRequest,
        ErrorKind::ContextLengthExceeded,
        ErrorKind::ContentFiltered,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::Server,
        ErrorKind::Timeout,
        ErrorKind::Transport,
        ErrorKind::StreamInterrupted,
        ErrorKind::Unknown,
        ErrorKind::Throttled,
        ErrorKind::CircuitOpen,
        ErrorKind::SessionQueueFull,
        ErrorKind::DeadlineExceeded,
        ErrorKind::BudgetExhausted,
    ];

    /// The snake_case name used in reports, metrics and the `towline` command.
    ///
    /// ```
    /// assert_eq!(towline_core::ErrorKind::QuotaExhausted.as_str(), "quota_exhausted");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Authentication => "authentication",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::QuotaExhausted => "quota_exhausted",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ContextLengthExceeded => "context_length_exceeded",
            ErrorKind::ContentFiltered => "content_filtered",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Server => "server",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Transport => "transport",
            ErrorKind::StreamInterrupted => "stream_interrupted",
            ErrorKind::Unknown => "unknown",
            ErrorKind::Throttled => "throttled",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::SessionQueueFull => "session_queue_full",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::BudgetExhausted => "budget_exhausted",
        }
    }

    /// Whether a call that failed with this class may succeed if sent again unchanged.
    ///
    /// This is the class default; [`ApiError::is_retryable`](crate::ApiError::is_retryable)
    /// additionally honours the provider's `x-should-retry` header.
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// assert!(ErrorKind::Overloaded.is_retryable());
    /// assert!(!ErrorKind::ContentFiltered.is_retryable());
    /// assert!(!ErrorKind::CircuitOpen.is_retryable());
    /// ```
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited
                | ErrorKind::Overloaded
                | ErrorKind::Server
                | ErrorKind::Timeout
                | ErrorKind::Transport
                | ErrorKind::Conflict
        )
    }

    /// Whether this class says the provider itself is unhealthy, so that a circuit breaker
    /// should count it (5xx, overload, timeouts, broken connections and broken streams).
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// assert!(ErrorKind::Server.is_provider_failure());
    /// assert!(!ErrorKind::RateLimited.is_provider_failure());
    /// ```
    pub const fn is_provider_failure(self) -> bool {
        matches!(
            self,
            ErrorKind::Server
                | ErrorKind::Overloaded
                | ErrorKind::Timeout
                | ErrorKind::Transport
                | ErrorKind::StreamInterrupted
        )
    }

    /// Whether this class is a decision towline took locally rather than a provider's answer.
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// assert!(ErrorKind::Throttled.is_local());
    /// assert!(!ErrorKind::Timeout.is_local());
    /// ```
    pub const fn is_local(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled
                | ErrorKind::CircuitOpen
                | ErrorKind::SessionQueueFull
                | ErrorKind::DeadlineExceeded
                | ErrorKind::BudgetExhausted
        )
    }

    /// Wording fit to show an end user, following the recommendations of the Kimi API error
    /// guide: no credentials, no internals, and a hint of what to do.
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// assert_eq!(
    ///     ErrorKind::ContentFiltered.user_message(),
    ///     "Your request cannot be processed due to content restrictions."
    /// );
    /// ```
    pub const fn user_message(self) -> &'static str {
        match self {
            // "No need to tell an end user about API keys."
            ErrorKind::Authentication | ErrorKind::PermissionDenied | ErrorKind::NotFound => {
                "Server configuration error. Please try again later."
            }
            ErrorKind::QuotaExhausted => {
                "The AI service has reached its usage limit. Please try again later."
            }
            ErrorKind::RateLimited | ErrorKind::Throttled => {
                "The service is receiving too many requests. Please slow down and try again in a moment."
            }
            ErrorKind::InvalidRequest | ErrorKind::Unknown => {
                "Sorry, something went wrong with your request. Please try a different query."
            }
            ErrorKind::ContextLengthExceeded | ErrorKind::PayloadTooLarge => {
                "Your request is too long. Please shorten it and try again."
            }
            ErrorKind::ContentFiltered => {
                "Your request cannot be processed due to content restrictions."
            }
            ErrorKind::Conflict => {
                "Your request conflicted with another one in progress. Please try again."
            }
            ErrorKind::Overloaded
            | ErrorKind::Server
            | ErrorKind::Timeout
            | ErrorKind::Transport
            | ErrorKind::CircuitOpen
            | ErrorKind::DeadlineExceeded
            | ErrorKind::BudgetExhausted => {
                "The AI service is temporarily unavailable. Please retry after a few seconds."
            }
            ErrorKind::StreamInterrupted => "The answer was interrupted. Please try again.",
            ErrorKind::SessionQueueFull => {
                "This conversation is still busy with earlier messages. Please wait a moment and try again."
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an [`ErrorKind`] from a name it does not have.
///
/// ```
/// let err = "slow_down".parse::<towline_core::ErrorKind>().unwrap_err();
/// assert!(err.to_string().contains("slow_down"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error class `{0}`")]
pub struct UnknownErrorKind(String);

impl FromStr for ErrorKind {
    type Err = UnknownErrorKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownErrorKind(s.to_owned()))
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(kind));
            assert!(seen.insert(kind.as_str()), "duplicate name {kind}");
        }
    }

    #[test]
    fn retry_table_matches_the_dialect_reference() {
        let retryable: Vec<_> = ErrorKind::ALL
            .into_iter()
            .filter(|k| k.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorKind::RateLimited,
                ErrorKind::Overloaded,
                ErrorKind::Conflict,
                ErrorKind::Server,
                ErrorKind::Timeout,
                ErrorKind::Transport,
            ]
        );
        assert!(
            ErrorKind::ALL
                .iter()
                .all(|k| !(k.is_local() && k.is_retryable()))
        );
    }

    #[test]
    fn user_messages_never_mention_keys() {
        for kind in ErrorKind::ALL {
            let msg = kind.user_message().to_ascii_lowercase();
            assert!(
                !msg.contains("key") && !msg.contains("token"),
                "{kind}: {msg}"
            );
        }
    }
}
