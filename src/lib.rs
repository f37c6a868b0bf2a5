//! towline: tower layers that make calls to LLM provider APIs dependable.
//!
//! Provider APIs fail in many dialects: a 429 can mean "slow down" or "your quota is gone", 5xx
//! surges come and go, two turns of one conversation race, keys have per-minute limits, and
//! every provider shapes its error JSON differently. towline turns every one of those answers
//! into one typed [`Error`] with a unified [`ErrorKind`], and offers composable layers that act
//! on it. Each layer lives in its own crate and is re-exported here behind a feature of the
//! same name.
#![forbid(unsafe_code)]

#[doc(inline)]
pub use towline_core::{
    ApiError, ApiKey, BoxError, Clock, Endpoint, Error, ErrorKind, FakeClock, HintSource,
    KeyExtractor, KeyHash, RateLimitSnapshot, RateLimitWindow, ReplayBody, RetryHint,
    SessionHeader, TokioClock, event, replay,
};

mod builder_ext;
#[cfg(feature = "stack")]
mod stack;
pub mod toggle;

#[cfg(feature = "stack")]
#[doc(inline)]
pub use stack::{
    Attempted, Breakered, DEFAULT_ATTEMPT_TIMEOUT, Lower, Retried, SendOnce, Sessioned, Stack,
    StackLayer, StackService, Timed,
};

pub use builder_ext::ServiceBuilderExt;

/// The shared vocabulary, whole.
pub use towline_core as core;

#[cfg(feature = "normalize")]
#[doc(inline)]
pub use towline_normalize as normalize;

#[cfg(feature = "retry")]
#[doc(inline)]
pub use towline_retry as retry;

#[cfg(feature = "breaker")]
#[doc(inline)]
pub use towline_breaker as breaker;

#[cfg(feature = "throttle")]
#[doc(inline)]
pub use towline_throttle as throttle;

#[cfg(feature = "session")]
#[doc(inline)]
pub use towline_session as session;

#[cfg(feature = "trace")]
#[doc(inline)]
pub use towline_trace as trace;

#[cfg(feature = "mock")]
#[doc(inline)]
pub use towline_mock as mock;

#[cfg(feature = "reqwest")]
#[doc(inline)]
pub use towline_reqwest as reqwest;

// The README's examples are compiled and run as doc tests, so they cannot drift from the code.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
