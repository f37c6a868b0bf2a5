//! End to end over real HTTP on loopback: Retry → Normalize → hyper-util client → the towline
//! mock provider, on paused tokio time, asserting from the mock's journal.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::{BoxError, Error, ErrorKind, ReplayBody};
use towline_mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, RetryAfter, Script,
};
use towline_normalize::NormalizeLayer;
use towline_retry::{Attempts, Jitter, RetryLayer, TimeoutLayer};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const CHAT: &str = r#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#;

fn client<B>() -> Client<HttpConnector, ReplayBody<B>>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// The stack under test: retry over normalize over a real client.
fn stack<B>(
    retry: RetryLayer,
    normalize: NormalizeLayer,
) -> impl Service<
    Request<B>,
    Response = Response<impl Body<Error = impl std::fmt::Debug> + std::fmt::Debug>,
    Error = Error,
> + Clone
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        .layer(retry)
        .layer(normalize)
        .service(client::<B>())
}

fn chat(server: &MockServer, key: &str) -> Request<Full<Bytes>> {
    Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CHAT.as_bytes())))
        .unwrap()
}

async fn start(key: &str, script: Script) -> MockServer {
    MockProvider::builder()
        .key(key, script)
        .start()
        .await
        .expect("the mock starts")
}

/// Seeded, no jitter: delays are exactly 100 ms, 200 ms, 400 ms, ... unless a hint is longer.
fn retry() -> RetryLayer {
    RetryLayer::builder()
        .seed(5)
        .jitter(Jitter::None)
        .backoff_base(100 * MS)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_429_then_200_succeeds_in_every_seed_dialect_never_before_the_hint() {
    let seed_dialects = [
        Dialect::Moonshot,
        Dialect::KaikoV2,
        Dialect::KimiFreeApi,
        Dialect::KimiFreeApiDocumented,
        Dialect::Mimo,
        Dialect::Aiapi,
    ];
    for dialect in seed_dialects {
        let key = "sk-limited";
        let script = Script::new(dialect).fault(Fault::rate_limited(RetryAfter::secs(1)).first(2));
        let server = start(key, script).await;
        let normalize = NormalizeLayer::builder()
            .inspect_ok_json(dialect == Dialect::KimiFreeApi)
            .build()
            .unwrap();
        let response = stack(retry(), normalize)
            .oneshot(chat(&server, key))
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {e}"));
        assert_eq!(Attempts::of(&response), 3, "{dialect:?}");
        response.into_body().collect().await.unwrap();

        let journal = server.journal();
        assert_eq!(journal.attempts(key), 3, "{dialect:?}");
        assert_eq!(
            journal.count_by_error().get(&ErrorKind::RateLimited),
            Some(&2),
            "{dialect:?}"
        );
        assert!(
            journal.early_arrivals(key, Duration::ZERO).is_empty(),
            "{dialect:?}: an attempt came before the announced hint"
        );
        let arrivals = journal.arrivals();
        for pair in arrivals.windows(2) {
            assert!(pair[1].at - pair[0].at >= SEC, "{dialect:?}");
        }
        server.shutdown().await;
    }
}

/// The gaps between consecutive arrivals.
fn gaps(server: &MockServer) -> Vec<Duration> {
    let journal = server.journal();
    journal
        .arrivals()
        .windows(2)
        .map(|w| w[1].at - w[0].at)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn hints_are_read_in_order_of_precedence() {
    // retry-after-ms: 1500 with Retry-After: 2: the milliseconds win.
    let both = ErrorSpec::new(ErrorKind::RateLimited)
        .retry_after(RetryAfter::millis(1500).form(HintForm::SecondsAndMillis));
    let server = start(
        "k",
        Script::new(Dialect::OpenAi).fault(Fault::error(both).first(1)),
    )
    .await;
    stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap();
    let gap = gaps(&server)[0];
    assert!(gap >= 1500 * MS && gap < 1600 * MS, "{gap:?}");
    server.shutdown().await;

    // Retry-After: 3 against "try again in 1s" in the body: the header wins.
    let raw = Fault::raw(
        429,
        [("retry-after", "3"), ("content-type", "application/json")],
        r#"{"error":{"message":"Rate limit reached. Please try again in 1s.","type":"requests","code":"rate_limit_exceeded"}}"#,
    );
    let server = start("k", Script::new(Dialect::OpenAi).fault(raw.first(1))).await;
    stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap();
    let gap = gaps(&server)[0];
    assert!(gap >= 3 * SEC && gap < 3100 * MS, "{gap:?}");
    server.shutdown().await;

    // Only the body says when: 2.5 s.
    let body = ErrorSpec::new(ErrorKind::RateLimited)
        .retry_after(RetryAfter::millis(2500).form(HintForm::Body));
    let server = start(
        "k",
        Script::new(Dialect::OpenAi).fault(Fault::error(body).first(1)),
    )
    .await;
    stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap();
    let gap = gaps(&server)[0];
    assert!(gap >= 2500 * MS && gap < 2600 * MS, "{gap:?}");
    server.shutdown().await;

    // No hint: the backoff (100 ms, no jitter).
    let server = start(
        "k",
        Script::new(Dialect::OpenAi).fault(Fault::server_error().first(1)),
    )
    .await;
    stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap();
    let gap = gaps(&server)[0];
    assert!(gap >= 100 * MS && gap < 150 * MS, "{gap:?}");
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_total_outage_of_1000_calls_sends_at_most_the_budget() {
    let server = MockProvider::builder()
        .default_script(Script::new(Dialect::OpenAi).fault(Fault::server_error()))
        .start()
        .await
        .unwrap();
    // Default budget: 20 % + 10/s over 10 s; 3 retries per call allowed.
    let layer = RetryLayer::builder().seed(9).build().unwrap();
    let budget = layer.budget().unwrap().clone();
    let service = stack(layer, NormalizeLayer::new());
    let started = tokio::time::Instant::now();
    let results: Vec<_> = stream::iter(0..1000)
        .map(|_| service.clone().oneshot(chat(&server, "sk-any")))
        .buffer_unordered(64)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs();

    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(|r| {
        r.as_ref()
            .is_err_and(|e| matches!(e.kind(), ErrorKind::Server | ErrorKind::BudgetExhausted))
    }));
    let sent = server.journal().total();
    let floor = 10 * 10 * (seconds as usize + 1).div_ceil(10);
    assert!(
        sent <= 1200 + floor,
        "{sent} attempts for 1,000 calls in {seconds} s (bound {})",
        1200 + floor
    );
    assert!(sent > 1000, "some calls were retried");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(Error::BudgetExhausted(_)))),
        "the budget, not max retries, stopped the storm"
    );
    assert_eq!(budget.available(), 0);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_quota_429_is_sent_exactly_once() {
    for dialect in [Dialect::Moonshot, Dialect::OpenAi, Dialect::Mimo] {
        let quota = ErrorSpec::new(ErrorKind::QuotaExhausted).status(429);
        let server = start("sk-broke", Script::new(dialect).fault(Fault::error(quota))).await;
        let err = stack(retry(), NormalizeLayer::new())
            .oneshot(chat(&server, "sk-broke"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::QuotaExhausted, "{dialect:?}");
        assert_eq!(err.status().map(|s| s.as_u16()), Some(429));
        assert_eq!(server.journal().attempts("sk-broke"), 1, "{dialect:?}");
        server.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_from_the_wire_overrides_the_status() {
    let no = ErrorSpec::new(ErrorKind::Server).should_retry(false);
    let server = start(
        "k",
        Script::new(Dialect::OpenAi).fault(Fault::error(no).first(1)),
    )
    .await;
    let err = stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert_eq!(server.journal().total(), 1);
    server.shutdown().await;

    let yes = ErrorSpec::new(ErrorKind::InvalidRequest).should_retry(true);
    let server = start(
        "k",
        Script::new(Dialect::OpenAi).fault(Fault::error(yes).first(1)),
    )
    .await;
    let response = stack(retry(), NormalizeLayer::new())
        .oneshot(chat(&server, "k"))
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 2);
    assert_eq!(server.journal().total(), 2);
    server.shutdown().await;
}

type Chunks = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// A chat request of about `len` bytes, streamed in 512-byte chunks with no size hint.
fn streamed_chat(server: &MockServer, key: &str, len: usize) -> Request<StreamBody<Chunks>> {
    let content = "x".repeat(len.saturating_sub(CHAT.len()));
    let json = CHAT.replace("\"hi\"", &format!("\"{content}\""));
    let frames: Vec<_> = json
        .as_bytes()
        .chunks(512)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_larger_than_the_replay_limit_is_sent_once() {
    let layer = || {
        RetryLayer::builder()
            .seed(3)
            .replay_limit(4 * 1024)
            .build()
            .unwrap()
    };
    let server = start(
        "k",
        Script::new(Dialect::Moonshot).fault(Fault::server_error().first(1)),
    )
    .await;
    let err = stack(layer(), NormalizeLayer::new())
        .oneshot(streamed_chat(&server, "k", 16 * 1024))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server, "not retried");
    assert_eq!(server.journal().total(), 1, "sent once");

    // The same body succeeds when the provider does: nothing was lost on the way.
    let response = stack(layer(), NormalizeLayer::new())
        .oneshot(streamed_chat(&server, "k", 16 * 1024))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.journal().total(), 2);

    // Under the limit, the same streamed body is replayed.
    let small = start(
        "k",
        Script::new(Dialect::Moonshot).fault(Fault::server_error().first(1)),
    )
    .await;
    let response = stack(layer(), NormalizeLayer::new())
        .oneshot(streamed_chat(&small, "k", 2 * 1024))
        .await
        .unwrap();
    assert_eq!(Attempts::of(&response), 2);
    server.shutdown().await;
    small.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_reset_connection_and_a_stalled_attempt_are_retried() {
    let server = start(
        "k",
        Script::new(Dialect::OpenAi)
            .fault(Fault::reset().first(1))
            .fault(Fault::stall_headers().first(2)),
    )
    .await;
    let service = ServiceBuilder::new()
        .layer(retry())
        .layer(TimeoutLayer::new(5 * SEC).unwrap())
        .layer(NormalizeLayer::new())
        .service(client::<Full<Bytes>>());
    let started = tokio::time::Instant::now();
    let response = service.oneshot(chat(&server, "k")).await.unwrap();
    assert_eq!(Attempts::of(&response), 3, "reset, timed out, answered");
    assert!(started.elapsed() >= 5 * SEC);
    assert_eq!(server.journal().total(), 3);
    server.shutdown().await;
}
