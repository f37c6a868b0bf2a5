//! The span tree and its attributes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, channel::Channel};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, Value};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use towline_core::{CircuitState, Error, ErrorKind, Event, Observer};
use towline_trace::{RequestModel, TraceLayer, names};

use crate::support::*;

const KEY: &str = "sk-span-test-0123456789";

#[tokio::test(start_paused = true)]
async fn span_tree_of_a_queued_throttled_call_retried_twice() {
    let otel = Otel::new();
    let trace = otel.layer();
    let seen = Seen::default();
    let provider = provider(
        vec![
            Answer::Err(server_error),
            Answer::Err(rate_limited),
            ok("req-ok"),
        ],
        secs(200),
        seen.clone(),
    );
    let attempts = trace.attempt_layer().layer(provider);
    let throttle = |ms| Step::Wait(secs(ms), Event::ThrottleWaited { waited: secs(ms) });
    let retry = |attempt, reason| {
        Step::Wait(
            secs(100),
            Event::RetryScheduled {
                attempt,
                delay: secs(100),
                reason,
            },
        )
    };
    let steps = vec![
        Step::Wait(secs(150), Event::SessionWaited { waited: secs(150) }),
        throttle(20),
        Step::Attempt,
        retry(1, ErrorKind::Server),
        throttle(30),
        Step::Attempt,
        retry(2, ErrorKind::RateLimited),
        throttle(40),
        Step::Attempt,
    ];
    let svc = trace.layer(stand_in(steps, attempts));

    // The caller's own observer keeps hearing every decision.
    let heard = Arc::new(Mutex::new(Vec::new()));
    let mut req = chat_request(KEY);
    let sink = heard.clone();
    req.extensions_mut().insert(Observer::new(move |e: &Event| {
        sink.lock().unwrap().push(*e)
    }));

    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        otel.finished_spans()
            .iter()
            .all(|s| s.name != "chat kimi-k2"),
        "the call's span waits for the body"
    );
    resp.into_body().collect().await.unwrap();
    assert_eq!(heard.lock().unwrap().len(), 6);

    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let call = spans_named(&spans, "chat kimi-k2")[0];
    let tries = spans_named(&spans, "POST");
    assert_eq!(tries.len(), 3);

    // The call: a GenAI client span, root of the trace.
    assert_eq!(call.span_kind, SpanKind::Client);
    assert_eq!(call.parent_span_id, SpanId::INVALID);
    assert_eq!(call.status, Status::Unset);
    for (key, want) in [
        (names::GEN_AI_OPERATION_NAME, "chat"),
        (names::GEN_AI_PROVIDER_NAME, "moonshot"),
        (names::GEN_AI_REQUEST_MODEL, "kimi-k2"),
        (names::HTTP_REQUEST_METHOD, "POST"),
        (names::SERVER_ADDRESS, "api.moonshot.ai"),
        (names::SERVER_PORT, "443"),
        (
            names::URL_FULL,
            "https://api.moonshot.ai/v1/chat/completions",
        ),
        (names::HTTP_RESPONSE_STATUS_CODE, "200"),
        (names::PROVIDER_REQUEST_ID, "req-ok"),
    ] {
        assert_eq!(attr_str(call, key).as_deref(), Some(want), "{key}");
    }
    assert_eq!(attr(call, names::ERROR_TYPE), None);

    // Its events: every decision, in order, with its figures.
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
    let e = &call.events[0].attributes;
    assert_eq!(event_attr(e, names::WAIT), Some(&Value::F64(0.15)));
    let retries: Vec<_> = call
        .events
        .iter()
        .filter(|e| e.name == names::EVENT_RETRY_SCHEDULED)
        .map(|e| {
            (
                event_attr(&e.attributes, names::RETRY_ATTEMPT).cloned(),
                event_attr(&e.attributes, names::ERROR_TYPE).map(|v| v.to_string()),
                event_attr(&e.attributes, names::RETRY_DELAY).cloned(),
            )
        })
        .collect();
    assert_eq!(
        retries,
        [
            (
                Some(Value::I64(1)),
                Some("server".into()),
                Some(Value::F64(0.1))
            ),
            (
                Some(Value::I64(2)),
                Some("rate_limited".into()),
                Some(Value::F64(0.1))
            ),
        ]
    );

    // The attempts: HTTP client spans, children of the call, counted by resend_count.
    let trace_id = call.span_context.trace_id();
    for (i, attempt) in tries.iter().enumerate() {
        assert_eq!(attempt.span_kind, SpanKind::Client);
        assert_eq!(attempt.parent_span_id, call.span_context.span_id());
        assert_eq!(attempt.span_context.trace_id(), trace_id);
        let resend = attr(attempt, names::HTTP_REQUEST_RESEND_COUNT).cloned();
        assert_eq!(
            resend,
            (i > 0).then_some(Value::I64(i as i64)),
            "attempt {i}"
        );
        assert_eq!(
            attr_str(attempt, names::URL_FULL).as_deref(),
            Some("https://api.moonshot.ai/v1/chat/completions")
        );
    }
    let expect = [
        (
            Some("503"),
            Some("server"),
            Some("server_error"),
            Some("req-503"),
        ),
        (
            Some("429"),
            Some("rate_limited"),
            Some("rate_limit_reached_error"),
            Some("req-429"),
        ),
        (Some("200"), None, None, Some("req-ok")),
    ];
    for (attempt, (status, error_type, provider_type, request_id)) in tries.iter().zip(expect) {
        assert_eq!(
            attr_str(attempt, names::HTTP_RESPONSE_STATUS_CODE).as_deref(),
            status
        );
        assert_eq!(attr_str(attempt, names::ERROR_TYPE).as_deref(), error_type);
        assert_eq!(
            attr_str(attempt, names::PROVIDER_ERROR_TYPE).as_deref(),
            provider_type
        );
        assert_eq!(
            attr_str(attempt, names::PROVIDER_REQUEST_ID).as_deref(),
            request_id
        );
        let failed = matches!(attempt.status, Status::Error { .. });
        assert_eq!(failed, error_type.is_some());
    }

    // Each attempt carried its own span's context to the provider.
    let sent: Vec<_> = seen
        .headers()
        .iter()
        .map(|h| h["traceparent"].to_str().unwrap().to_owned())
        .collect();
    let want: Vec<_> = tries
        .iter()
        .map(|s| traceparent_of(trace_id, s.span_context.span_id()))
        .collect();
    assert_eq!(sent, want);
}

