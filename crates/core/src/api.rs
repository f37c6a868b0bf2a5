use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::{ErrorKind, RateLimitSnapshot, RetryHint};

/// An error answer of an LLM provider, normalized from whatever dialect it was written in.
///
/// It keeps everything the provider said that a caller, a log line or a support ticket needs:
/// the HTTP status, the provider's own type and code, its message and offending parameter, the
/// request id, the retry hint and the rate-limit state. It never holds a credential: the
/// Normalize layer scrubs any echo of the request's key out of the message before building it.
///
/// Built by the Normalize layer; other crates build it with [`ApiError::new`] and the `with_*`
/// methods.
///
/// ```
/// use std::time::Duration;
/// use http::StatusCode;
/// use towline_core::{ApiError, ErrorKind, HintSource, RetryHint};
///
/// let err = ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
///     .with_provider_type("rate_limit_error")
///     .with_provider_code("too_many_requests")
///     .with_message("Rate limit exceeded")
///     .with_request_id("req-7f65ab21d1")
///     .with_retry_hint(RetryHint::new(Duration::from_secs(60), HintSource::RetryAfter));
///
/// assert!(err.is_retryable());
/// assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
/// assert_eq!(err.request_id(), Some("req-7f65ab21d1"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ErrorKind,
    status: StatusCode,
    provider_type: Option<Box<str>>,
    provider_code: Option<Box<str>>,
    message: Option<Box<str>>,
    param: Option<Box<str>>,
    request_id: Option<Box<str>>,
    retry_hint: Option<RetryHint>,
    should_retry: Option<bool>,
    rate_limit: Option<RateLimitSnapshot>,
}

impl ApiError {
    /// An error of class `kind` answered with `status`, with nothing else known yet.
    pub fn new(kind: ErrorKind, status: StatusCode) -> Self {
        ApiError {
            kind,
            status,
            provider_type: None,
            provider_code: None,
            message: None,
            param: None,
            request_id: None,
            retry_hint: None,
            should_retry: None,
            rate_limit: None,
        }
    }

    /// Sets the provider's error type (`error.type`: `rate_limit_reached_error`, ...).
    pub fn with_provider_type(mut self, value: impl Into<Box<str>>) -> Self {
        self.provider_type = Some(value.into());
        self
    }

    /// Sets the provider's error code (`error.code`, `errcode`, `code`), numeric codes as text.
    pub fn with_provider_code(mut self, value: impl Into<Box<str>>) -> Self {
        self.provider_code = Some(value.into());
        self
    }

    /// Sets the provider's message.
    pub fn with_message(mut self, value: impl Into<Box<str>>) -> Self {
        self.message = Some(value.into());
        self
    }

    /// Sets the offending parameter the provider named.
    pub fn with_param(mut self, value: impl Into<Box<str>>) -> Self {
        self.param = Some(value.into());
        self
    }

    /// Sets the provider's request id, for support tickets.
    pub fn with_request_id(mut self, value: impl Into<Box<str>>) -> Self {
        self.request_id = Some(value.into());
        self
    }

    /// Sets the provider's retry hint.
    pub fn with_retry_hint(mut self, hint: RetryHint) -> Self {
        self.retry_hint = Some(hint);
        self
    }

    /// Records the provider's `x-should-retry` header.
    pub fn with_should_retry(mut self, should_retry: bool) -> Self {
        self.should_retry = Some(should_retry);
        self
    }

    /// Attaches the rate-limit state reported with this error.
    pub fn with_rate_limit(mut self, snapshot: RateLimitSnapshot) -> Self {
        self.rate_limit = Some(snapshot);
        self
    }

    /// Changes the class (a classifier refining its first guess).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The normalized class.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status the provider answered with (200 for an error inside a stream, or for
    /// kimi-free-api's HTTP-200 errors).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The provider's error type, if it sent one.
    pub fn provider_type(&self) -> Option<&str> {
        self.provider_type.as_deref()
    }

