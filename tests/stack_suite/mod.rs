//! The default stack against the mock provider, in every seed dialect: the scenarios
//! `stack_hyper.rs` and `stack_reqwest.rs` run over their own client.
//!
//! Each scenario starts one mock provider with a key per dialect (`sk-<dialect>`), builds a
//! fresh stack per dialect (so that one dialect's failures never open the breaker for the
//! next), and checks both what the caller got and what the provider saw (the journal).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower::util::BoxCloneService;
use towline::normalize::NormalizeLayer;
use towline::retry::{Jitter, RetryLayer};
use towline::{Error, ErrorKind, Stack};
use towline_mock::{
    Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, RetryAfter, Script,
};

/// The five seed providers, kimi-free-api in both of its forms.
pub(crate) const SEED_DIALECTS: [Dialect; 6] = [
    Dialect::Moonshot,
    Dialect::KaikoV2,
    Dialect::KimiFreeApi,
    Dialect::KimiFreeApiDocumented,
    Dialect::Mimo,
    Dialect::Aiapi,
];

/// The stack over a client, its body boxed so that one suite serves every client.
pub(crate) type Service =
    BoxCloneService<Request<Full<Bytes>>, Response<UnsyncBoxBody<Bytes, Error>>, Error>;

/// The retry hint the mock announces: short, so tests run in real time.
const HINT: Duration = Duration::from_millis(150);

/// The default stack with settings for fast tests: short backoffs, a seeded jitter, a 5 s
/// attempt timeout (a hang fails the test quickly), and kimi-free-api's HTTP-200 errors read.
pub(crate) fn stack() -> Stack {
    let retry = RetryLayer::builder()
        .backoff_base(Duration::from_millis(10))
        .backoff_max(Duration::from_millis(50))
        .jitter(Jitter::Full)
        .seed(7)
        .build()
        .expect("valid retry settings");
    Stack::new()
        .retry(retry)
        .attempt_timeout(Duration::from_secs(5))
        .expect("valid timeout")
        .normalize(
            NormalizeLayer::builder()
                .inspect_ok_json(true)
                .build()
                .expect("valid normalize settings"),
        )
}

/// Boxes a stacked service (any client) into the suite's [`Service`].
pub(crate) fn boxed<S, B>(service: S) -> Service
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = Error>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Error>,
{
    BoxCloneService::new(
        service
            .map_response(|response| response.map(|body| body.map_err(Into::into).boxed_unsync())),
    )
}

/// The key scripted for `dialect`.
pub(crate) fn key(dialect: Dialect) -> String {
    format!("sk-{}", dialect.as_str())
}

/// A chat-completion request for `dialect`'s key, sent the way that provider takes it (Kaiko
/// V2 reads `x-api-key`, the others a bearer token).
pub(crate) fn chat(server: &MockServer, dialect: Dialect, stream: bool) -> Request<Full<Bytes>> {
    let key = key(dialect);
    let (name, value) = match dialect {
        Dialect::KaikoV2 => ("x-api-key", key),
        _ => ("authorization", format!("Bearer {key}")),
    };
    let body = serde_json::json!({
        "model": "mock-model",
        "messages": [{"role": "user", "content": "hello"}],
        "stream": stream,
    });
    Request::post(server.url("/chat/completions"))
        .header(name, value)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request")
}

/// A mock provider with one script per seed dialect, `script` giving each.
pub(crate) async fn mock(script: impl Fn(Dialect) -> Script) -> MockServer {
    let mut builder = MockProvider::builder();
    for dialect in SEED_DIALECTS {
        builder = builder.key(key(dialect), script(dialect));
    }
    builder.start().await.expect("the mock provider starts")
}

/// Sends `request` and reads the whole answer.
async fn send(service: Service, request: Request<Full<Bytes>>) -> Result<Bytes, Error> {
    let response = service.oneshot(request).await?;
    assert_eq!(response.status(), 200);
    Ok(response.into_body().collect().await?.to_bytes())
}