#[tokio::test(start_paused = true)]
async fn span_of_a_call_cut_by_an_open_breaker() {
    let otel = Otel::new();
    let trace = otel.layer();
    let attempts = trace
        .attempt_layer()
        .layer(provider(vec![], secs(1), Seen::default()));
    let steps = vec![
        Step::Emit(Event::BreakerTransition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
        }),
        Step::Emit(Event::BreakerRejected {
            retry_after: Duration::from_secs(5),
        }),
        Step::Fail(|| Error::circuit_open(Duration::from_secs(5))),
    ];
    let svc = trace.layer(stand_in(steps, attempts));

    let err = svc.oneshot(chat_request(KEY)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);

    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 1, "no attempt was sent: {spans:#?}");
    let call = &spans[0];
    assert_eq!(call.name, "chat kimi-k2");
    assert_eq!(
        attr_str(call, names::ERROR_TYPE).as_deref(),
        Some("circuit_open")
    );
    assert_eq!(attr(call, names::HTTP_RESPONSE_STATUS_CODE), None);
    assert_eq!(call.status, Status::error("circuit_open"));
    let events: Vec<_> = call.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        events,
        [
            names::EVENT_BREAKER_TRANSITION,
            names::EVENT_BREAKER_REJECTED
        ]
    );
    let transition = &call.events[0].attributes;
    assert_eq!(
        event_attr(transition, names::BREAKER_TO).map(|v| v.to_string()),
        Some("open".into())
    );
    let rejected = &call.events[1].attributes;
    assert_eq!(
        event_attr(rejected, names::RETRY_AFTER),
        Some(&Value::F64(5.0))
    );
}

type Stream = Channel<Bytes, Error>;
type StreamSender = Arc<Mutex<Option<http_body_util::channel::Sender<Bytes, Error>>>>;
type Traced<B> = towline_trace::ResponseBody<towline_trace::ResponseBody<B>>;

