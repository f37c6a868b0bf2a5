//! The Normalize layer of [towline](https://docs.rs/towline): every LLM provider's answer
//! becomes either an untouched success or one typed [`towline_core::Error`].
//!
//! Providers fail in many dialects. A 429 from Moonshot may mean "slow down"
//! (`rate_limit_reached_error`), "we are busy" (`engine_overloaded_error`) or "your quota is
//! gone" (`exceeded_current_quota_error`); kimi-free-api answers errors with HTTP 200 and
//! `{"code":-2001}`; Gemini wraps its error in an array; streams fail half-way with an
//! `event: error`. This crate reads them all, with no configuration, and gives every layer
//! above it one [`ErrorKind`](towline_core::ErrorKind) to act on.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use towline_core::{Error, ErrorKind};
//! use towline_normalize::NormalizeLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = service_fn(|_req: http::Request<String>| async {
//!     let body = r#"{"error":{"type":"rate_limit_reached_error","message":"Your account reached max RPM: 3, please try again after 1 seconds"}}"#;
//!     Ok::<_, std::convert::Infallible>(http::Response::builder().status(429).body(Full::new(Bytes::from(body))).unwrap())
//! });
//! let service = ServiceBuilder::new().layer(NormalizeLayer::new()).service(client);
//! let err = service.oneshot(http::Request::new(String::new())).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::RateLimited);
//! assert_eq!(err.retry_after(), Some(std::time::Duration::from_secs(1)));
//! assert!(matches!(err, Error::Api(_)) && err.is_retryable());
//! # }
//! ```
//!
//! # What it does
//!
//! - **Success** (2xx): passed on untouched, no buffering. When the provider sent rate-limit
//!   headers, their [`RateLimitSnapshot`](towline_core::RateLimitSnapshot) is inserted in the
//!   response extensions, so the throttle learns the key's real limits from every answer.
//! - **Error status**: the body is read up to a limit (64 KiB; the rest is never read) and for
//!   at most a read timeout (5 s; a stalled body still gives a classified error from the status,
//!   the headers and what was read), then [`classify`]d: `Err(Error::Api(..))` with the class,
//!   status, provider type and code, message (credentials scrubbed, see [`scrub`]), param,
//!   request id, retry hint, `x-should-retry` and rate-limit snapshot.
//! - **Client failure**: [`Error::Transport`](towline_core::Error::Transport); an error that
//!   already is a towline `Error` is passed on unchanged.
//! - **Event streams** (`200 text/event-stream`): the body is scanned for in-band errors
//!   (`data: {"error":..}`, `event: error`, `finish_reason: "error"`); see [`NormalizeBody`].
//!   By default the stream is first read up to its first `data:` event, so that an error
//!   arriving as the very first event is an ordinary `Err` the retry layer can retry
//!   ([`Builder::sse_peek_first_event`]).
//! - **kimi-free-api's HTTP-200 errors**: opt-in ([`Builder::inspect_ok_json`]); off, it costs
//!   nothing.
//!
//! # Why `finish_reason: "content_filter"` is not an error
//!
//! When a provider's output filter stops a stream, the last chunk says
//! `finish_reason: "content_filter"`. That chunk is the provider's *answer*, not a failure: the
//! caller reads it in the data it receives, as it would in a non-streamed 200. Turning it into
//! a body error would make it a `StreamInterrupted`, which circuit breakers count as a provider
//! failure, so users' content would trip the breaker. It is therefore delivered untouched. A
//! `finish_reason: "error"` chunk, by contrast, is a failure and ends the body with an error.
//!
//! # Why the classifier is a set of plain functions
//!
//! [`classify`], [`classify_ok_body`], [`retry_hint`] and the [`headers`] and [`parse`]
//! helpers need no layer, no runtime and no configuration, so the `towline classify` command,
//! the mock provider's tests and custom clients classify exactly like the layer. Functions that
//! convert wall-clock values take the current time as a parameter ([`Classifier::new`]), so
//! tests are deterministic.
#![forbid(unsafe_code)]

mod body;
mod classify;
mod config;
mod dialect;
mod error;
mod future;
pub mod headers;
mod layer;
pub mod parse;
pub mod scrub;
mod service;
mod sse;
mod wording;

pub use body::NormalizeBody;
pub use classify::{Classifier, QUOTA_HINT, classify, classify_ok_body, retry_hint};
pub use config::{
    Builder, DEFAULT_ERROR_BODY_LIMIT, DEFAULT_ERROR_BODY_TIMEOUT, DEFAULT_OK_JSON_LIMIT,
    DEFAULT_SSE_LINE_LIMIT, DEFAULT_SSE_PEEK_LIMIT,
};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::NormalizeLayer;
pub use service::Normalize;
