//! The API key never leaks: not into a log line, a span, a span event, a metric attribute, an
//! error's `Display` or `Debug` (or those of its sources), nor the `Debug` of the stack.
//!
//! Calls carry a recognizable key in every place a client may put one (`Authorization:
//! Bearer`, `x-api-key`, and the URL's query), through the full `towline::Stack` over a real
//! hyper-util client, with the tracing layer exporting to the OpenTelemetry SDK's in-memory
//! span and metric exporters, and a `tracing` subscriber at TRACE level writing every log line
//! of every thread into a buffer. Every error path is forced against the mock provider, some
//! of whose answers echo the key back (as providers do: "Incorrect API key provided: sk-…"):
//! authentication, quota with a reset, rate limit with a hint, a 5xx surge opening the
//! breaker, a full session queue, a throttle refusal, an attempt timeout, a stream interrupted
//! mid-way, a transport failure, the call's deadline, the retry budget. Each path is checked to
//! have ended as intended, so the test cannot pass by not reaching it.
//!
//! The `towline soak --report json` output is checked in `crates/cli/tests/secrets.rs`.
//!
//! One test in its own binary: the `tracing` subscriber is process-global.
#![cfg(all(feature = "stack", feature = "mock"))]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::ServiceExt;
use towline::breaker::BreakerLayer;
use towline::mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, RetryAfter, Script,
};
use towline::retry::RetryLayer;
use towline::session::SessionLayer;
use towline::throttle::ThrottleLayer;
use towline::trace::TraceLayer;
use towline::{Error, ErrorKind, ReplayBody, Stack};

/// The part of the key that must never appear anywhere.
const SECRET: &str = "Q7SECRETZ9KX4M2W";
/// The key: shaped like a real one, and long enough to be scrubbed as an exact echo too.
const KEY: &str = "sk-proj-Q7SECRETZ9KX4M2W-abcdef0123456789";

const MS: Duration = Duration::from_millis(1);

/// Every log line of every thread.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The OpenTelemetry SDK with in-memory exporters.
struct Otel {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Otel {
    fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        Otel {
            tracer: SdkTracerProvider::builder()
                .with_simple_exporter(spans.clone())
                .build(),
            meter: SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics.clone()).build())
                .build(),
            spans,
            metrics,
        }
    }

    fn trace_layer(&self) -> TraceLayer {
        TraceLayer::builder()
            .tracer_provider(&self.tracer)
            .meter_provider(&self.meter)
            .propagator(TraceContextPropagator::new())
            .build()
            .unwrap()
    }
}

type HyperClient = Client<HttpConnector, ReplayBody<Full<Bytes>>>;

/// One error path: a mock provider answering every request with `script`, and a stack built
/// for it.
struct Path {
    name: &'static str,
    server: MockServer,
    svc: towline::StackService<HyperClient>,
}

impl Path {
    async fn new(name: &'static str, script: Script, otel: &Otel, stack: Stack) -> Path {
        let server = MockProvider::builder()
            .default_script(script)
            .start()
            .await
            .unwrap();
        let client = Client::builder(TokioExecutor::new()).build_http();
        let svc = stack.trace(otel.trace_layer()).service(client);
        Path { name, server, svc }
    }

    fn request(&self, session: &str, stream: bool) -> Request<Full<Bytes>> {
        let body = format!(
            r#"{{"model":"mock-model","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        );
        Request::post(format!(
            "{}?api-key={KEY}&api-version=2024-10-21",
            self.server.url("/chat/completions")
        ))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-api-key", KEY)
        .header("x-session-id", session)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
    }

    /// One call, its body read to the end: the error it ended with, if any.
    async fn call(&self, session: &str, stream: bool) -> Option<Error> {
        let response = match self
            .svc
            .clone()
            .oneshot(self.request(session, stream))
            .await
        {
            Ok(response) => response,
            Err(err) => return Some(err),
        };
        read_to_end(response).await.err()
    }
}

async fn read_to_end<B>(response: Response<B>) -> Result<(), Error>
where
    B: Body,
    B::Error: Into<Error>,
{
    let mut body = std::pin::pin!(response.into_body());
    while let Some(frame) = body.frame().await {
        frame.map_err(Into::into)?;
    }
    Ok(())
}

/// `Display` and `Debug` of the error and of every error in its source chain.
fn describe(err: &Error) -> String {
    let mut text = format!("{err}\n{err:?}\n{:?}\n", err.api());
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text += &format!("{cause}\n{cause:?}\n");
        source = cause.source();
    }
    text
}

