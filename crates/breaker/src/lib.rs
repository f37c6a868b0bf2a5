//! A keyed circuit breaker for LLM provider calls: it counts the failures that mean a provider
//! is unhealthy, fails fast while the provider is down, and finds out with a bounded number of
//! probe calls when it is back.
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::StatusCode;
//! use http_body_util::Full;
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//! use towline_breaker::BreakerLayer;
//! use towline_core::{ApiError, Error, ErrorKind};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = BreakerLayer::builder()
//!     .consecutive_failures(3)
//!     .open_duration(Duration::from_secs(5))
//!     .build()
//!     .unwrap();
//! let handle = layer.handle();
//! // A provider in the middle of an outage (normally the Normalize layer makes these errors).
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
//!     Err::<http::Response<Full<Bytes>>, _>(Error::from(ApiError::new(
//!         ErrorKind::Overloaded,
//!         StatusCode::from_u16(529).unwrap(),
//!     )))
//! }));
//! let call = || http::Request::builder().uri("https://api.example.com/v1/chat/completions").body(()).unwrap();
//!
//! for _ in 0..3 {
//!     let err = svc.ready().await.unwrap().call(call()).await.unwrap_err();
//!     assert_eq!(err.kind(), ErrorKind::Overloaded);
//! }
//! // Open: the next call fails at once, without reaching the provider.
//! let err = svc.ready().await.unwrap().call(call()).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::CircuitOpen);
//! assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
//! assert_eq!(handle.state("api.example.com"), Some(towline_core::CircuitState::Open));
//! # }
//! ```
//!
//! # How it decides
//!
//! One circuit per key, by default the request's endpoint (`host:port`, see
//! [`towline_core::Endpoint`]); [`BreakerBuilder::key`] takes any
//! [`KeyExtractor`](towline_core::KeyExtractor) (a model header, a route).
//!
//! - **Closed**: calls flow. Their outcomes go into a time-based sliding window (default 10
//!   buckets of 1 s). The circuit opens when the window holds at least
//!   [`min_calls`](BreakerBuilder::min_calls) calls and the failure share reaches
//!   [`failure_ratio`](BreakerBuilder::failure_ratio), or after
//!   [`consecutive_failures`](BreakerBuilder::consecutive_failures) failures in a row.
//! - **Open**: calls fail at once with [`Error::circuit_open`](towline_core::Error::circuit_open),
//!   whose `retry_after` is the time until the next probe. The open time starts at
//!   [`open_duration`](BreakerBuilder::open_duration), grows by
//!   [`open_growth`](BreakerBuilder::open_growth) each time the circuit re-opens without a full
//!   window of health in between, is capped by
//!   [`max_open_duration`](BreakerBuilder::max_open_duration), and is never shorter than a
//!   `Retry-After` the provider sent with a counted failure (a 503 or 529), up to that cap.
//! - **Half-open**: at most [`half_open_probes`](BreakerBuilder::half_open_probes) calls are let
//!   through at a time; [`probe_successes`](BreakerBuilder::probe_successes) successes close
//!   the circuit, one failure re-opens it. A probe whose future or body is dropped frees its
//!   slot, so the circuit can never wedge half-open.
//!
//! Only calls admitted in a state decide what that state becomes: the answer of a slow call
//! sent before the circuit opened is not mistaken for a probe's.
//!
//! # What counts as a failure
//!
//! By default [`ErrorKind::is_provider_failure`](towline_core::ErrorKind::is_provider_failure):
//! `Server`, `Overloaded`, `Timeout`, `Transport` and `StreamInterrupted`. Every 4xx class,
//! `RateLimited` and `QuotaExhausted` show a provider that is up and answering (they are the
//! throttle's business), so they count as successes; local decisions (`Throttled`,
//! `CircuitOpen`, ...) never reached the provider and are not counted at all.
//! [`BreakerBuilder::failure_if`] replaces the rule.
//!
//! A streamed answer can fail after its response head, as a body error: see
//! [`ResponseBody`] for how such failures are counted.
//!
//! # Cost
//!
//! On a closed circuit a call costs one map read for its key's circuit (a sharded concurrent
//! map, no global lock), one atomic load to admit it, and one compare-and-swap on a window
//! bucket plus one clock read to record it. No lock, no allocation (a new key allocates its
//! circuit once), no spawn, no channel. Idle keys are swept when a new key arrives, so known
//! keys never pay for it.
//!
//! With the default key, the endpoint's circuit is found by a 64-bit digest of its
//! `host:port` read straight from the URI (lowercased eight bytes at a time as it is mixed),
//! then confirmed by comparing the circuit's name with the endpoint: no `Authority` is cloned,
//! hashed or compared byte by byte ignoring case. Endpoints whose digests collide still get a
//! circuit each. A body whose last frame says it has ended (a whole answer in one frame) is
//! recorded once, at that frame, with one clock read.
//!
//! # Compared with other breakers
//!
//! - tower has none in its releases (a proposal trips on consecutive failures only).
//! - failsafe-rs takes a lock per call and lets *every* call through while half-open, so a
//!   recovering provider gets the full load at once; it cannot count a failure that arrives
//!   inside a streamed body.
//! - tower-resilience (resilience4j's design) takes an async mutex twice and boxes a future per
//!   call, bounds half-open by completed calls rather than calls in flight, has one state for
//!   all endpoints, and waits a fixed time however often the circuit re-opens.
//! - none of them knows that a 429 or a quota error is a healthy provider saying no, or honours
//!   the `Retry-After` a provider sends with its 503.
//!
//! Here the state machine is one atomic word per key, half-open is bounded by probes in flight,
//! a probe that is cancelled gives its slot back, and the counted classes are the provider's.
//!
//! # Seeing it work
//!
//! Every rejection and transition is reported to the [`Observer`](towline_core::Observer) in
//! the request's extensions ([`Event::BreakerRejected`](towline_core::Event::BreakerRejected),
//! [`Event::BreakerTransition`](towline_core::Event::BreakerTransition)), which the tracing
//! layer turns into span events. [`BreakerBuilder::on_transition`] calls your code on every
//! transition for alerts, and [`BreakerHandle`] lists the live circuits and their probes.
#![forbid(unsafe_code)]

mod body;
mod circuit;
mod config;
mod error;
mod future;
mod handle;
mod hash;
mod key;
mod layer;
mod permit;
mod policy;
mod service;
mod shared;

pub use body::ResponseBody;
pub use config::{BreakerBuilder, Transition, Unkeyed};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use handle::{BreakerHandle, CircuitSnapshot};
pub use key::DescribeKey;
pub use layer::BreakerLayer;
pub use service::Breaker;
