//! Per-session serialization for LLM conversations: one request at a time per conversation, in
//! arrival order, each holding its conversation until its response body has ended.
//!
//! Conversation-style APIs reject or corrupt concurrent turns of one conversation:
//! kimi-free-api answers `-2005` "a conversation stream is already being pushed", and agents
//! that fire a second turn while the first still streams get interleaved history. Users write
//! the same hand-made queue per session id again and again. [`SessionLayer`] is that queue as a
//! tower layer:
//!
//! - **Keyed** by the `x-session-id` header by default ([`towline_core::SessionHeader`]), or by
//!   any [`towline_core::KeyExtractor`] (a closure reading a conversation id from an extension,
//!   say). Requests without a key pass straight through.
//! - **FIFO per session, concurrent across sessions.** Requests of one session reach the inner
//!   service one at a time, in the order they were `call`ed; other sessions never wait for it.
//! - **Held until the response is finished**: the slot travels in the response body
//!   ([`SessionBody`]) and is released at the end of the stream, on a body error, when the body
//!   is dropped, or when the call fails. A second turn never starts while the first one's SSE
//!   stream is still arriving.
//! - **Bounded**: a maximum queue depth per session (one more is refused at once) and a maximum
//!   wait (then a clear error), both as [`towline_core::Error::SessionQueueFull`].
//! - **Cancellation-safe**: a dropped waiter leaves the line (passing the slot on if it had just
//!   been handed to it); a dropped call or body frees the slot at once. An idle session leaves
//!   nothing behind.
//! - **Observable**: waits and refusals are reported as [`towline_core::Event::SessionWaited`]
//!   and [`towline_core::Event::SessionRejected`] to the request's
//!   [`towline_core::event::Observer`]; a [`SessionMonitor`] counts live sessions and waiters.
//!
//! Place it outermost after tracing, above retry: the slot then covers every retry of a turn,
//! so no other turn of the conversation slips in between attempts.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use towline_session::SessionLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = SessionLayer::new();
//! let monitor = layer.monitor();
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, towline_core::Error>(http::Response::new(Full::new(Bytes::from("turn done"))))
//! }));
//! let turn = || http::Request::builder().header("x-session-id", "conv-7").body(()).unwrap();
//!
//! let first = svc.ready().await.unwrap().call(turn()).await.unwrap();
//! // The second turn of conv-7 waits while the first one's body is unread...
//! let mut second = Box::pin(svc.ready().await.unwrap().call(turn()));
//! assert!(futures_util::poll!(second.as_mut()).is_pending());
//! assert_eq!(monitor.waiting(), 1);
//!
//! // ...and runs once it has been read to its end.
//! first.into_body().collect().await.unwrap();
//! let second = second.await.unwrap();
//! second.into_body().collect().await.unwrap();
//! assert!(monitor.snapshot().is_idle());
//! # }
//! ```
//!
//! # Cost
//!
//! A request of an idle session makes one admission and one release, each one short critical
//! section on one of 64 mutex-guarded shards of a hash map keyed by a 64-bit digest of the
//! session key (insert, then remove), plus one `Arc` clone: no task, no channel, no allocation
//! beyond the map's own growth. About 1,070 instructions added to a bare `service_fn` call
//! (callgrind), header lookup and hashing included; 100–150 ns on a busy 2-core machine. Only
//! a request that finds its session busy allocates (one box holding its request, a clone of
//! the inner service and its deadline timer) and then waits for a whole LLM turn. A request
//! without a session key costs the key lookup and one `Option` check per body frame.
//!
//! A busy session costs about 70 bytes in the map (a 32-byte entry: its digest, the owner's
//! ticket and a queue allocated only on the first wait; 69 B per session measured at a
//! million), so 100,000 live conversations take some 7 MiB; an idle session costs nothing, and
//! neither does a past peak: a shard whose table falls below a quarter full gives it back
//! (keeping room for twice its entries), so once a million busy conversations are idle again
//! the map holds at most a few hundred KiB. Sessions are filed under a keyed 64-bit digest of
//! the key (foldhash, seeded at random per process): two distinct keys share one with
//! probability about 2^-64 per pair, and would then merely be served one at a time together.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod builder;
mod error;
mod future;
mod layer;
mod queue;
mod service;

pub use body::SessionBody;
pub use builder::SessionLayerBuilder;
pub use error::ConfigError;
pub use future::ResponseFuture;
pub use layer::SessionLayer;
pub use queue::{SessionMonitor, SessionSnapshot};
pub use service::Session;
