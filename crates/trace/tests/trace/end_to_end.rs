//! The whole path over real HTTP: trace → retry (the real layer) → attempt → normalize →
//! hyper-util client → the towline mock provider on loopback.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::Status;
use tower::{Service, ServiceBuilder, ServiceExt, layer::layer_fn};
use towline_breaker::BreakerLayer;
use towline_core::{CircuitState, ErrorKind};
use towline_core::{Event, ReplayBody};
use towline_mock::{Dialect, Fault, MockProvider, Script};
use towline_normalize::NormalizeLayer;
use towline_retry::RetryLayer;
use towline_trace::names;

use crate::support::*;

const KEY: &str = "sk-e2e-span-metric-5551";

/// Stands for the session and throttle layers (not yet on main): waits, then reports the wait
/// as the real layer would, then calls the inner service.
#[derive(Clone)]
struct Waits<S> {
    inner: S,
    wait: Duration,
    event: Event,
}

impl<S, B> Service<Request<B>> for Waits<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let (wait, event) = (self.wait, self.event);
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            towline_core::event::emit(req.extensions(), || event);
            inner.call(req).await
        })
    }
}

fn waits<S>(wait: Duration, event: Event) -> impl tower::Layer<S, Service = Waits<S>> + Clone {
    layer_fn(move |inner| Waits { inner, wait, event })
}

