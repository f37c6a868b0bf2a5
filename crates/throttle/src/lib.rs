//! A per-key throttle for calls to LLM provider APIs: a GCRA token bucket per API key that
//! also obeys, and learns from, what the provider says.
//!
//! Providers limit each API key; a client that exceeds the limit collects 429s, and a client
//! that ignores a `Retry-After` collects more. [`ThrottleLayer`] spends each key's budget evenly
//! and learns from the provider's answers, so 429s become rare:
//!
//! - **A bucket per key.** Calls are keyed by their API key (hashed: the secret is never held;
//!   see [`ApiKey`](towline_core::ApiKey)) or by any [`KeyExtractor`](towline_core::KeyExtractor);
//!   calls without a key share one bucket. Rate and burst per layer, overrides per key, and an
//!   optional [`Cost`] per call (estimated tokens) for token-per-minute limits.
//! - **Waiting in the future, in order.** A call over its key's limit waits inside its response
//!   future (never in `poll_ready`, so one key never blocks another), in FIFO order behind the
//!   key's earlier waiters, up to a maximum wait; a call that would wait longer fails at once
//!   with [`Error::Throttled`](towline_core::Error::Throttled) saying when to try again. A
//!   dropped waiter gives its place back and consumes nothing. A reject-only mode never waits.
//! - **Learning from the provider.** A `RateLimited` answer with a hint pauses the whole key
//!   until the hint has passed: no call of the key, new or retried, is sent before it. A
//!   `QuotaExhausted` answer with a known reset blocks the key until then: its calls fail
//!   locally with the provider's own error, without a round trip. An answer whose
//!   `x-ratelimit-remaining-*` is 0 holds the key until the window resets; the remaining count
//!   caps the bucket and the headers give the key's rate exactly.
//! - **Adaptive pacing.** When a key has no configured rate (or one above what the provider
//!   accepts), its send rate is learned from 429s and successes (see [`Adaptive`]) and paces
//!   the key through the same bucket, one call at a time, so the end of a pause is never a
//!   stampede. Only refusals the key's own rate causes slow it: sporadic 429s that come
//!   whatever it sends (a few percent at random) pause the key for their hint and leave its
//!   rate at the load it is offered.
//! - **Bounded memory.** Idle keys are evicted automatically and the table shrinks back; a key
//!   costs well under 128 bytes (see [`MemoryStore`]).
//!
//! Every decision is reported as a [`towline_core::Event`] (`ThrottleWaited`,
//! `ThrottleRejected`, `KeyPaused`, `RateLearned`) to the request's observer. The state lives
//! in a [`Store`]: [`MemoryStore`] by default; with the `redis` feature,
//! `store::redis::RedisStore` shares each key's bucket, pauses and quota blocks across a fleet
//! with one round trip per admission.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use towline_core::{Error, ErrorKind, ThrottleReason};
//! use towline_throttle::ThrottleLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = ThrottleLayer::builder()
//!     .rate(2.0) // two calls a second per key
//!     .burst(1)
//!     .max_wait(Duration::from_millis(600))
//!     .build()
//!     .unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|_req: Request<()>| async { Ok::<_, towline_core::Error>(Response::new(())) }));
//! let call = || Request::builder().header("authorization", "Bearer sk-demo").body(()).unwrap();
//!
//! let start = tokio::time::Instant::now();
//! svc.ready().await.unwrap().call(call()).await.unwrap();
//! svc.ready().await.unwrap().call(call()).await.unwrap(); // waits 500 ms for its turn
//! assert_eq!(start.elapsed(), Duration::from_millis(500));
//! assert_eq!(layer.total_wait(), Duration::from_millis(500));
//!
//! // Two more at once: the second would wait 1 s > 600 ms, so it fails at once.
//! let a = svc.ready().await.unwrap().call(call());
//! let b = svc.ready().await.unwrap().call(call());
//! let err: Error = b.await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Throttled);
//! assert!(matches!(err, Error::Throttled(t) if t.reason == ThrottleReason::WaitTooLong));
//! a.await.unwrap();
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod adaptive;
mod config;
mod error;
mod future;
mod gcra;
mod layer;
mod service;
pub mod store;

pub use adaptive::Adaptive;
pub use config::{Cost, KeyFn, KeyType, PerCall, ThrottleBuilder, Unit};
pub use error::ConfigError;
pub use future::{ResponseFuture, ThrottleDelay};
pub use layer::ThrottleLayer;
pub use service::Throttle;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::redis::RedisStore;
pub use store::{
    Admission, Ask, Grant, Learned, Lesson, MemoryStore, MemoryTicket, Quota, Signal, Store,
    StoreStats, Ticket,
};