fn streaming_request() -> Request<Full<Bytes>> {
    Request::post("https://api.openai.com/v1/chat/completions")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from_static(
            br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","stream":true}"#,
        )))
        .unwrap()
}

/// A provider answering with a stream the test feeds through the returned sender.
fn streaming_stack(
    trace: TraceLayer,
) -> (
    impl tower::Service<Request<Full<Bytes>>, Response = Response<Traced<Stream>>, Error = Error>,
    StreamSender,
) {
    let sender = Arc::new(Mutex::new(None));
    let slot = sender.clone();
    let client = service_fn(move |_req: Request<Full<Bytes>>| {
        let (tx, body) = Stream::new(4);
        *slot.lock().unwrap() = Some(tx);
        async move {
            tokio::time::sleep(secs(300)).await; // time to first byte
            Ok::<_, Error>(Response::new(body))
        }
    });
    let attempts = trace.attempt_layer();
    let svc = ServiceBuilder::new()
        .layer(trace)
        .layer(attempts)
        .service(client);
    (svc, sender)
}

#[tokio::test(start_paused = true)]
async fn streamed_span_ends_when_the_stream_ends() {
    let otel = Otel::new();
    let (svc, sender) = streaming_stack(otel.layer());

    let resp = svc.oneshot(streaming_request()).await.unwrap();
    let mut tx = sender.lock().unwrap().take().unwrap();
    let mut body = resp.into_body();
    assert!(
        otel.finished_spans().is_empty(),
        "headers arrived, the stream goes on"
    );

    tokio::time::sleep(secs(200)).await;
    tx.send_data(Bytes::from_static(b"data: {\"choices\":[]}\n\n"))
        .await
        .unwrap();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    tokio::time::sleep(secs(1_000)).await;
    assert!(otel.finished_spans().is_empty(), "mid-stream");

    drop(tx);
    assert!(body.frame().await.is_none());
    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 2);
    let call = spans_named(&spans, "chat gpt-4o")[0];
    assert_eq!(
        attr_str(call, names::GEN_AI_PROVIDER_NAME).as_deref(),
        Some("openai")
    );
    assert_eq!(
        attr(call, names::GEN_AI_REQUEST_STREAM),
        Some(&Value::Bool(true))
    );
    assert_eq!(attr(call, names::ERROR_TYPE), None);
    assert_eq!(
        attr(call, names::GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        Some(&Value::F64(0.5)),
        "300 ms to the head, 200 ms more to the first chunk"
    );
    assert!(call.events.is_empty());
}

#[tokio::test(start_paused = true)]
async fn streamed_span_ends_when_the_body_is_dropped() {
    let otel = Otel::new();
    let (svc, sender) = streaming_stack(otel.layer());

    let resp = svc.oneshot(streaming_request()).await.unwrap();
    let mut tx = sender.lock().unwrap().take().unwrap();
    let mut body = resp.into_body();
    tx.send_data(Bytes::from_static(b"data: {}\n\n"))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    assert!(otel.finished_spans().is_empty());

    drop(body); // the caller stops reading mid-answer
    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 2);
    let call = spans_named(&spans, "chat gpt-4o")[0];
    let events: Vec<_> = call.events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(events, [names::EVENT_BODY_DROPPED]);
    assert_eq!(
        call.status,
        Status::Unset,
        "stopping early is not a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn streamed_span_records_a_broken_stream() {
    let otel = Otel::new();
    let (svc, sender) = streaming_stack(otel.layer());

    let resp = svc.oneshot(streaming_request()).await.unwrap();
    let mut tx = sender.lock().unwrap().take().unwrap();
    let mut body = resp.into_body();
    tx.send_data(Bytes::from_static(b"data: {}\n\n"))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    tx.abort(Error::stream_interrupted(server_error()));
    assert!(body.frame().await.unwrap().is_err());

    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            attr_str(span, names::ERROR_TYPE).as_deref(),
            Some("stream_interrupted"),
            "{}",
            span.name
        );
        assert_eq!(span.status, Status::error("stream_interrupted"));
        // The provider's details of the cause are kept.
        assert_eq!(
            attr_str(span, names::PROVIDER_REQUEST_ID).as_deref(),
            Some("req-503")
        );
    }
}

