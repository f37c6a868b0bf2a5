//! Breaker, closed path: what a successful call pays for being guarded.
//!
//! Peers with their defaults: tower-resilience's `CircuitBreakerLayer` (count-based window
//! of 100 calls, one state for every endpoint) and failsafe-rs's `StateMachine` (success rate
//! over a time window or consecutive failures, one state; wrapping the client's future as its
//! docs show). towline keeps one circuit per
//! endpoint (its default), so it also extracts and hashes the request's `host:port`.

use bytes::Bytes;
use criterion::Criterion;
use failsafe::futures::CircuitBreaker as _;
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_resilience::circuitbreaker::CircuitBreakerLayer;
use towline::breaker::BreakerLayer;

use crate::support::{self, Compare, now};

pub(crate) fn bench_all(c: &mut Criterion) {
    if !support::wants("breaker_closed") {
        return;
    }
    let mut ours = BreakerLayer::new().layer(support::client());
    let mut resilience = CircuitBreakerLayer::builder()
        .build()
        .expect("tower-resilience's defaults are valid")
        .layer(support::client());
    let failsafe = failsafe::Config::new().build();
    let mut inner = support::client::<Full<Bytes>>();
    let mut failsafe_call = move |req| {
        now(inner.ready()).expect("ready");
        let response = now(failsafe.call(inner.call(req))).expect("closed: the call goes through");
        support::drain(response.into_body());
    };
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check(
        "tower-resilience",
        support::call(&mut resilience, support::request()),
    );
    failsafe_call(support::request());

    let mut group = Compare::new(c, "breaker_closed");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("tower_resilience", support::request, |req| {
        support::call(&mut resilience, req)
    });
    group.case("failsafe", support::request, &mut failsafe_call);
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}
