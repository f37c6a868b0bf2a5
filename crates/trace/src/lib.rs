//! OpenTelemetry tracing and metrics for LLM provider calls, and for every decision the other
//! [towline](https://docs.rs/towline) layers take about them.
//!
//! When an LLM call is slow or fails, one trace shows what happened: how long it queued behind
//! its conversation, how long it waited for its key's rate, each attempt and why it was retried,
//! whether a breaker cut it off, and the provider's request id for the support ticket.
//!
//! - [`TraceLayer`], outermost, makes **one logical `CLIENT` span per call** following the
//!   GenAI conventions (`chat kimi-k2`, `gen_ai.operation.name`, `gen_ai.provider.name`,
//!   `gen_ai.request.model`) and the HTTP client conventions (`http.request.method`,
//!   `server.address`, `server.port`, `url.full` redacted, `http.response.status_code`,
//!   `error.type` = the normalized [`ErrorKind`](towline_core::ErrorKind)). It puts an
//!   [`Observer`](towline_core::Observer) in the request's extensions (chained after the
//!   caller's own) that turns every [`Event`](towline_core::Event) of the layers below into a
//!   span event and metric points. A response's span ends when its **body** ends, errors or is
//!   dropped, so a streamed answer is timed to its last chunk.
//! - [`AttemptLayer`], below the retry layer, makes **one HTTP `CLIENT` span per attempt**,
//!   child of the call's span, with `http.request.resend_count` on retries, and injects
//!   `traceparent`/`tracestate` into the attempt's headers with the configured propagator.
//! - Metrics go through the OpenTelemetry metrics API, instruments created once when the layer
//!   is built: `http.client.request.duration`, `gen_ai.client.operation.duration`, calls by
//!   error class, retries, throttle waits and refusals, breaker state, session waits (see
//!   [`names`]).
//!
//! **Never a secret.** No header is ever read into a span, event, metric or log line except the
//! provider's request id; `url.full` has user-info replaced by `REDACTED:REDACTED` and every
//! query value replaced by `REDACTED` unless kept by configuration (credential-carrying
//! parameters such as `key` cannot be kept); provider messages, which may echo a key, are not
//! recorded, only their type, code and request id.
//!
//! **Close to free without an SDK.** The API's no-op tracer is recognized on the first call and
//! from then on no span, attribute or clock read is made for tracing; the attempt layer asks the
//! propagator for its fields and builds no context when it has none (the API's default). With
//! metrics off too ([`TraceBuilder::metrics`]), both layers together add about 0.2 µs per call
//! on a 2-core machine. Metrics are on by default (they go to the global meter provider, which
//! the API cannot tell apart from a no-op one): describing the call and recording its metric
//! points then costs about 5,000 instructions per call for both layers (roughly 1 µs; the first
//! few endpoints and model names a layer sees are described once and shared, and attribute
//! lists stay on the stack), so turn them off when no meter provider is installed.
//!
//! # Where the two layers go
//!
//! ```text
//! TraceLayer → session → retry → throttle → breaker → AttemptLayer → timeout → normalize → client
//! ```
//!
//! The call layer is outermost so that its span covers the session wait and every retry. The
//! attempt layer must be below the retry layer (one span per attempt); right above the
//! per-attempt timeout is best: an attempt the throttle or the breaker refused was never sent
//! and gets no HTTP span (the refusal is an event on the call's span), the throttle's waits do
//! not inflate `http.client.request.duration`, and a timed-out attempt is seen as
//! `error.type = timeout` rather than as cancelled. Any placement below the retry layer works.
//!
//! # Why a span ends with the body
//!
//! An LLM answer is often a stream that lasts longer than the wait for its headers. The
//! conventions time a call to its last byte, so both layers wrap the response body: the span
//! ends when the body ends, fails (`error.type` from the body's towline error, else
//! `stream_interrupted` after output or `transport` before), or is dropped (an event
//! `towline.response.body_dropped`, no error). A call dropped before its response is
//! `error.type = cancelled`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use towline_trace::TraceLayer;
//!
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! let trace = TraceLayer::builder().tracer_provider(&provider).metrics(false).build().unwrap();
//!
//! let client = service_fn(|_req: http::Request<Full<Bytes>>| async {
//!     Ok::<_, towline_core::Error>(http::Response::new(Full::new(Bytes::from_static(b"{}"))))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(trace.clone())
//!     .layer(trace.attempt_layer())
//!     .service(client);
//!
//! let req = http::Request::post("https://api.moonshot.ai/v1/chat/completions")
//!     .header("authorization", "Bearer sk-never-recorded")
//!     .body(Full::new(Bytes::from_static(br#"{"model":"kimi-k2","messages":[]}"#)))
//!     .unwrap();
//! let resp = svc.oneshot(req).await.unwrap();
//! resp.into_body().collect().await.unwrap(); // the call's span ends with its body
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
//! assert_eq!(names, ["POST", "chat kimi-k2"]); // the attempt ends first, then the call
//! # }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod config;
mod describe;
mod error;
mod future;
mod layer;
mod metrics;
pub mod names;
mod peek;
mod service;
mod telemetry;

pub use body::ResponseBody;
pub use config::{DEFAULT_BODY_PEEK_LIMIT, MAX_BODY_PEEK_LIMIT, TraceBuilder};
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::{AttemptLayer, TraceLayer};
pub use service::{Trace, TraceAttempt};
pub use telemetry::RequestModel;