#[tokio::test(start_paused = true)]
async fn span_of_a_dropped_call_ends_as_cancelled() {
    let otel = Otel::new();
    let trace = otel.layer();
    let client = service_fn(|_req: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Error>(Response::new(Full::new(Bytes::new())))
    });
    let svc = ServiceBuilder::new()
        .layer(trace.clone())
        .layer(trace.attempt_layer())
        .service(client);
    let call = svc.oneshot(chat_request(KEY));
    assert!(
        tokio::time::timeout(secs(100), call).await.is_err(),
        "the caller gives up"
    );
    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            attr_str(span, names::ERROR_TYPE).as_deref(),
            Some("cancelled")
        );
        assert_eq!(span.status, Status::Unset);
    }
}

#[tokio::test]
async fn span_parent_comes_from_the_request_or_the_configured_context() {
    let otel = Otel::new();
    let remote = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let client = || {
        service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Error>(Response::new(Full::new(Bytes::new())))
        })
    };

    // From the request's extensions.
    let trace = otel.layer();
    let svc = trace.layer(trace.attempt_layer().layer(client()));
    let mut req = chat_request(KEY);
    req.extensions_mut()
        .insert(Context::new().with_remote_span_context(remote.clone()));
    svc.oneshot(req).await.unwrap();

    // From the configured function.
    let parent = remote.clone();
    let trace = otel
        .builder()
        .parent_context(move || Context::new().with_remote_span_context(parent.clone()))
        .build()
        .unwrap();
    let svc = trace.layer(trace.attempt_layer().layer(client()));
    svc.oneshot(chat_request(KEY)).await.unwrap();

    let calls: Vec<_> = otel
        .finished_spans()
        .into_iter()
        .filter(|s| s.name == "chat kimi-k2")
        .collect();
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(call.span_context.trace_id(), remote.trace_id());
        assert_eq!(call.parent_span_id, remote.span_id());
        assert!(call.parent_span_is_remote);
    }
}

#[tokio::test]
async fn span_model_from_extension_header_path_or_body() {
    let otel = Otel::new();
    let trace = otel
        .builder()
        .model_header(http::HeaderName::from_static("x-model"))
        .provider_name("my-gateway")
        .build()
        .unwrap();
    let client = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Error>(Response::new(Full::new(Bytes::new())))
    });
    let svc = trace.layer(client);
    let body = || Full::new(Bytes::from_static(br#"{"model":"from-body"}"#));

    let mut with_ext = Request::post("http://localhost:8080/v1/chat/completions")
        .header("x-model", "from-header")
        .body(body())
        .unwrap();
    with_ext
        .extensions_mut()
        .insert(RequestModel::new("from-extension"));
    let with_header = Request::post("http://localhost:8080/v1/chat/completions")
        .header("x-model", "from-header")
        .body(body())
        .unwrap();
    let gemini = Request::post(
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key=AIza-secret",
    )
    .body(body())
    .unwrap();
    let from_body = Request::post("http://localhost:8080/v1/embeddings")
        .body(body())
        .unwrap();
    for req in [with_ext, with_header, gemini, from_body] {
        svc.clone().oneshot(req).await.unwrap();
    }
    let names: Vec<_> = otel
        .finished_spans()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "chat from-extension",
            "chat from-header",
            "generate_content gemini-2.0-flash",
            "embeddings from-body",
        ]
    );
    let spans = otel.finished_spans();
    // The configured provider name wins over the host's.
    assert!(
        spans
            .iter()
            .all(|s| attr_str(s, names::GEN_AI_PROVIDER_NAME).as_deref() == Some("my-gateway"))
    );
    assert_eq!(
        attr_str(&spans[2], names::URL_FULL).as_deref(),
        Some(
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent?key=REDACTED"
        )
    );
}

#[tokio::test]
async fn span_of_an_unnormalized_error_status_uses_the_status_code() {
    let otel = Otel::new();
    let trace = otel.layer();
    let client = service_fn(|_req: Request<Full<Bytes>>| async {
        let resp = Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::from_static(b"bad gateway")))
            .unwrap();
        Ok::<_, Error>(resp)
    });
    let svc = trace.layer(trace.attempt_layer().layer(client));
    let resp = svc.oneshot(chat_request(KEY)).await.unwrap();
    resp.into_body().collect().await.unwrap();
    for span in otel.finished_spans() {
        assert_eq!(attr_str(&span, names::ERROR_TYPE).as_deref(), Some("502"));
        assert_eq!(span.status, Status::error("502"));
    }
}

