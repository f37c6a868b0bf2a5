//! The shared vocabulary of [towline](https://docs.rs/towline): the one [`Error`] every layer
//! returns, its unified [`ErrorKind`], the provider's [`ApiError`] with its retry hint and
//! rate-limit snapshot, a [`Clock`] that tests can control, [`KeyExtractor`]s that never hold a
//! secret in the clear, request [`replay`] for retries, and decision [`event`]s for tracing.
//!
//! Every towline layer depends on this crate and on nothing of its siblings, so that any of them
//! can be used alone and all of them agree on what went wrong.
//!
//! ```
//! use http::StatusCode;
//! use towline_core::{ApiError, Error, ErrorKind};
//!
//! let err: Error = ApiError::new(ErrorKind::QuotaExhausted, StatusCode::TOO_MANY_REQUESTS)
//!     .with_provider_type("exceeded_current_quota_error")
//!     .into();
//! assert!(!err.is_retryable());
//! assert_eq!(err.user_message(), "The AI service has reached its usage limit. Please try again later.");
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod clock;
mod error;
pub mod event;
mod key;
mod kind;
mod ratelimit;
pub mod replay;

pub use api::ApiError;
pub use clock::{Clock, FakeClock, Nanos, TokioClock};
pub use error::{
    BoxError, CircuitOpen, Error, GaveUp, SessionQueueFull, SessionQueueReason, ThrottleReason,
    Throttled,
};
pub use event::{CircuitState, Event, Observer, StopReason};
pub use key::{ApiKey, Endpoint, KeyExtractor, KeyHash, SessionHeader};
pub use kind::{ErrorKind, UnknownErrorKind};
pub use ratelimit::{HintSource, RateLimitSnapshot, RateLimitWindow, RetryHint};
pub use replay::{BufferRequest, Buffered, ReplayBody, ReplayableRequest};
