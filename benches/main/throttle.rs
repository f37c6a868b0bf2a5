//! Throttle admission: may this key's call go now? towline's in-memory store against
//! governor's keyed limiter (its default: a `DashMap` of GCRA cells and the `quanta` clock),
//! with the same quota, the same keys (64-bit key digests, what towline stores) and the same
//! access order, at 1, 1,000 and 1,000,000 live keys, from 1 and 2 threads.
//!
//! The quota (10^9 a second, burst 10^9: a second's worth, so that a thread preempted between
//! reading the clock and deciding still finds room) admits every call: the cost measured is
//! the decision, never a wait. Each call reads the clock, as both limiters do in a service (towline's caller
//! passes the time in; governor reads its own). towline's store runs with its defaults, as the
//! layer does: adaptive pacing on (a send meter per key) and idle keys evicted as it goes.
//!
//! `throttle_layer` compares the whole layer over a `service_fn` (key read from the
//! `authorization` header and hashed) with the same done by hand around governor.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use http::Request;
use http_body_util::Full;
use tokio::time::Instant;
use tower::Layer;
use towline::KeyHash;
use towline::throttle::{Admission, Ask, MemoryStore, Quota, Store, ThrottleLayer};

use crate::support::{self, Compare};

const RATE: u32 = 1_000_000_000;
const BURST: u32 = 1_000_000_000;
const QUOTA: Quota = Quota::new(RATE as f64, BURST);
/// Walks the keys in a scattered order (an odd step is coprime with the power-of-ten counts
/// below, so every key is visited).
const STEP: usize = 7_919;

fn governor_quota() -> governor::Quota {
    governor::Quota::per_second(NonZeroU32::new(RATE).expect("non-zero"))
        .allow_burst(NonZeroU32::new(BURST).expect("non-zero"))
}

fn keys(n: usize) -> Vec<KeyHash> {
    (0..n as u64)
        .map(|k| KeyHash::of(&k.to_le_bytes()))
        .collect()
}

#[inline]
fn admit_towline(store: &MemoryStore<KeyHash>, key: &KeyHash) {
    let ask = Ask::new(Instant::now(), 1).with_quota(Some(QUOTA));
    match store.admit(Some(key), &ask, None).into_inner() {
        Admission::Go(grant) => {
            black_box(grant);
        }
        other => panic!("the bench quota refused a call: {other:?}"),
    }
}

#[inline]
fn admit_governor(limiter: &DefaultKeyedRateLimiter<KeyHash>, key: &KeyHash) {
    assert!(
        black_box(limiter.check_key(key)).is_ok(),
        "the bench quota refused a call"
    );
}

pub(crate) fn bench_all(c: &mut Criterion) {
    for (count, label) in [(1, "1"), (1_000, "1k"), (1_000_000, "1m")] {
        for threads in [1, 2] {
            bench_admission(c, count, label, threads);
        }
    }
    bench_layer(c);
}

fn group_name(label: &str, threads: usize) -> &'static str {
    match (label, threads) {
        ("1", 1) => "throttle_1_key_1_thread",
        ("1", _) => "throttle_1_key_2_threads",
        ("1k", 1) => "throttle_1k_keys_1_thread",
        ("1k", _) => "throttle_1k_keys_2_threads",
        ("1m", 1) => "throttle_1m_keys_1_thread",
        _ => "throttle_1m_keys_2_threads",
    }
}

fn bench_admission(c: &mut Criterion, count: usize, label: &str, threads: usize) {
    let name = group_name(label, threads);
    if !support::wants(name) {
        return;
    }
    let keys = keys(count);
    let store = MemoryStore::<KeyHash>::new(Instant::now());
    let limiter: DefaultKeyedRateLimiter<KeyHash> = RateLimiter::keyed(governor_quota());
    // Every key is live before the clock starts.
    for key in &keys {
        admit_towline(&store, key);
        admit_governor(&limiter, key);
    }

    let mut group = Compare::new(c, name);
    if threads == 1 {
        let mut at = 0;
        group.case(
            "towline",
            || (),
            |()| {
                at = (at + STEP) % keys.len();
                admit_towline(&store, &keys[at]);
            },
        );
        let mut at = 0;
        group.case(
            "governor",
            || (),
            |()| {
                at = (at + STEP) % keys.len();
                admit_governor(&limiter, &keys[at]);
            },
        );
    } else {
        group.case_custom("towline", |iters| {
            on_threads(threads, iters, &keys, |key| admit_towline(&store, key))
        });
        group.case_custom("governor", |iters| {
            on_threads(threads, iters, &keys, |key| admit_governor(&limiter, key))
        });
    }
    drop(group);
    support::report::figure(
        &format!("{name}: towline live keys after the run"),
        store.stats().live_keys as f64,
        "keys",
    );
}

/// `iters` admissions shared by `threads` threads, each walking the keys from its own start;
/// the wall time of the whole (criterion divides it by `iters`).
fn on_threads(
    threads: usize,
    iters: u64,
    keys: &[KeyHash],
    admit: impl Fn(&KeyHash) + Sync,
) -> Duration {
    let per_thread = iters.div_ceil(threads as u64);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let admit = &admit;
            scope.spawn(move || {
                let mut at = t * keys.len() / threads;
                for _ in 0..per_thread {
                    at = (at + STEP) % keys.len();
                    admit(&keys[at]);
                }
            });
        }
    });
    start.elapsed()
}

fn bench_layer(c: &mut Criterion) {
    if !support::wants("throttle_layer") {
        return;
    }
    let mut ours = ThrottleLayer::builder()
        .rate(RATE as f64)
        .burst(BURST)
        .build()
        .expect("a valid throttle")
        .layer(support::client());
    let limiter: DefaultKeyedRateLimiter<KeyHash> = RateLimiter::keyed(governor_quota());
    let mut inner = support::client();
    let mut by_hand = move |req: Request<Full<Bytes>>| {
        let key = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map_or(KeyHash::from(0), |v| KeyHash::of(v.as_bytes()));
        if limiter.check_key(&key).is_err() {
            panic!("the bench quota refused a call");
        }
        support::call(&mut inner, req)
    };
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check("by hand", by_hand(support::request()));

    let mut group = Compare::new(c, "throttle_layer");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("governor_by_hand", support::request, &mut by_hand);
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}
