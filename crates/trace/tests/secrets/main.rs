//! The API key never reaches a span, an event, a metric attribute or a log line.
//!
//! A test binary of its own: `tracing`'s per-callsite interest cache is process-wide, and a
//! test on another thread hitting a callsite first, with no subscriber, could hide log lines
//! from this test's thread-local subscriber.

#[path = "../trace/support.rs"]
mod support;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, channel::Channel};
use opentelemetry_sdk::trace::SpanData;
use tower::{Layer, Service, ServiceExt, service_fn};
use towline_core::{
    ApiError, CircuitState, Error, ErrorKind, Event, SessionQueueReason, StopReason, ThrottleReason,
};

use support::*;

/// Recognizable in any output, whole or in part.
const SECRET: &str = "QZX9SECRETKEY7741";
const KEY: &str = "sk-live-QZX9SECRETKEY7741";

/// A request carrying the key everywhere a client might put it.
fn leaky_request() -> Request<Full<Bytes>> {
    Request::post(format!(
        "https://user:{KEY}@api.moonshot.ai/v1/chat/completions?key={KEY}&api-version=2024-10-21&{KEY}"
    ))
    .header("authorization", format!("Bearer {KEY}"))
    .header("x-api-key", KEY)
    .header("api-key", KEY)
    .header("x-goog-api-key", KEY)
    .header("cookie", format!("session={KEY}"))
    .header("proxy-authorization", format!("Basic {KEY}"))
    .body(Full::new(Bytes::from_static(
        br#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#,
    )))
    .unwrap()
}

/// A provider error that echoes the key in its message, as some providers do; towline keeps
/// such messages out of telemetry.
fn echoing_error() -> Error {
    ApiError::new(ErrorKind::Authentication, StatusCode::UNAUTHORIZED)
        .with_provider_type("invalid_authentication_error")
        .with_message(format!("Incorrect API key provided: {KEY}"))
        .with_request_id("req-auth")
        .into()
}

fn echoing_transport() -> Error {
    Error::transport(io::Error::other(format!("proxy refused {KEY}")))
}

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn every_event() -> Vec<Step> {
    let d = Duration::from_millis(5);
    [
        Event::SessionWaited { waited: d },
        Event::SessionRejected {
            reason: SessionQueueReason::Full { limit: 4 },
        },
        Event::ThrottleWaited { waited: d },
        Event::ThrottleRejected {
            reason: ThrottleReason::PausedByProvider,
            retry_after: Some(d),
        },
        Event::KeyPaused {
            key: Some(towline_core::KeyHash::of(KEY.as_bytes())),
            pause: d,
            cause: ErrorKind::RateLimited,
        },
        Event::RateLearned {
            key: Some(towline_core::KeyHash::of(KEY.as_bytes())),
            per_second: 3.0,
        },
        Event::BreakerRejected { retry_after: d },
        Event::BreakerTransition {
            from: CircuitState::Open,
            to: CircuitState::HalfOpen,
        },
        Event::RetryScheduled {
            attempt: 1,
            delay: d,
            reason: ErrorKind::Server,
        },
        Event::RetryStopped {
            attempts: 2,
            reason: StopReason::BudgetExhausted,
        },
    ]
    .into_iter()
    .map(Step::Emit)
    .collect()
}

fn span_text(span: &SpanData) -> String {
    let mut text = format!("{} {:?} {:?}\n", span.name, span.status, span.span_kind);
    for kv in &span.attributes {
        text += &format!("{}={}\n", kv.key, kv.value);
    }
    for event in span.events.iter() {
        text += &format!("event {}\n", event.name);
        for kv in &event.attributes {
            text += &format!("  {}={}\n", kv.key, kv.value);
        }
    }
    text
}