/// A tracer with no SDK behind it: the API's no-op tracer, counting the spans asked of it.
#[derive(Debug, Clone, Default)]
struct CountingNoop(Arc<std::sync::atomic::AtomicUsize>);

impl opentelemetry::trace::Tracer for CountingNoop {
    type Span = opentelemetry::trace::noop::NoopSpan;

    fn build_with_context(
        &self,
        builder: opentelemetry::trace::SpanBuilder,
        parent_cx: &Context,
    ) -> Self::Span {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        opentelemetry::trace::noop::NoopTracer::new().build_with_context(builder, parent_cx)
    }
}

impl opentelemetry::trace::TracerProvider for CountingNoop {
    type Tracer = CountingNoop;

    fn tracer_with_scope(&self, _scope: opentelemetry::InstrumentationScope) -> Self::Tracer {
        self.clone()
    }
}

#[tokio::test]
async fn no_sdk_builds_one_span_then_none_but_still_propagates() {
    let tracer = CountingNoop::default();
    let trace = TraceLayer::builder()
        .tracer_provider(&tracer)
        .propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new())
        .metrics(false)
        .build()
        .unwrap();
    let seen = Seen::default();
    let svc = trace.layer(trace.attempt_layer().layer(provider(
        (0..5).map(|_| ok("r")).collect(),
        secs(0),
        seen.clone(),
    )));
    let remote = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    for _ in 0..5 {
        let mut req = chat_request(KEY);
        req.extensions_mut()
            .insert(Context::new().with_remote_span_context(remote.clone()));
        svc.clone().oneshot(req).await.unwrap();
    }
    assert_eq!(
        tracer.0.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "only the first call's span is built, to learn the tracer is a no-op"
    );
    let want = traceparent_of(remote.trace_id(), remote.span_id());
    let sent: Vec<_> = seen
        .headers()
        .iter()
        .map(|h| h["traceparent"].clone())
        .collect();
    assert_eq!(sent.len(), 5);
    assert!(sent.iter().all(|tp| tp == want.as_str()), "{sent:?}");
}

#[tokio::test]
async fn attempt_span_alone_follows_the_current_context() {
    let otel = Otel::new();
    let seen = Seen::default();
    let svc = otel
        .layer()
        .attempt_layer()
        .layer(provider(vec![ok("r")], secs(0), seen.clone()));
    let resp = svc.oneshot(chat_request(KEY)).await.unwrap();
    resp.into_body().collect().await.unwrap();
    let spans = otel.finished_spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "POST");
    assert_eq!(attr(&spans[0], names::HTTP_REQUEST_RESEND_COUNT), None);
    let tp = seen.headers()[0]["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        tp,
        traceparent_of(
            spans[0].span_context.trace_id(),
            spans[0].span_context.span_id()
        )
    );
}

#[tokio::test]
async fn span_frame_of_an_empty_body_ends_with_the_response() {
    let otel = Otel::new();
    let trace = otel.layer();
    let client = service_fn(|_req: Request<Full<Bytes>>| async {
        let resp = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .unwrap();
        Ok::<_, Error>(resp)
    });
    let svc = trace.layer(trace.attempt_layer().layer(client));
    let resp = svc.oneshot(chat_request(KEY)).await.unwrap();
    assert_eq!(otel.finished_spans().len(), 2, "nothing left to wait for");
    let mut body = resp.into_body();
    let none: Option<Result<Frame<Bytes>, _>> = body.frame().await;
    assert!(none.is_none());
    assert!(otel.finished_spans().iter().all(|s| s.events.is_empty()));
}

#[test]
fn span_carrying_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    type Fut = std::future::Ready<Result<Response<Full<Bytes>>, Error>>;
    send_sync::<towline_trace::ResponseFuture<Fut>>();
    send_sync::<towline_trace::ResponseBody<Full<Bytes>>>();
    send_sync::<towline_trace::Trace<()>>();
    send_sync::<towline_trace::TraceAttempt<()>>();
    send_sync::<TraceLayer>();
    send_sync::<towline_trace::AttemptLayer>();
}