/// An answer that echoes the key in its message, as some providers do.
fn echo(kind: ErrorKind) -> ErrorSpec {
    ErrorSpec::new(kind).message(format!("Incorrect API key provided: {KEY}. Check it."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_secret_never_leaks_on_any_error_path() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let otel = Otel::new();
    let mut errors = String::new();
    let mut debug = String::new();
    // What each path ended with, checked at the end.
    let mut ended: Vec<(&str, ErrorKind)> = Vec::new();
    let mut note = |path: &Path, err: Option<Error>, errors: &mut String| -> ErrorKind {
        let err = err.unwrap_or_else(|| panic!("{}: the call succeeded", path.name));
        *errors += &describe(&err);
        ended.push((path.name, err.kind()));
        err.kind()
    };
    let no_retry = || RetryLayer::builder().max_retries(0).build().unwrap();

    // Authentication, the provider echoing the key.
    let path = Path::new(
        "authentication",
        Script::new(Dialect::Moonshot).fault(Fault::error(echo(ErrorKind::Authentication))),
        &otel,
        Stack::new(),
    )
    .await;
    debug += &format!("{:?}\n", Stack::new());
    let err = path.call("s1", false).await;
    if let Some(Error::Api(api)) = &err {
        assert!(api.message().unwrap().contains("[redacted]"), "{api:?}");
    }
    assert_eq!(note(&path, err, &mut errors), ErrorKind::Authentication);

    // Quota with a reset: the first call reaches the provider, the second is refused by the
    // throttle with the provider's own error, without a round trip.
    let path = Path::new(
        "quota",
        Script::new(Dialect::OpenAi).fault(Fault::error(
            echo(ErrorKind::QuotaExhausted).retry_after(RetryAfter::secs(3600)),
        )),
        &otel,
        Stack::new(),
    )
    .await;
    for _ in 0..2 {
        let err = path.call("s1", false).await;
        assert_eq!(note(&path, err, &mut errors), ErrorKind::QuotaExhausted);
    }
    assert_eq!(
        path.server.journal().total(),
        1,
        "the key was blocked until its reset"
    );

    // Rate limits with hints (in `retry-after-ms` and `Retry-After`), until the retries run out.
    let path = Path::new(
        "rate limit",
        Script::new(Dialect::OpenAi).faults([
            Fault::error(
                echo(ErrorKind::RateLimited)
                    .retry_after(RetryAfter::millis(50).form(HintForm::SecondsAndMillis)),
            )
            .first(1),
            Fault::error(echo(ErrorKind::RateLimited).retry_after(RetryAfter::millis(20))).after(1),
        ]),
        &otel,
        Stack::new().retry(
            RetryLayer::builder()
                .max_retries(2)
                .backoff_base(10 * MS)
                .build()
                .unwrap(),
        ),
    )
    .await;
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::RateLimited);

    // A 5xx surge opens the breaker.
    let path = Path::new(
        "server errors",
        Script::new(Dialect::Anthropic).fault(Fault::error(echo(ErrorKind::Overloaded))),
        &otel,
        Stack::new().retry(no_retry()).breaker(
            BreakerLayer::builder()
                .consecutive_failures(2)
                .build()
                .unwrap(),
        ),
    )
    .await;
    for expected in [
        ErrorKind::Overloaded,
        ErrorKind::Overloaded,
        ErrorKind::CircuitOpen,
    ] {
        let err = path.call("s1", false).await;
        assert_eq!(note(&path, err, &mut errors), expected);
    }

    // A full session queue: a second turn while the first one runs.
    let path = Path::new(
        "session queue",
        Script::new(Dialect::OpenAi).latency(200 * MS),
        &otel,
        Stack::new().session(SessionLayer::builder().max_queue_depth(0).build().unwrap()),
    )
    .await;
    let (first, second) = tokio::join!(path.call("busy", false), async {
        tokio::time::sleep(50 * MS).await;
        path.call("busy", false).await
    });
    assert!(first.is_none(), "{first:?}");
    assert_eq!(
        note(&path, second, &mut errors),
        ErrorKind::SessionQueueFull
    );

    // The throttle refuses a call over the key's rate.
    let path = Path::new(
        "throttle",
        Script::new(Dialect::OpenAi),
        &otel,
        Stack::new().throttle(
            ThrottleLayer::builder()
                .rate(0.5)
                .burst(1)
                .reject_only()
                .build()
                .unwrap(),
        ),
    )
    .await;
    assert!(path.call("s1", false).await.is_none());
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::Throttled);

    // An attempt timeout.
    let path = Path::new(
        "timeout",
        Script::new(Dialect::OpenAi).fault(Fault::stall_headers()),
        &otel,
        Stack::new()
            .retry(no_retry())
            .attempt_timeout(100 * MS)
            .unwrap(),
    )
    .await;
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::Timeout);

    // A stream broken after two chunks, its error event echoing the key.
    let path = Path::new(
        "stream",
        Script::new(Dialect::OpenAi).fault(Fault::break_stream(2, echo(ErrorKind::Server))),
        &otel,
        Stack::new(),
    )
    .await;
    let err = path.call("s1", true).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::StreamInterrupted);

    // A transport failure: the connection is closed before any byte.
    let path = Path::new(
        "transport",
        Script::new(Dialect::OpenAi).fault(Fault::reset()),
        &otel,
        Stack::new().retry(no_retry()),
    )
    .await;
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::Transport);

    // The call's deadline passes while it retries.
    let path = Path::new(
        "deadline",
        Script::new(Dialect::OpenAi).fault(Fault::error(echo(ErrorKind::Server))),
        &otel,
        Stack::new()
            .retry(
                RetryLayer::builder()
                    .max_retries(10)
                    .backoff_base(40 * MS)
                    .deadline(150 * MS)
                    .build()
                    .unwrap(),
            )
            .without_breaker(),
    )
    .await;
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::DeadlineExceeded);

    // The retry budget is empty.
    let path = Path::new(
        "budget",
        Script::new(Dialect::OpenAi).fault(Fault::error(echo(ErrorKind::Server))),
        &otel,
        Stack::new().retry(
            RetryLayer::builder()
                .budget_ratio(0.01)
                .budget_floor(0)
                .build()
                .unwrap(),
        ),
    )
    .await;
    let err = path.call("s1", false).await;
    assert_eq!(note(&path, err, &mut errors), ErrorKind::BudgetExhausted);
    debug += &format!("{:?}\n", path.svc);

    // Every path was forced.
    let kinds: Vec<ErrorKind> = ended.iter().map(|(_, k)| *k).collect();
    for kind in [
        ErrorKind::Authentication,
        ErrorKind::QuotaExhausted,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::CircuitOpen,
        ErrorKind::SessionQueueFull,
        ErrorKind::Throttled,
        ErrorKind::Timeout,
        ErrorKind::StreamInterrupted,
        ErrorKind::Transport,
        ErrorKind::DeadlineExceeded,
        ErrorKind::BudgetExhausted,
    ] {
        assert!(kinds.contains(&kind), "{kind} was never forced: {ended:?}");
    }

    // Everything exported and logged.
    otel.tracer.force_flush().unwrap();
    otel.meter.force_flush().unwrap();
    let spans = otel.spans.get_finished_spans().unwrap();
    assert!(spans.len() >= 20, "{} spans", spans.len());
    let span_dump = format!("{spans:#?}");
    assert!(
        span_dump.contains("url.full"),
        "spans carry their attributes"
    );
    let metrics = otel.metrics.get_finished_metrics().unwrap();
    assert!(!metrics.is_empty(), "metrics were exported");
    let metric_dump = format!("{metrics:#?}");
    assert!(
        metric_dump.contains("error.type"),
        "metric points carry their attributes"
    );
    let log_dump = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_dump.contains("TRACE"),
        "logs were captured at TRACE level"
    );
    assert!(
        log_dump.contains("provider error"),
        "the layers' own log lines were captured"
    );
    // The key did travel where it must: to the provider.
    assert!(
        errors.contains("[redacted]"),
        "echoes of the key were scrubbed, not absent"
    );

    for (what, dump) in [
        ("a span or span event", &span_dump),
        ("a metric attribute", &metric_dump),
        ("a log line", &log_dump),
        ("an error's Display or Debug", &errors),
        ("the stack's Debug", &debug),
    ] {
        if let Some(at) = dump.find(SECRET) {
            let from = at.saturating_sub(300);
            panic!(
                "the API key leaked into {what}:\n…{}…",
                &dump[from..(at + 100).min(dump.len())]
            );
        }
    }
}
