//! Memory at a million keys, counted by a counting global allocator (alone in this bench
//! binary: it counts the whole process, and would slow the timed benches down).
//!
//! - **Throttle**: bytes per idle key (each key admitted once, then left alone) in towline's
//!   in-memory store with its defaults and in governor's keyed limiter (the same 64-bit key
//!   digests), then what is left once the idle keys are evicted (towline: by itself, forced
//!   here with `evict_idle` to skip the wait; governor: `retain_recent` + `shrink_to_fit`,
//!   which its users must call).
//! - **Session**: bytes per busy session while a million conversations each hold their slot,
//!   what is left once they are all idle, and after a million conversations that came one after
//!   the other; beside the hand-written `DashMap<String, Arc<Mutex<()>>>` queue, which never
//!   forgets a session.
//!
//! `cargo bench --bench memory`; figures go to `$TOWLINE_BENCH_REPORT` as JSON lines too.

use std::alloc::System;
use std::future::{Future, ready};
use std::io::Write;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use http::{Request, Response};
use http_body_util::Full;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::time::Instant;
use tower::{Layer, Service};
use towline::KeyHash;
use towline::session::SessionLayer;
use towline::throttle::{Admission, Ask, MemoryStore, Quota, Store};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 1_000_000;

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported (this binary is quick).
    throttle_towline();
    throttle_governor();
    session_towline_busy();
    session_towline_one_after_another();
    session_by_hand();
}

fn live(region: &Region<'_, System>) -> f64 {
    let change = region.change();
    (change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated)
        as f64
}

fn figure(name: &str, value: f64, unit: &str) {
    println!("towline-bench: {name} = {value:.3} {unit}");
    if let Ok(path) = std::env::var("TOWLINE_BENCH_REPORT") {
        let line = serde_json::json!({ "name": name, "value": value, "unit": unit });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        writeln!(file, "{line}").unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

fn keys() -> Vec<KeyHash> {
    (0..KEYS as u64)
        .map(|n| KeyHash::of(&n.to_le_bytes()))
        .collect()
}

fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a call should complete at once"),
    }
}

fn throttle_towline() {
    let keys = keys();
    let origin = Instant::now();
    let quota = Some(Quota::new(10.0, 1));
    let region = Region::new(GLOBAL);
    let store = MemoryStore::<KeyHash>::new(origin);
    for key in &keys {
        let ask = Ask::new(Instant::now(), 1).with_quota(quota);
        assert!(matches!(
            store.admit(Some(key), &ask, None).into_inner(),
            Admission::Go(_)
        ));
    }
    let live_keys = store.stats().live_keys;
    let per_key = live(&region) / KEYS as f64;
    figure("memory/throttle_idle_key/towline", per_key, "bytes");
    figure(
        "memory/throttle_idle_key/towline_live_keys",
        live_keys as f64,
        "keys",
    );
    store.evict_idle(Instant::now() + Duration::from_secs(3600));
    assert_eq!(store.stats().live_keys, 0);
    figure(
        "memory/throttle_after_eviction/towline",
        live(&region),
        "bytes",
    );
}

fn throttle_governor() {
    let keys = keys();
    let region = Region::new(GLOBAL);
    let limiter: DefaultKeyedRateLimiter<KeyHash> = RateLimiter::keyed(
        governor::Quota::per_second(NonZeroU32::new(10).expect("10")),
    );
    for key in &keys {
        assert!(limiter.check_key(key).is_ok());
    }
    let per_key = live(&region) / KEYS as f64;
    figure("memory/throttle_idle_key/governor", per_key, "bytes");
    // governor forgets a key once its bucket is full again (0.1 s at 10/s), when asked to.
    // No runtime here: a plain sleep of this thread.
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(Duration::from_millis(200));
    limiter.retain_recent();
    limiter.shrink_to_fit();
    assert_eq!(limiter.len(), 0);
    figure(
        "memory/throttle_after_eviction/governor",
        live(&region),
        "bytes",
    );
}

type Answer = Result<Response<Full<Bytes>>, towline::Error>;

/// The client of the session benches: answers at once with a body that allocates nothing.
fn client() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = towline::Error,
    Future = std::future::Ready<Answer>,
> + Clone {
    tower::service_fn(|_req: Request<()>| {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"{}")))))
    })
}

/// A million session ids. Each is cloned once here: the first clone of a `Bytes` made from a
/// `Vec` allocates its shared header (24 bytes), which would otherwise be counted as the
/// sessions' cost.
fn session_ids() -> Vec<http::HeaderValue> {
    let ids: Vec<_> = (0..KEYS)
        .map(|n| http::HeaderValue::from_str(&format!("conversation-{n:07}")).expect("a value"))
        .collect();
    for id in &ids {
        drop(id.clone());
    }
    ids
}

fn turn(id: &http::HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert("x-session-id", id.clone());
    request
}

fn session_towline_busy() {
    let ids = session_ids();
    // Made before counting: the held answers themselves are not the sessions' cost.
    let mut held = Vec::with_capacity(KEYS);
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let mut service = layer.layer(client());
    // The requests' own header maps come and go with each call; counted from here on, the
    // bytes that stay are the sessions'.
    let region = Region::new(GLOBAL);
    for id in &ids {
        now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
        held.push(now(service.call(turn(id))).expect("the session was idle"));
    }
    assert_eq!(monitor.snapshot().sessions, KEYS);
    figure(
        "memory/session_busy/towline",
        live(&region) / KEYS as f64,
        "bytes",
    );
    held.clear(); // the answers go (their buffer stays: it was not counted)
    assert!(monitor.snapshot().is_idle());
    // Per session: what the million sessions, all idle now, still hold.
    figure(
        "memory/session_idle_after_1m_busy/towline",
        live(&region) / KEYS as f64,
        "bytes",
    );
}

fn session_towline_one_after_another() {
    let ids = session_ids();
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let mut service = layer.layer(client());
    let region = Region::new(GLOBAL);
    for id in &ids {
        now(std::future::poll_fn(|cx| service.poll_ready(cx))).expect("ready");
        drop(now(service.call(turn(id))).expect("the session was idle"));
    }
    assert!(monitor.snapshot().is_idle());
    figure(
        "memory/session_idle_after_1m_sequential/towline",
        live(&region) / KEYS as f64,
        "bytes",
    );
}

fn session_by_hand() {
    let ids = session_ids();
    let region = Region::new(GLOBAL);
    let sessions: DashMap<String, Arc<tokio::sync::Mutex<()>>> = DashMap::new();
    for id in &ids {
        let id = id.to_str().expect("ascii");
        let lock = Arc::clone(&sessions.entry(id.to_owned()).or_default());
        drop(now(lock.lock_owned()));
    }
    figure(
        "memory/session_idle_after_1m_sequential/dashmap_mutex_by_hand",
        live(&region) / KEYS as f64,
        "bytes",
    );
}