#[tokio::test(start_paused = true)]
async fn span_tree_over_http_queued_throttled_retried_twice_traceparent_at_the_mock() {
    let server = MockProvider::builder()
        .models(["kimi-k2"])
        .key(
            KEY,
            Script::new(Dialect::Moonshot).fault(Fault::server_error().first(2)),
        )
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let trace = otel.layer();
    let client = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let svc = ServiceBuilder::new()
        .layer(trace.clone())
        .layer(waits(secs(150), Event::SessionWaited { waited: secs(150) }))
        .layer(
            RetryLayer::builder()
                .max_retries(3)
                .seed(7)
                .build()
                .unwrap(),
        )
        .layer(waits(secs(20), Event::ThrottleWaited { waited: secs(20) }))
        .layer(trace.attempt_layer())
        .layer(NormalizeLayer::new())
        .service(client);

    let req = Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();

    // The spans: one call, three attempts, two of them 500s the retry layer retried.
    let spans = otel.finished_spans();
    let call = spans_named(&spans, "chat kimi-k2")[0];
    let tries = spans_named(&spans, "POST");
    assert_eq!(tries.len(), 3, "{spans:#?}");
    let port = server.addr().port().to_string();
    assert_eq!(
        attr_str(call, names::SERVER_ADDRESS).as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(attr_str(call, names::SERVER_PORT), Some(port));
    assert_eq!(
        attr_str(call, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
        Some("200")
    );
    assert_eq!(call.status, Status::Unset);
    let events: Vec<_> = call.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        events,
        [
            names::EVENT_SESSION_WAITED,
            names::EVENT_THROTTLE_WAITED,
            names::EVENT_RETRY_SCHEDULED,
            names::EVENT_THROTTLE_WAITED,
            names::EVENT_RETRY_SCHEDULED,
            names::EVENT_THROTTLE_WAITED,
        ]
    );
    let retried: Vec<_> = call
        .events
        .iter()
        .filter(|e| e.name == names::EVENT_RETRY_SCHEDULED)
        .map(|e| event_attr(&e.attributes, names::ERROR_TYPE).map(|v| v.to_string()))
        .collect();
    assert_eq!(
        retried,
        [Some("server".to_owned()), Some("server".to_owned())]
    );
    for (i, attempt) in tries.iter().enumerate() {
        assert_eq!(attempt.parent_span_id, call.span_context.span_id());
        let resend = attr_str(attempt, names::HTTP_REQUEST_RESEND_COUNT);
        assert_eq!(resend, (i > 0).then(|| i.to_string()));
        let status = attr_str(attempt, names::HTTP_RESPONSE_STATUS_CODE);
        let class = attr_str(attempt, names::ERROR_TYPE);
        if i < 2 {
            assert_eq!(status.as_deref(), Some("500"));
            assert_eq!(class.as_deref(), Some("server"));
        } else {
            assert_eq!(status.as_deref(), Some("200"));
            assert_eq!(class, None);
        }
    }

    // The mock's journal: each arrival carried its own attempt span as its parent.
    let journal = server.journal();
    let seen: Vec<_> = journal
        .arrivals()
        .iter()
        .map(|a| a.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    let sent: Vec<_> = tries
        .iter()
        .map(|s| traceparent_of(s.span_context.trace_id(), s.span_context.span_id()))
        .collect();
    assert_eq!(seen, sent);
    assert!(
        journal
            .arrivals()
            .iter()
            .all(|a| !a.headers.contains_key("authorization"))
    );

    // The metrics of the same run.
    let points = otel.points();
    let failed = point(
        &points,
        names::HTTP_CLIENT_REQUEST_DURATION,
        &[
            (names::ERROR_TYPE, "server"),
            (names::HTTP_RESPONSE_STATUS_CODE, "500"),
        ],
        &[],
    );
    assert_eq!(failed.count, 2);
    let ok = point(
        &points,
        names::HTTP_CLIENT_REQUEST_DURATION,
        &[(names::HTTP_RESPONSE_STATUS_CODE, "200")],
        &[names::ERROR_TYPE],
    );
    assert_eq!(ok.count, 1);
    assert_eq!(
        point(
            &points,
            names::RETRIES,
            &[(names::ERROR_TYPE, "server")],
            &[]
        )
        .value,
        2.0
    );
    assert_eq!(
        point(&points, names::CALLS, &[], &[names::ERROR_TYPE]).value,
        1.0
    );
}

#[tokio::test(start_paused = true)]
async fn span_of_a_call_cut_by_the_real_breaker_over_http() {
    let server = MockProvider::builder()
        .models(["kimi-k2"])
        .key(
            KEY,
            Script::new(Dialect::Moonshot).fault(Fault::server_error()),
        )
        .start()
        .await
        .unwrap();
    let otel = Otel::new();
    let trace = otel.layer();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let breaker = BreakerLayer::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(5))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(trace.clone())
        .layer(breaker)
        .layer(trace.attempt_layer())
        .layer(NormalizeLayer::new())
        .service(client);
    let request = || {
        Request::post(server.url("/chat/completions"))
            .header("x-api-key", KEY)
            .body(Full::new(Bytes::from_static(
                br#"{"model":"kimi-k2","messages":[]}"#,
            )))
            .unwrap()
    };

    // One after the other.
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(svc.clone().oneshot(request()).await.unwrap_err().kind());
    }
    assert_eq!(
        got,
        [ErrorKind::Server, ErrorKind::Server, ErrorKind::CircuitOpen]
    );
    assert_eq!(server.journal().arrivals().len(), 2, "the third never left");

    let spans = otel.finished_spans();
    let calls = spans_named(&spans, "chat kimi-k2");
    assert_eq!(calls.len(), 3);
    assert_eq!(
        spans_named(&spans, "POST").len(),
        2,
        "no attempt span for the cut call"
    );
    // The second call's failure opened the circuit: its span says so.
    let opened: Vec<_> = calls[1]
        .events
        .iter()
        .filter(|e| e.name == names::EVENT_BREAKER_TRANSITION)
        .map(|e| event_attr(&e.attributes, names::BREAKER_TO).map(|v| v.to_string()))
        .collect();
    assert_eq!(opened, [Some(CircuitState::Open.as_str().to_owned())]);
    // The third was cut: an event with the time to the next probe, and error.type.
    let cut = calls[2];
    assert_eq!(
        attr_str(cut, names::ERROR_TYPE).as_deref(),
        Some("circuit_open")
    );
    assert_eq!(cut.status, Status::error("circuit_open"));
    let rejected: Vec<_> = cut
        .events
        .iter()
        .filter(|e| e.name == names::EVENT_BREAKER_REJECTED)
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(event_attr(&rejected[0].attributes, names::RETRY_AFTER).is_some());

    let points = otel.points();
    let open = point(
        &points,
        names::BREAKER_STATE_GAUGE,
        &[(names::BREAKER_STATE, "open")],
        &[],
    );
    assert_eq!(open.value, 1.0);
    assert_eq!(
        point(&points, names::BREAKER_REJECTIONS, &[], &[]).value,
        1.0
    );
    assert_eq!(
        point(
            &points,
            names::CALLS,
            &[(names::ERROR_TYPE, "circuit_open")],
            &[]
        )
        .value,
        1.0
    );
}
