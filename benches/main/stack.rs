//! The whole default stack over a `service_fn`, success path: trace → session → retry →
//! throttle → breaker → attempt span → timeout → normalize → client, every layer with its
//! defaults (`towline::Stack::new()`), against the bare `service_fn`.
//!
//! No OpenTelemetry SDK is installed (the API's no-op providers). `Stack::new()` keeps the
//! trace layer's metrics on, which the trace crate documents as ~1.5 µs when no meter provider
//! is installed; `no_metrics` is the same stack with `TraceLayer::builder().metrics(false)`.
//! The request carries an API key and a session id, so every layer does its work.

use bytes::Bytes;
use criterion::Criterion;
use http::Request;
use http_body_util::Full;
use tower::{Service, ServiceExt};
use towline::trace::TraceLayer;
use towline::{ReplayBody, Stack};

use crate::support::{self, Compare};

pub(crate) fn bench_all(c: &mut Criterion) {
    if !support::wants("stack") {
        return;
    }
    // The attempt timeout makes a tokio timer: the calls run in a runtime's context.
    let runtime = support::current_thread();
    let _context = runtime.enter();
    let mut default = Stack::new().service(support::client::<ReplayBody<Full<Bytes>>>());
    let quiet = TraceLayer::builder()
        .metrics(false)
        .build()
        .expect("a valid trace layer");
    let mut no_metrics = Stack::new()
        .trace(quiet)
        .service(support::client::<ReplayBody<Full<Bytes>>>());
    let mut bare = support::client();
    support::check("default", support::call(&mut default, support::request()));
    support::check(
        "no_metrics",
        support::call(&mut no_metrics, support::request()),
    );

    report_future_size("stack/towline_default", &mut default);
    report_future_size("stack/bare", &mut bare);

    let mut group = Compare::new(c, "stack");
    group.case("towline_default", support::request, |req| {
        support::call(&mut default, req)
    });
    group.case("towline_no_metrics", support::request, |req| {
        support::call(&mut no_metrics, req)
    });
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}

/// The size of one call's response future: every layer nests its future in the one above, and
/// a future is moved by value as it is wrapped, boxed or spawned.
fn report_future_size<S>(name: &str, service: &mut S)
where
    S: Service<Request<Full<Bytes>>>,
    S::Error: std::fmt::Debug,
{
    support::now(service.ready()).expect("ready");
    let future = service.call(support::request());
    support::report::figure(
        &format!("{name}/future_bytes"),
        std::mem::size_of_val(&future) as f64,
        "bytes",
    );
}
