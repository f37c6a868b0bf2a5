//! A mock LLM provider for tests: a real HTTP/1.1 server on loopback that speaks every
//! provider's error dialect, misbehaves on cue, and keeps a journal of every request.
//!
//! towline's end-to-end tests, examples, benchmarks and the `towline mock` / `towline soak`
//! commands run against it; use it for your own tests instead of hand-written stubs per status.
//!
//! - **Routes**: `POST /v1/chat/completions` (JSON, or with `"stream": true` server-sent
//!   `chat.completion.chunk` events ending in `data: [DONE]`) and `GET /v1/models`, with or
//!   without the `/v1` prefix.
//! - **Scripts** per API key (bearer token or `x-api-key`), per session (`x-session-id`), per
//!   both, and a default ([`Scenario`], [`Script`], [`Fault`]): latency; errors of any class for
//!   the first N requests, after N, at random with a seeded probability, or during a time
//!   window; 429s with `Retry-After` (seconds or HTTP-date), `retry-after-ms` or a body hint;
//!   a server-side token bucket or fixed window per key with computed hints and
//!   `x-ratelimit-*` headers ([`RateLimit`]); streams that break with an in-band error event
//!   or are cut; resets; stalls; kimi-free-api's "-2005 while a stream of the session is being
//!   pushed" rule; raw, oversized and endless answers. Written in Rust or loaded from JSON/TOML,
//!   validated with errors that name the field ([`ScriptError`]).
//! - **Dialects** ([`Dialect`]): Moonshot/Kimi, OpenAI, MiMo, Kaiko V2, aiapi.services,
//!   kimi-free-api (its real HTTP-200 form and its documented 4xx form), Anthropic and Gemini,
//!   byte for byte as their documentation shows them. [`render`] is the same rendering as a
//!   pure function.
//! - **Journal** ([`Journal`]): every arrival with its time, hashed key, session, attempt,
//!   status, hint and end time, and the queries tests need: maximum concurrency per session,
//!   arrivals per key in any window, arrivals before an announced hint.
//!
//! Time is tokio's: latencies, windows and buckets follow paused test time on a
//! current-thread runtime (`#[tokio::test(start_paused = true)]`), or use short real durations.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use http_body_util::{BodyExt, Full};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use towline_core::ErrorKind;
//! use towline_mock::{Dialect, Fault, HintForm, MockProvider, RetryAfter, Script};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Key "sk-limited" gets one Moonshot-style 429 with `Retry-After: 1`, then succeeds.
//! let server = MockProvider::builder()
//!     .key(
//!         "sk-limited",
//!         Script::new(Dialect::Moonshot)
//!             .fault(Fault::rate_limited(RetryAfter::secs(1).form(HintForm::Seconds)).first(1)),
//!     )
//!     .start()
//!     .await?;
//!
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
//! let request = || {
//!     http::Request::post(server.url("/chat/completions"))
//!         .header("authorization", "Bearer sk-limited")
//!         .header("content-type", "application/json")
//!         .body(Full::from(r#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#))
//! };
//!
//! let first = client.request(request()?).await?;
//! assert_eq!(first.status(), 429);
//! assert_eq!(first.headers()["retry-after"], "1");
//! let body = first.into_body().collect().await?.to_bytes();
//! assert_eq!(
//!     body,
//!     r#"{"error":{"message":"Your account reached its max request rate, please try again later","type":"rate_limit_reached_error"}}"#
//! );
//!
//! let second = client.request(request()?).await?;
//! assert_eq!(second.status(), 200);
//!
//! // The journal: two arrivals for the key, one 429 with a 1 s hint; the second came too
//! // early for that hint.
//! let journal = server.journal();
//! assert_eq!(journal.attempts("sk-limited"), 2);
//! assert_eq!(journal.count_status(429), 1);
//! assert_eq!(journal.count_by_error()[&ErrorKind::RateLimited], 1);
//! assert_eq!(journal.arrivals()[0].hint, Some(Duration::from_secs(1)));
//! assert_eq!(journal.early_arrivals("sk-limited", Duration::ZERO).len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Scripts as files
//!
//! The same scenario in TOML (see [`Scenario::from_toml_str`]; JSON has the same fields):
//!
//! ```toml
//! seed = 7
//!
//! [default]
//! dialect = "openai"
//! latency_ms = 5
//! faults = [
//!   { class = "server", p = 0.05 },                       # 5 % random 500s
//!   { class = "server", status = 503, from_ms = 2000, until_ms = 5000 },  # an outage
//! ]
//!
//! [[scripts]]
//! key = "sk-limited"
//! dialect = "moonshot"
//! rate_limit = { rate = 10.0, burst = 2 }                 # server-side token bucket
//! faults = [{ class = "rate_limited", first = 1, retry_after = { ms = 1000, form = "seconds" } }]
//!
//! [[scripts]]
//! key = "sk-free"
//! dialect = "kimi_free_api"
//! session_busy = true                                     # -2005 for a busy session
//! faults = [{ fault = "break_stream", after_chunks = 2, class = "server", p = 0.1 }]
//! ```
//!
//! ## Field reference
//!
//! Top level: `seed` (integer, default 0), `models` (list of names, default
//! `["mock-model"]`), `default` (a script without `key`/`session`), `scripts` (list).
//!
//! A script: `key` and/or `session` (in `scripts` only), `dialect` (see [`Dialect`], default
//! `openai`), `latency_ms`, `rate_limit`, `session_busy` (bool), `request_ids` (bool, default
//! true), `reply`, `chunks` (default 4), `chunk_interval_ms`, `faults` (list, tried in order).
//!
//! A rate limit: `rate` (per second) and `burst` for a token bucket, or `limit` and
//! `window_ms` for a fixed window; `success_headers` (bool), `hint_form`.
//!
//! A fault: `fault` names the action (default `error` when `class` is given), then its
//! conditions and parameters. Durations are milliseconds (`_ms`, integer or decimal, never
//! negative); a field the action does not use is an error.
//!
//! | `fault` | parameters |
//! |---|---|
//! | `error` | `class` (an error class by its snake_case name, e.g. `rate_limited`), `status`, `message`, `code`, `retry_after = { ms, form }`, `should_retry` |
//! | `break_stream` | `after_chunks` (default 1), and the `error` parameters for the in-band event (`class` default `server`) |
//! | `cut_stream` | `after_chunks` (default 1) |
//! | `stall_body` | `after_chunks` (default 0) |
//! | `reset`, `stall_headers`, `succeed` | none |
//! | `raw` | `status`, `headers` (a table), `body` |
//! | `oversized_body` | `status` (default 500), `bytes` |
//! | `endless_stream` | `interval_ms` (default 1000) |
//!
//! Conditions, for any fault: `first`, `after`, `p`, `from_ms`, `until_ms`, `stream` (bool);
//! and `latency_ms` to override the script's latency when the fault fires. Hint forms
//! ([`HintForm`]): `seconds`, `http_date`, `ms`, `seconds_and_ms`, `body`.
#![forbid(unsafe_code)]

mod body;
mod dialect;
mod error;
mod file;
mod journal;
mod limit;
mod render;
mod script;
mod server;
mod service;
mod state;
mod success;

pub use dialect::{Dialect, UnknownDialect};
pub use error::{ScriptError, StartError};
pub use journal::{Arrival, AsKeyHash, Cause, Journal, Outcome};
pub use render::{
    ErrorSpec, HintForm, Rendered, RetryAfter, is_renderable, render, render_at, stream_error_event,
};
pub use script::{Fault, RateLimit, Scenario, Script};
pub use server::{DEFAULT_RECORDED_HEADERS, MockProvider, MockProviderBuilder, MockServer};
