//! Session: one call at a time per conversation, the slot held until the response body ends.
//!
//! The peer is the queue users write by hand (no crate offers it): a `DashMap` from the
//! session id to an `Arc<tokio::sync::Mutex<()>>`, locked around the call and released when
//! the body has been read. It never forgets a session (its map only grows); towline removes a
//! session's entry when it goes idle.
//!
//! - `session_uncontended`: one conversation, calls one after the other.
//! - `session_10k_2_threads`: 10,000 conversations served by 2 threads (each thread owns half
//!   of them, so no call waits); each call clones a prepared request (the same for every case,
//!   `bare` shows what that and the client cost).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use dashmap::DashMap;
use http::{HeaderValue, Request};
use http_body_util::Full;
use tokio::time::Instant;
use tower::Layer;
use towline::session::SessionLayer;

use crate::support::{self, Compare, now};

const SESSIONS: usize = 10_000;

/// The hand-written per-session queue.
#[derive(Clone, Default)]
struct ByHand {
    sessions: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ByHand {
    fn call<S>(&self, inner: &mut S, req: Request<Full<Bytes>>) -> Result<(), towline::Error>
    where
        S: tower::Service<
                Request<Full<Bytes>>,
                Response = http::Response<Full<Bytes>>,
                Error = towline::Error,
            >,
    {
        let lock = req
            .headers()
            .get("x-session-id")
            .and_then(|v| v.to_str().ok())
            .map(|id| match self.sessions.get(id) {
                Some(lock) => Arc::clone(&lock),
                None => Arc::clone(&self.sessions.entry(id.to_owned()).or_default()),
            });
        let guard = lock.map(|lock| now(lock.lock_owned()));
        let outcome = support::call(inner, req);
        drop(guard);
        outcome
    }
}

pub(crate) fn bench_all(c: &mut Criterion) {
    bench_uncontended(c);
    bench_many(c);
}

fn bench_uncontended(c: &mut Criterion) {
    if !support::wants("session_uncontended") {
        return;
    }
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let mut ours = layer.layer(support::client());
    let by_hand = ByHand::default();
    let mut inner = support::client();
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check("by hand", by_hand.call(&mut inner, support::request()));

    let mut group = Compare::new(c, "session_uncontended");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("dashmap_mutex_by_hand", support::request, |req| {
        by_hand.call(&mut inner, req)
    });
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
    drop(group);
    assert!(monitor.snapshot().is_idle(), "every slot was released");
}

fn bench_many(c: &mut Criterion) {
    if !support::wants("session_10k_2_threads") {
        return;
    }
    let ids: Vec<HeaderValue> = (0..SESSIONS)
        .map(|n| HeaderValue::from_str(&format!("conversation-{n:05}")).expect("a header value"))
        .collect();
    let template = support::request();
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let ours = layer.layer(support::client());
    let by_hand = ByHand::default();

    let mut group = Compare::new(c, "session_10k_2_threads");
    group.case_custom("towline", |iters| {
        on_two_threads(iters, &ids, &template, || {
            let mut service = ours.clone();
            move |req| support::check("towline", support::call(&mut service, req))
        })
    });
    group.case_custom("dashmap_mutex_by_hand", |iters| {
        on_two_threads(iters, &ids, &template, || {
            let (by_hand, mut inner) = (by_hand.clone(), support::client());
            move |req| support::check("by hand", by_hand.call(&mut inner, req))
        })
    });
    group.case_custom("bare", |iters| {
        on_two_threads(iters, &ids, &template, || {
            let mut bare = support::client();
            move |req| support::check("bare", support::call(&mut bare, req))
        })
    });
    drop(group);
    assert!(monitor.snapshot().is_idle(), "every slot was released");
}

/// `iters` calls shared by two threads; thread `t` serves the sessions `t, t + 2, ...`.
fn on_two_threads<F>(
    iters: u64,
    ids: &[HeaderValue],
    template: &Request<Full<Bytes>>,
    make: impl Fn() -> F + Sync,
) -> Duration
where
    F: FnMut(Request<Full<Bytes>>) + Send,
{
    let per_thread = iters.div_ceil(2);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let mut call = make();
            scope.spawn(move || {
                let mut at = t;
                for _ in 0..per_thread {
                    let mut req = template.clone();
                    req.headers_mut().insert("x-session-id", ids[at].clone());
                    call(req);
                    at += 2;
                    if at >= ids.len() {
                        at = t;
                    }
                }
            });
        }
    });
    start.elapsed()
}
