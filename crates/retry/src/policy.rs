//! Deciding whether a failed attempt is retried.

use std::fmt;
use std::time::Duration;

use towline_core::{Error, ReplayableRequest};

/// What a [`Policy`] says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Follow the error's class: [`Error::is_retryable`], which honours the provider's
    /// `x-should-retry` header both ways.
    Auto,
    /// Retry, whatever the class says.
    Retry,
    /// Retry, waiting at least this long (on top of the provider's hint and the backoff: the
    /// layer waits the longest of the three).
    RetryAfter(Duration),
    /// Do not retry; return this error.
    Stop,
}

/// A failed attempt, as a [`Policy`] sees it.
pub struct Attempt<'a> {
    pub(crate) request: &'a ReplayableRequest,
    pub(crate) number: u32,
    pub(crate) elapsed: Duration,
}

impl<'a> Attempt<'a> {
    /// The request, exactly as every attempt sends it (method, URI, headers, extensions, body).
    pub fn request(&self) -> &'a ReplayableRequest {
        self.request
    }

    /// Which attempt failed: 1 for the first.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Time since the call started.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }
}

impl fmt::Debug for Attempt<'_> {
    // By hand: the request's headers hold the API key and must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("number", &self.number)
            .field("elapsed", &self.elapsed)
            .field("method", self.request.method())
            .field("path", &self.request.uri().path())
            .finish_non_exhaustive()
    }
}

/// Overrides the retry decision for some errors.
///
/// The layer asks the policy only about errors the provider (or the network) returned: a
/// decision another towline layer took locally (throttled, circuit open, session queue full,
/// deadline, budget) is final and never retried, whatever the policy says. The limits still
/// apply after the policy said [`Decision::Retry`]: maximum retries, budget, deadline, hint cap.
///
/// Closures `Fn(&Error, &Attempt<'_>) -> Decision` are policies:
///
/// ```
/// use towline_core::{Error, ErrorKind};
/// use towline_retry::{Attempt, Decision, RetryLayer};
///
/// // Never retry a conflict, even though the class default says it may succeed.
/// let layer = RetryLayer::builder()
///     .policy(|err: &Error, _: &Attempt<'_>| match err.kind() {
///         ErrorKind::Conflict => Decision::Stop,
///         _ => Decision::Auto,
///     })
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
pub trait Policy: Send + Sync + 'static {
    /// What to do about `error`, the failure of `attempt`.
    fn decide(&self, error: &Error, attempt: &Attempt<'_>) -> Decision;
}

impl<F> Policy for F
where
    F: Fn(&Error, &Attempt<'_>) -> Decision + Send + Sync + 'static,
{
    fn decide(&self, error: &Error, attempt: &Attempt<'_>) -> Decision {
        self(error, attempt)
    }
}

/// The default policy: always [`Decision::Auto`], the normalized error's class decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {
    #[inline]
    fn decide(&self, _: &Error, _: &Attempt<'_>) -> Decision {
        Decision::Auto
    }
}

/// The policy's type name, for `Debug` output (a policy need not be `Debug`).
pub(crate) fn policy_name<P>(_: &P) -> &'static str {
    std::any::type_name::<P>()
}