    /// The provider's error code, if it sent one (numeric codes as their decimal text).
    pub fn provider_code(&self) -> Option<&str> {
        self.provider_code.as_deref()
    }

    /// The provider's message, if it sent one.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The parameter the provider blamed, if any.
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    /// The provider's request id (header or body), if any.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The provider's retry hint, with where it came from.
    pub fn retry_hint(&self) -> Option<RetryHint> {
        self.retry_hint
    }

    /// How long the provider asked to wait before trying again.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_hint.map(|h| h.delay)
    }

    /// The provider's `x-should-retry` header, if it sent one.
    pub fn should_retry(&self) -> Option<bool> {
        self.should_retry
    }

    /// The rate-limit state reported with this error.
    pub fn rate_limit(&self) -> Option<&RateLimitSnapshot> {
        self.rate_limit.as_ref()
    }

    /// Whether sending the same request again may succeed: the provider's `x-should-retry`
    /// when it sent one, otherwise the class default ([`ErrorKind::is_retryable`]).
    ///
    /// ```
    /// use http::StatusCode;
    /// use towline_core::{ApiError, ErrorKind};
    ///
    /// let unavailable = ApiError::new(ErrorKind::Server, StatusCode::SERVICE_UNAVAILABLE);
    /// assert!(unavailable.is_retryable());
    /// assert!(!unavailable.with_should_retry(false).is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        self.should_retry.unwrap_or(self.kind.is_retryable())
    }

    /// Wording fit for an end user; see [`ErrorKind::user_message`].
    pub fn user_message(&self) -> &'static str {
        self.kind.user_message()
    }
}

impl fmt::Debug for ApiError {
    // Written by hand so that absent fields stay out of logs; no field can hold a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ApiError");
        d.field("kind", &self.kind)
            .field("status", &self.status.as_u16());
        let optional = [
            ("provider_type", &self.provider_type),
            ("provider_code", &self.provider_code),
            ("message", &self.message),
            ("param", &self.param),
            ("request_id", &self.request_id),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                d.field(name, value);
            }
        }
        if let Some(hint) = &self.retry_hint {
            d.field("retry_hint", hint);
        }
        if let Some(should_retry) = &self.should_retry {
            d.field("should_retry", should_retry);
        }
        if let Some(rate_limit) = &self.rate_limit {
            d.field("rate_limit", rate_limit);
        }
        d.finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {})", self.kind, self.status.as_u16())?;
        match (&self.provider_type, &self.provider_code) {
            (Some(t), Some(c)) => write!(f, " {t}/{c}")?,
            (Some(x), None) | (None, Some(x)) => write!(f, " {x}")?,
            (None, None) => {}
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(hint) = &self.retry_hint {
            write!(f, " (retry after {:?})", hint.delay)?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HintSource;

    #[test]
    fn display_carries_what_a_support_ticket_needs() {
        let err = ApiError::new(ErrorKind::QuotaExhausted, StatusCode::FORBIDDEN)
            .with_provider_type("exceeded_current_quota_error")
            .with_message("exceeded current quota")
            .with_request_id("req-1")
            .with_retry_hint(RetryHint::new(
                Duration::from_secs(3),
                HintSource::RetryAfter,
            ));
        assert_eq!(
            err.to_string(),
            "quota_exhausted (HTTP 403) exceeded_current_quota_error: exceeded current quota \
             (retry after 3s) [request id req-1]"
        );
        let debug = format!("{err:?}");
        assert!(debug.contains("request_id") && !debug.contains("param"));
    }

    #[test]
    fn should_retry_overrides_both_ways() {
        let filtered = ApiError::new(ErrorKind::ContentFiltered, StatusCode::BAD_REQUEST);
        assert!(!filtered.is_retryable());
        assert!(filtered.with_should_retry(true).is_retryable());
    }
}
