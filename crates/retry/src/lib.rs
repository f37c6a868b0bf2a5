//! Retries for LLM provider calls that only retry what can succeed, within a budget shared by
//! every clone of the service, and never before the provider allows.
//!
//! [`RetryLayer`] sits above the Normalize layer (see towline's architecture: trace → session →
//! **retry** → throttle → breaker → timeout → normalize → client) and decides from the
//! normalized [`towline_core::Error`] alone:
//!
//! - **What is retried**: rate limits, overload, server errors, timeouts, transport failures and
//!   conflicts ([`ErrorKind::is_retryable`](towline_core::ErrorKind::is_retryable)); never quota,
//!   authentication, permission, invalid request, context length, content filter, not found,
//!   payload too large or an interrupted stream. The provider's `x-should-retry` header
//!   overrides the class both ways, and a user [`Policy`] can override either. A decision
//!   another towline layer took (throttled, circuit open, session queue full) is never retried.
//! - **How often**: at most [`max_retries`](RetryLayerBuilder::max_retries) per call, and only
//!   while the shared [`RetryBudget`] allows (by default 20 % of calls + 10 retries/s over
//!   10 s, exact for every ratio, lock-free). An empty budget ends the call with
//!   [`Error::BudgetExhausted`](towline_core::Error::BudgetExhausted) holding the last error.
//! - **When**: after `max(hint, backoff)`, where the hint is the provider's
//!   `retry-after-ms` > `Retry-After` > body hint (already chosen by Normalize) and the backoff
//!   is exponential with [`Jitter`] (decorrelated by default). So a retry never comes before the
//!   hint, and clients that failed together do not come back together. A hint longer than
//!   [`max_retry_after`](RetryLayerBuilder::max_retry_after) (120 s) ends the call at once with
//!   the error instead of sleeping.
//! - **For how long**: an optional overall [`deadline`](RetryLayerBuilder::deadline) covers
//!   attempts and waits ([`Error::DeadlineExceeded`](towline_core::Error::DeadlineExceeded));
//!   [`TimeoutLayer`] bounds each attempt ([`Error::Timeout`](towline_core::Error::Timeout)).
//!
//! # Replay
//!
//! The request body is read once, as [`towline_core::BufferRequest`] does: in-memory bodies
//! (`Full<Bytes>`, built from a `Vec<u8>`, `Bytes` or `&'static str`, `String`, `Empty`) are
//! read in the call itself and replayed without a copy, so the caller clones nothing; a
//! streaming body is read up to [`replay_limit`](RetryLayerBuilder::replay_limit) (1 MiB).
//! The first attempt is a clone of the caller's request (its header map and extensions; the
//! URI, header values and body bytes are shared), and the caller's own head is kept for the
//! retries: a call that succeeds at once builds nothing else. (About 3,400 instructions over
//! a bare `service_fn` call, most of them that clone; tower's `Retry` with a `TpsBudget`,
//! which clones the request too, adds about 2,600.) Every attempt sends the same
//! method, URI, version, headers, extensions and bytes. **A body larger than the limit is sent
//! once, its buffered prefix first, and never retried** (the call stops with
//! [`StopReason::NotReplayable`](towline_core::StopReason::NotReplayable)). Only the response
//! head is retried: once a response arrives it is returned, and an error later in its body
//! stream is the caller's (Normalize reports it as `StreamInterrupted`, never retried).
//!
//! # What the layer reports
//!
//! Every decision goes to the [`Observer`](towline_core::Observer) in the request's
//! extensions (the tracing layer puts one there): [`Event::RetryScheduled`] with the failed
//! attempt, the delay and the class; [`Event::RetryStopped`] with the attempts and a
//! [`StopReason`](towline_core::StopReason) whenever the call ends in an error. A successful
//! call that took more than one attempt carries [`Attempts`] in its response extensions.
//!
//! [`Event::RetryScheduled`]: towline_core::Event::RetryScheduled
//! [`Event::RetryStopped`]: towline_core::Event::RetryStopped
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use towline_core::{ApiError, Error, ErrorKind, HintSource, ReplayBody, RetryHint};
//! use towline_retry::{Attempts, RetryLayer, TimeoutLayer};
//!
//! // A provider that rate-limits the first call with `Retry-After: 2`, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let provider = service_fn({
//!     let calls = calls.clone();
//!     move |_req: Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n == 0 {
//!                 let hint = RetryHint::new(Duration::from_secs(2), HintSource::RetryAfter);
//!                 Err(Error::from(
//!                     ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
//!                         .with_retry_hint(hint),
//!                 ))
//!             } else {
//!                 Ok(Response::new("ok"))
//!             }
//!         }
//!     }
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_retries(3).deadline(Duration::from_secs(60)).build().unwrap())
//!     .layer(TimeoutLayer::new(Duration::from_secs(30)).unwrap())
//!     .service(provider);
//!
//! let started = tokio::time::Instant::now();
//! let request = Request::post("https://api.moonshot.ai/v1/chat/completions")
//!     .body(Full::new(Bytes::from_static(br#"{"model":"kimi-k2"}"#)))
//!     .unwrap();
//! let response = client.oneshot(request).await.unwrap();
//! assert_eq!(Attempts::of(&response), 2);
//! assert!(started.elapsed() >= Duration::from_secs(2), "never before the hint");
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attempts;
mod backoff;
mod budget;
mod config;
mod error;
mod future;
mod idempotency;
mod layer;
mod policy;
mod replay;
mod service;
pub mod timeout;

pub use attempts::Attempts;
pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use config::{
    DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_AFTER, DEFAULT_REPLAY_LIMIT, RetryLayerBuilder,
};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub use policy::{Attempt, Decision, DefaultPolicy, Policy};
pub use service::Retry;
pub use timeout::{Timeout, TimeoutLayer};