#[tokio::test(start_paused = true)]
async fn span_event_metric_and_log_never_hold_the_api_key() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _log_guard = tracing::subscriber::set_default(subscriber);

    let otel = Otel::new();
    let trace = otel
        .builder()
        .keep_query_value("api-version")
        .build()
        .unwrap();
    let attempts = trace.attempt_layer();
    let mut error_debug = String::new();
    let mut type_debug = format!("{trace:?} {attempts:?} {:?}", otel.builder());

    // Success through every decision event.
    let mut steps = every_event();
    steps.push(Step::Attempt);
    let svc = trace.layer(stand_in(
        steps,
        attempts.layer(provider(vec![ok("req-ok")], secs(10), Seen::default())),
    ));
    let resp = svc.oneshot(leaky_request()).await.unwrap();
    type_debug += &format!("{resp:?}");
    resp.into_body().collect().await.unwrap();

    // Failures that do not mention the key: their Debug must stay clean too.
    for fail in [
        server_error as fn() -> Error,
        quota,
        rate_limited,
        || Error::circuit_open(Duration::from_secs(1)),
        || Error::throttled(ThrottleReason::StoreUnavailable, None),
        || Error::session_queue_full(SessionQueueReason::Full { limit: 1 }),
        || Error::budget_exhausted(2, server_error()),
        || Error::deadline_exceeded(3, Some(rate_limited())),
        || Error::timeout(Duration::from_secs(30)),
    ] {
        let svc = trace.layer(stand_in(
            vec![Step::Attempt],
            attempts.layer(provider(vec![Answer::Err(fail)], secs(10), Seen::default())),
        ));
        let err = svc.oneshot(leaky_request()).await.unwrap_err();
        error_debug += &format!("{err:?} {err}\n");
    }

    // Failures whose text echoes the key: kept out of telemetry (not out of the error itself,
    // which is the Normalize layer's job).
    for fail in [echoing_error as fn() -> Error, echoing_transport] {
        let svc = trace.layer(attempts.layer(provider(
            vec![Answer::Err(fail)],
            secs(10),
            Seen::default(),
        )));
        svc.oneshot(leaky_request()).await.unwrap_err();
    }

    // An unnormalized 401, a broken stream, a dropped body, a cancelled call.
    let unauthorized = service_fn(|_req: Request<Full<Bytes>>| async {
        let resp = Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("x-request-id", "req-401")
            .header("www-authenticate", format!("Bearer realm={KEY}"))
            .body(Full::new(Bytes::from(format!("bad key {KEY}"))))
            .unwrap();
        Ok::<_, Error>(resp)
    });
    let svc = trace.layer(attempts.layer(unauthorized));
    svc.oneshot(leaky_request())
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();

    for ending in 0..3 {
        let (mut tx, body) = Channel::<Bytes, Error>::new(2);
        let body = Mutex::new(Some(body));
        let client = service_fn(move |_req: Request<Full<Bytes>>| {
            let body = body.lock().unwrap().take().unwrap();
            async move {
                tokio::time::sleep(secs(10)).await;
                Ok::<_, Error>(Response::new(body))
            }
        });
        let mut svc = trace.layer(attempts.layer(client));
        let fut = svc.ready().await.unwrap().call(leaky_request());
        type_debug += &format!("{fut:?}");
        if ending == 2 {
            drop(fut); // cancelled
            continue;
        }
        let mut body = fut.await.unwrap().into_body();
        type_debug += &format!("{body:?}");
        tx.send_data(Bytes::from(format!("data: {KEY}\n\n")))
            .await
            .unwrap();
        body.frame().await.unwrap().unwrap();
        if ending == 0 {
            tx.abort(echoing_transport());
            let err = body.frame().await.unwrap().unwrap_err();
            drop(err);
        }
        drop(body);
    }

    // Everything that was exported.
    let spans = otel.finished_spans();
    assert!(spans.len() >= 16, "{} spans", spans.len());
    let span_dump: String = spans.iter().map(span_text).collect();
    assert!(span_dump.contains("url.full=https://REDACTED:REDACTED@api.moonshot.ai"));
    assert!(span_dump.contains("api-version=2024-10-21"));
    let metric_dump: String = otel
        .points()
        .iter()
        .map(|p| format!("{} {:?}\n", p.metric, p.attrs))
        .collect();
    assert!(metric_dump.contains("towline.client.calls"));
    let log_dump = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_dump.contains("towline call finished"),
        "logs were captured"
    );

    for (what, dump) in [
        ("spans", &span_dump),
        ("metrics", &metric_dump),
        ("logs", &log_dump),
        ("error Debug/Display", &error_debug),
        ("towline-trace types' Debug", &type_debug),
    ] {
        assert!(
            !dump.contains(SECRET),
            "the key leaked into {what}:\n{dump}"
        );
    }
}
