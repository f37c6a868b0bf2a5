//! Memory follows the busy sessions back down: after a peak of busy conversations, the idle
//! layer gives the map's table back. Counted by a counting global allocator, alone in this
//! test binary (it counts the whole process), with one test so that nothing else allocates
//! meanwhile.

use std::alloc::System;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service};
use towline_session::SessionLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SESSIONS: usize = 200_000;

fn live(region: &Region<'_, System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated
}

/// Polls a future that completes at once.
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("expected to complete at once"),
    }
}

type Answer = Result<Response<Full<Bytes>>, towline_core::Error>;

fn client() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = towline_core::Error,
    Future = Ready<Answer>,
> + Clone {
    tower::service_fn(|_req: Request<()>| {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"{}")))))
    })
}

#[test]
fn a_peak_of_busy_sessions_is_given_back_once_they_are_idle() {
    // Made before counting: the ids and the held answers are not the sessions' cost. Each id
    // is cloned once first: the first clone of a `Bytes` made from a `Vec` allocates its
    // shared header.
    let ids: Vec<HeaderValue> = (0..SESSIONS)
        .map(|n| HeaderValue::from_str(&format!("conversation-{n:07}")).expect("a value"))
        .collect();
    for id in &ids {
        drop(id.clone());
    }
    let mut held = Vec::with_capacity(SESSIONS);
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let mut service = layer.layer(client());

    let region = Region::new(GLOBAL);
    for id in &ids {
        now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
        let mut request = Request::new(());
        request.headers_mut().insert("x-session-id", id.clone());
        held.push(now(service.call(request)).expect("the session was idle"));
    }
    assert_eq!(monitor.snapshot().sessions, SESSIONS);
    let peak = live(&region);
    assert!(
        peak > (SESSIONS * 32) as isize,
        "the busy sessions take room: {peak} bytes"
    );

    held.clear(); // every turn ends: its slot is released (the Vec's buffer was not counted)
    assert!(monitor.snapshot().is_idle());
    let idle = live(&region);
    // Less than one byte per session that came and went; what stays is the shards' small
    // tables (at most 64 entries' room each).
    assert!(
        idle < SESSIONS as isize,
        "{idle} bytes kept once idle, after a peak of {peak}"
    );
}
