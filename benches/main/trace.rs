//! Tracing: a span per call, with nothing installed and with an OpenTelemetry SDK whose
//! exporter drops everything.
//!
//! towline is its two layers as the stack uses them: the call layer (one `CLIENT` span per
//! call, GenAI and HTTP attributes, metrics) above the attempt layer (one HTTP span per attempt,
//! `traceparent` injected). The peer is what a tower user has instead: tower-http's
//! `TraceLayer::new_for_http()`, one `tracing` span per request with method, URI and version,
//! bridged to OpenTelemetry by `tracing-opentelemetry` (its request and response events are
//! switched off, so the peer records one span and nothing else: the least work it can do).
//!
//! - `trace_no_sdk`: no OpenTelemetry SDK (the API's no-op providers) and no `tracing`
//!   subscriber. towline with its default metrics on (no meter provider installed: the trace
//!   crate documents ~1.5 µs for describing the call's metric points) and off.
//! - `trace_sdk`: an `SdkTracerProvider` with a simple processor and a no-op exporter, shared
//!   by towline and the peer. `towline_call_span` is the call layer alone (one span, like the
//!   peer); `towline_sdk_metrics` adds an `SdkMeterProvider` whose periodic reader exports (every
//!   60 s) to an in-memory exporter.
//!
//! This module runs last: the peer installs a scoped `tracing` subscriber.

use criterion::Criterion;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use opentelemetry_sdk::testing::trace::NoopSpanExporter;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::{Layer, ServiceBuilder};
use tower_http::trace::TraceLayer as HttpTraceLayer;
use towline::trace::TraceLayer;
use tracing_subscriber::layer::SubscriberExt;

use crate::support::{self, Compare};

pub(crate) fn bench_all(c: &mut Criterion) {
    bench_no_sdk(c);
    bench_sdk(c);
}

/// The two towline layers over the client, as the stack puts them.
macro_rules! towline_layers {
    ($trace:expr) => {{
        let trace: TraceLayer = $trace;
        ServiceBuilder::new()
            .layer(trace.clone())
            .layer(trace.attempt_layer())
            .service(support::client())
    }};
}

/// tower-http's trace layer with its request and response events off.
macro_rules! tower_http_layer {
    () => {
        ServiceBuilder::new()
            .layer(
                HttpTraceLayer::new_for_http()
                    .on_request(())
                    .on_response(()),
            )
            .service(support::client())
    };
}

fn bench_no_sdk(c: &mut Criterion) {
    if !support::wants("trace_no_sdk") {
        return;
    }
    let mut ours = towline_layers!(TraceLayer::new());
    let mut ours_quiet = towline_layers!(
        TraceLayer::builder()
            .metrics(false)
            .build()
            .expect("a valid trace layer")
    );
    let mut theirs = tower_http_layer!();
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check(
        "towline quiet",
        support::call(&mut ours_quiet, support::request()),
    );
    support::check("tower-http", support::call(&mut theirs, support::request()));

    let mut group = Compare::new(c, "trace_no_sdk");
    group.case("towline_metrics", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("towline_no_metrics", support::request, |req| {
        support::call(&mut ours_quiet, req)
    });
    group.case("tower_http", support::request, |req| {
        support::call(&mut theirs, req)
    });
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}

fn bench_sdk(c: &mut Criterion) {
    if !support::wants("trace_sdk") {
        return;
    }
    let tracers = SdkTracerProvider::builder()
        .with_simple_exporter(NoopSpanExporter::new())
        .build();
    let meters = SdkMeterProvider::builder()
        .with_periodic_exporter(InMemoryMetricExporter::default())
        .build();
    let sdk = || TraceLayer::builder().tracer_provider(&tracers);
    let mut ours = towline_layers!(sdk().metrics(false).build().expect("a valid trace layer"));
    let mut call_span = sdk()
        .metrics(false)
        .build()
        .expect("a valid trace layer")
        .layer(support::client());
    let mut with_metrics = towline_layers!(
        sdk()
            .meter_provider(&meters)
            .build()
            .expect("a valid trace layer")
    );
    let mut theirs = tower_http_layer!();
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check(
        "towline call span",
        support::call(&mut call_span, support::request()),
    );
    support::check(
        "towline metrics",
        support::call(&mut with_metrics, support::request()),
    );

    let mut group = Compare::new(c, "trace_sdk");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("towline_call_span", support::request, |req| {
        support::call(&mut call_span, req)
    });
    group.case("towline_sdk_metrics", support::request, |req| {
        support::call(&mut with_metrics, req)
    });
    {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracers.tracer("tower-http")));
        let _scoped = tracing::subscriber::set_default(subscriber);
        support::check("tower-http", support::call(&mut theirs, support::request()));
        group.case("tower_http_otel", support::request, |req| {
            support::call(&mut theirs, req)
        });
    }
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}
