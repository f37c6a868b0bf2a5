//! Shared helpers: an SDK with in-memory exporters, a scripted provider, and a stand-in for the
//! session/retry/throttle/breaker layers that reports their decisions as core `Event`s.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Service, ServiceExt};
use towline_core::{ApiError, Error, ErrorKind, Event};
use towline_trace::{TraceBuilder, TraceLayer};

/// An OpenTelemetry SDK whose spans and metrics stay in memory.
pub(crate) struct Otel {
    pub(crate) spans: InMemorySpanExporter,
    pub(crate) metrics: InMemoryMetricExporter,
    pub(crate) tracer_provider: SdkTracerProvider,
    pub(crate) meter_provider: SdkMeterProvider,
}

impl Otel {
    pub(crate) fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        Otel {
            spans,
            metrics,
            tracer_provider,
            meter_provider,
        }
    }

    /// A builder wired to this SDK and the W3C trace-context propagator.
    pub(crate) fn builder(&self) -> TraceBuilder {
        TraceLayer::builder()
            .tracer_provider(&self.tracer_provider)
            .meter_provider(&self.meter_provider)
            .propagator(TraceContextPropagator::new())
    }

    pub(crate) fn layer(&self) -> TraceLayer {
        self.builder().build().unwrap()
    }

    pub(crate) fn finished_spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }

    /// Every data point of the latest (cumulative) collection.
    pub(crate) fn points(&self) -> Vec<Point> {
        self.meter_provider.force_flush().unwrap();
        let exported = self.metrics.get_finished_metrics().unwrap();
        exported.last().map(flatten).unwrap_or_default()
    }
}

/// One metric data point, flattened for assertions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) metric: String,
    pub(crate) attrs: BTreeMap<String, String>,
    /// Sum or gauge value, or the histogram's sum.
    pub(crate) value: f64,
    /// The histogram's count (0 for sums and gauges).
    pub(crate) count: u64,
    /// The histogram's bucket boundaries.
    pub(crate) bounds: Vec<f64>,
}

fn attr_map<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    attrs
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn flatten(rm: &ResourceMetrics) -> Vec<Point> {
    let mut points = Vec::new();
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            let name = metric.name().to_owned();
            let mut push = |attrs, value, count, bounds| {
                points.push(Point {
                    metric: name.clone(),
                    attrs,
                    value,
                    count,
                    bounds,
                })
            };
            macro_rules! data {
                ($data:expr) => {
                    match $data {
                        MetricData::Sum(sum) => {
                            for p in sum.data_points() {
                                push(attr_map(p.attributes()), p.value() as f64, 0, vec![]);
                            }
                        }
                        MetricData::Gauge(gauge) => {
                            for p in gauge.data_points() {
                                push(attr_map(p.attributes()), p.value() as f64, 0, vec![]);
                            }
                        }
                        MetricData::Histogram(h) => {
                            for p in h.data_points() {
                                push(
                                    attr_map(p.attributes()),
                                    p.sum() as f64,
                                    p.count(),
                                    p.bounds().collect(),
                                );
                            }
                        }
                        MetricData::ExponentialHistogram(_) => {}
                    }
                };
            }
            match metric.data() {
                AggregatedMetrics::F64(d) => data!(d),
                AggregatedMetrics::U64(d) => data!(d),
                AggregatedMetrics::I64(d) => data!(d),
            }
        }
    }
    points
}

/// The points of `metric` whose attributes include `with` and none of `without`.
pub(crate) fn points_where(
    points: &[Point],
    metric: &str,
    with: &[(&str, &str)],
    without: &[&str],
) -> Vec<Point> {
    points
        .iter()
        .filter(|p| p.metric == metric)
        .filter(|p| {
            with.iter()
                .all(|(k, v)| p.attrs.get(*k).map(String::as_str) == Some(*v))
        })
        .filter(|p| without.iter().all(|k| !p.attrs.contains_key(*k)))
        .cloned()
        .collect()
}

/// The single point of `metric` matching; panics naming what is there otherwise.
pub(crate) fn point(
    points: &[Point],
    metric: &str,
    with: &[(&str, &str)],
    without: &[&str],
) -> Point {
    let found = points_where(points, metric, with, without);
    assert_eq!(
        found.len(),
        1,
        "{metric} {with:?} without {without:?}: {:#?}",
        points
            .iter()
            .filter(|p| p.metric == metric)
            .collect::<Vec<_>>()
    );
    found.into_iter().next().unwrap()
}