/// A 429 with a hint, then success: the caller gets the success, and the retry reached the
/// provider only once the hint had passed. (Kaiko V2 and aiapi.services also send
/// `x-ratelimit-remaining: 0` with a reset in whole seconds, which the throttle honours too:
/// their retries come a second or so later.)
pub(crate) async fn rate_limit_with_a_hint_is_retried_after_the_hint(
    over: impl Fn(Stack) -> Service,
) {
    let hint = RetryAfter::new(HINT).form(HintForm::Millis);
    let server = mock(|d| Script::new(d).fault(Fault::rate_limited(hint).first(1))).await;
    for dialect in SEED_DIALECTS {
        let body = send(over(stack()), chat(&server, dialect, false))
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {e:?}"));
        assert!(
            String::from_utf8_lossy(&body).contains(Script::DEFAULT_REPLY),
            "{dialect:?}"
        );

        let journal = server.journal();
        let arrivals: Vec<_> = journal.for_key(key(dialect)).collect();
        assert_eq!(arrivals.len(), 2, "{dialect:?}: one 429, one retry");
        assert_eq!(
            arrivals[0].error_kind(),
            Some(ErrorKind::RateLimited),
            "{dialect:?}"
        );
        assert_eq!(arrivals[0].hint, Some(HINT), "{dialect:?}");
        assert_eq!(arrivals[1].status.map(|s| s.as_u16()), Some(200));
        let allowed = arrivals[0].retry_allowed_at().expect("a hint");
        assert!(
            arrivals[1].at >= allowed,
            "{dialect:?}: the retry came {:?} before the hint had passed",
            allowed - arrivals[1].at
        );
        assert!(
            journal
                .early_arrivals(key(dialect), Duration::ZERO)
                .is_empty()
        );
    }
}

/// A quota answer is returned typed, after one attempt: waiting does not bring a quota back.
pub(crate) async fn quota_is_sent_once_and_returned_typed(over: impl Fn(Stack) -> Service) {
    let server = mock(|d| Script::new(d).fault(Fault::quota_exhausted())).await;
    for dialect in SEED_DIALECTS {
        let error = send(over(stack()), chat(&server, dialect, false))
            .await
            .expect_err("a quota answer is an error");
        assert_eq!(
            error.kind(),
            ErrorKind::QuotaExhausted,
            "{dialect:?}: {error:?}"
        );
        assert!(!error.is_retryable());
        let journal = server.journal();
        assert_eq!(
            journal.attempts(key(dialect)),
            1,
            "{dialect:?}: never retried"
        );
        let sent = journal.for_key(key(dialect)).next().unwrap().status;
        assert_eq!(
            error.status(),
            sent,
            "{dialect:?}: the provider's status is kept"
        );
    }
}

/// An authentication failure is returned typed, after one attempt.
pub(crate) async fn auth_failure_is_returned_typed(over: impl Fn(Stack) -> Service) {
    let server = mock(|d| Script::new(d).fault(Fault::auth_failure())).await;
    for dialect in SEED_DIALECTS {
        let error = send(over(stack()), chat(&server, dialect, false))
            .await
            .expect_err("an auth failure is an error");
        assert_eq!(
            error.kind(),
            ErrorKind::Authentication,
            "{dialect:?}: {error:?}"
        );
        let api = error.api().expect("the provider's error");
        assert!(api.message().is_some(), "{dialect:?}: the message is kept");
        assert!(
            !format!("{error} {error:?}").contains(&key(dialect)),
            "{dialect:?}: no key in the error"
        );
        assert_eq!(server.journal().attempts(key(dialect)), 1, "{dialect:?}");
    }
}

/// A streamed answer is delivered whole, to its `[DONE]` event.
pub(crate) async fn stream_is_read_to_done(over: impl Fn(Stack) -> Service) {
    let server = mock(|d| Script::new(d).chunks(5)).await;
    for dialect in SEED_DIALECTS {
        let body = send(over(stack()), chat(&server, dialect, true))
            .await
            .unwrap_or_else(|e| panic!("{dialect:?}: {e:?}"));
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "{dialect:?}: {text}"
        );
        assert_eq!(reply_of_stream(&text), Script::DEFAULT_REPLY, "{dialect:?}");
        let journal = server.journal();
        let arrival = journal.for_key(key(dialect)).next().unwrap();
        assert!(
            arrival.stream && arrival.finished_at.is_some(),
            "{dialect:?}"
        );
    }
}

/// The assistant's text of an SSE chat-completion stream: every chunk's `delta.content`.
fn reply_of_stream(stream: &str) -> String {
    stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<serde_json::Value>(data).expect("JSON chunks"))
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// A stream that breaks after delivering content, with an in-band error event or a cut
/// connection, ends in `StreamInterrupted` and is not retried: the caller already has part of
/// the answer.
pub(crate) async fn broken_stream_is_interrupted_not_retried(over: impl Fn(Stack) -> Service) {
    for fault in [
        Fault::break_stream(2, ErrorSpec::new(ErrorKind::Server)),
        Fault::cut_stream(2),
    ] {
        let server = mock(|d| Script::new(d).fault(fault.clone())).await;
        for dialect in SEED_DIALECTS {
            let error = send(over(stack()), chat(&server, dialect, true))
                .await
                .expect_err("a broken stream is an error");
            assert_eq!(
                error.kind(),
                ErrorKind::StreamInterrupted,
                "{dialect:?} {}: {error:?}",
                fault.name()
            );
            assert_eq!(server.journal().attempts(key(dialect)), 1, "{dialect:?}");
        }
    }
}

/// Turns of one conversation (`x-session-id`) sent at once reach the provider one after the
/// other, each after the previous stream ended; turns of another conversation are not held up.
/// The mock answers an overlapping turn the way kimi-free-api does (-2005, "a stream is
/// already being pushed"), so an overlap would also show as a retry.
pub(crate) async fn session_turns_are_serialized(over: impl Fn(Stack) -> Service) {
    const TURNS: usize = 4;
    let server = mock(|d| {
        Script::new(d)
            .session_busy(true)
            .chunks(3)
            .chunk_interval(Duration::from_millis(15))
    })
    .await;
    for dialect in SEED_DIALECTS {
        let service = over(stack());
        let session = format!("conv-{}", dialect.as_str());
        let turns = (0..TURNS).map(|_| {
            let mut request = chat(&server, dialect, true);
            request
                .headers_mut()
                .insert("x-session-id", session.parse().unwrap());
            tokio::spawn(send(service.clone(), request))
        });
        let turns: Vec<_> = turns.collect();
        for turn in turns {
            let body = turn
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{dialect:?}: {e:?}"));
            assert!(String::from_utf8_lossy(&body).contains("[DONE]"));
        }
        let journal = server.journal();
        assert_eq!(
            journal.max_concurrent(&session),
            1,
            "{dialect:?}: no overlap"
        );
        assert_eq!(
            journal.for_session(&session).count(),
            TURNS,
            "{dialect:?}: no turn was refused and retried"
        );
    }
}

/// kimi-free-api's real form needs the Normalize layer to look inside JSON successes: without
/// `inspect_ok_json` its HTTP-200 error passes as a success (why the suite's stack turns it on).
pub(crate) async fn kimi_free_api_http_200_needs_inspect_ok_json(over: impl Fn(Stack) -> Service) {
    let server = mock(|d| Script::new(d).fault(Fault::auth_failure())).await;
    let plain = stack().normalize(NormalizeLayer::new());
    let body = send(over(plain), chat(&server, Dialect::KimiFreeApi, false))
        .await
        .expect("without inspection, the HTTP-200 error is a success");
    assert!(String::from_utf8_lossy(&body).contains("-2002"));
}