pub(crate) fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

pub(crate) fn attr_str(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.to_string())
}

pub(crate) fn event_attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

pub(crate) fn spans_named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// The `traceparent` a span would send.
pub(crate) fn traceparent_of(trace_id: TraceId, span_id: SpanId) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

pub(crate) type Body = Full<Bytes>;

/// A chat request to Moonshot carrying `key` as a bearer token.
pub(crate) fn chat_request(key: &str) -> Request<Body> {
    Request::post("https://api.moonshot.ai/v1/chat/completions")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap()
}

/// One answer of the scripted provider, after `latency` of paused time.
pub(crate) enum Answer {
    Ok {
        status: StatusCode,
        request_id: &'static str,
    },
    Err(fn() -> Error),
}

pub(crate) fn ok(request_id: &'static str) -> Answer {
    Answer::Ok {
        status: StatusCode::OK,
        request_id,
    }
}

pub(crate) fn server_error() -> Error {
    ApiError::new(ErrorKind::Server, StatusCode::SERVICE_UNAVAILABLE)
        .with_provider_type("server_error")
        .with_provider_code("service_unavailable")
        .with_request_id("req-503")
        .into()
}

pub(crate) fn rate_limited() -> Error {
    ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
        .with_provider_type("rate_limit_reached_error")
        .with_request_id("req-429")
        .into()
}

pub(crate) fn quota() -> Error {
    ApiError::new(ErrorKind::QuotaExhausted, StatusCode::FORBIDDEN)
        .with_provider_type("exceeded_current_quota_error")
        .with_request_id("req-quota")
        .into()
}

/// What the scripted provider saw of each request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen(pub Arc<Mutex<Vec<HeaderMap>>>);

impl Seen {
    pub(crate) fn headers(&self) -> Vec<HeaderMap> {
        self.0.lock().unwrap().clone()
    }
}

/// A provider answering each request with the next scripted answer after `latency`.
pub(crate) fn provider(
    answers: Vec<Answer>,
    latency: Duration,
    seen: Seen,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Error, Future: Send> + Clone + Send
{
    let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
    tower::service_fn(move |req: Request<Body>| {
        seen.0.lock().unwrap().push(req.headers().clone());
        let answer = answers.lock().unwrap().pop_front().expect("script ran out");
        async move {
            tokio::time::sleep(latency).await;
            match answer {
                Answer::Ok { status, request_id } => Ok(Response::builder()
                    .status(status)
                    .header("x-request-id", request_id)
                    .body(Full::new(Bytes::from_static(b"{\"choices\":[]}")))
                    .unwrap()),
                Answer::Err(make) => Err(make()),
            }
        }
    })
}

/// One step of the stand-in for the layers between the two trace layers.
#[derive(Clone)]
pub(crate) enum Step {
    /// Wait this long (paused time), then report the event.
    Wait(Duration, Event),
    /// Report the event.
    Emit(Event),
    /// Send an attempt (a clone of the call's request) through the inner service; on failure,
    /// go on with the next step, on success return.
    Attempt,
    /// Give up with this error.
    Fail(fn() -> Error),
}

/// The session, retry, throttle and breaker layers as they report to the trace layer: each call
/// runs `steps`, emitting core `Event`s into the request's extensions and sending attempts
/// through `inner`. Returns the last attempt's result.
pub(crate) fn stand_in<S>(
    steps: Vec<Step>,
    inner: S,
) -> impl Service<Request<Body>, Response = S::Response, Error = Error, Future: Send> + Clone + Send
where
    S: Service<Request<Body>, Error = Error> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    tower::service_fn(move |req: Request<Body>| {
        let steps = steps.clone();
        let inner = inner.clone();
        async move {
            let mut last = None;
            for step in steps {
                match step {
                    Step::Wait(d, event) => {
                        tokio::time::sleep(d).await;
                        towline_core::event::emit(req.extensions(), || event);
                    }
                    Step::Emit(event) => towline_core::event::emit(req.extensions(), || event),
                    Step::Attempt => match inner.clone().oneshot(req.clone()).await {
                        Ok(resp) => return Ok(resp),
                        Err(e) => last = Some(e),
                    },
                    Step::Fail(make) => return Err(make()),
                }
            }
            Err(last.expect("the script ends with an attempt or a failure"))
        }
    })
}

pub(crate) fn secs(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
