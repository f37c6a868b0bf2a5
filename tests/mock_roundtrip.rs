//! Every dialect round-tripped over real HTTP: the mock provider renders an error on loopback,
//! a hyper-util client receives it, and the Normalize layer reads it back. What the mock sent
//! (class, status, provider type and code, message, request id, retry hint) is what Normalize
//! reports.
#![cfg(feature = "normalize")]

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline::core::{ApiError, HintSource};
use towline::normalize::{Normalize, NormalizeLayer};
use towline::{Error, ErrorKind, RateLimitSnapshot};
use towline_mock::{
    Arrival, Dialect, ErrorSpec, Fault, HintForm, MockProvider, MockServer, RateLimit, RetryAfter,
    Script, render,
};

type Stack = Normalize<Client<HttpConnector, Full<Bytes>>>;

/// The Normalize layer over a hyper-util client, reading kimi-free-api's HTTP-200 errors too.
fn stack() -> Stack {
    let client = Client::builder(TokioExecutor::new()).build_http();
    ServiceBuilder::new()
        .layer(
            NormalizeLayer::builder()
                .inspect_ok_json(true)
                .build()
                .unwrap(),
        )
        .service(client)
}

fn chat(server: &MockServer, key: &str, stream: bool) -> Request<Full<Bytes>> {
    Request::post(server.url("/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::from(format!(
            r#"{{"model":"mock-model","messages":[{{"role":"user","content":"hi"}}],"stream":{stream}}}"#
        )))
        .unwrap()
}

/// Sends one request through the stack; the answer must be an API error.
async fn api_error(stack: &mut Stack, req: Request<Full<Bytes>>) -> ApiError {
    match stack.ready().await.unwrap().call(req).await {
        Err(Error::Api(api)) => *api,
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(response) => panic!("expected an API error, got {}", response.status()),
    }
}

/// The latest arrival of `key` in the server's journal.
fn arrival(server: &MockServer, key: &str) -> Arrival {
    server.journal().for_key(key).last().unwrap().clone()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What the mock put in the body, read independently of Normalize: (type, code, message).
fn sent_fields(dialect: Dialect, body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let v: Value = serde_json::from_slice(body).unwrap();
    let e = &v["error"];
    let provider_type = |t: &Value| text(t).filter(|t| t != "error");
    match dialect {
        Dialect::OpenAi
        | Dialect::Moonshot
        | Dialect::Mimo
        | Dialect::KaikoV2
        | Dialect::Anthropic => (
            provider_type(&e["type"]),
            text(&e["code"]),
            text(&e["message"]),
        ),
        Dialect::Gemini => (None, text(&e["code"]), text(&e["message"])),
        Dialect::Aiapi | Dialect::KimiFreeApi => (None, text(&v["code"]), text(&v["message"])),
        Dialect::KimiFreeApiDocumented => (None, text(&v["errcode"]), text(&v["errmsg"])),
        other => panic!("a dialect this test does not know: {other}"),
    }
}

/// The spec a scripted key of `dialect` answers with for `kind` (rate limits carry a hint).
fn spec_for(kind: ErrorKind) -> ErrorSpec {
    match kind {
        ErrorKind::RateLimited => ErrorSpec::new(kind).retry_after(RetryAfter::secs(2)),
        _ => ErrorSpec::new(kind),
    }
}

#[tokio::test]
async fn every_native_class_of_every_dialect_round_trips() {
    let mut builder = MockProvider::builder();
    for dialect in Dialect::ALL {
        for &kind in dialect.native_kinds() {
            let script = Script::new(dialect).fault(Fault::error(spec_for(kind)));
            builder = builder.key(format!("sk-{dialect}-{kind}"), script);
        }
    }
    let server = builder.start().await.unwrap();
    let mut stack = stack();
    let mut checked = 0;
    for dialect in Dialect::ALL {
        for &kind in dialect.native_kinds() {
            let key = format!("sk-{dialect}-{kind}");
            let err = api_error(&mut stack, chat(&server, &key, false)).await;
            let sent = arrival(&server, &key);
            let case = format!("{dialect} {kind}: {err:?}");
            let request_id = sent.request_id.clone().expect("the mock sends request ids");
            let rendered = render(dialect, &spec_for(kind).request_id(request_id.clone()));
            let (provider_type, provider_code, message) = sent_fields(dialect, &rendered.body);

            assert_eq!(err.kind(), kind, "{case}");
            assert_eq!(Some(err.status()), sent.status, "{case}");
            assert_eq!(err.provider_type(), provider_type.as_deref(), "{case}");
            assert_eq!(err.provider_code(), provider_code.as_deref(), "{case}");
            assert_eq!(err.message(), message.as_deref(), "{case}");
            assert_eq!(err.request_id(), Some(request_id.as_str()), "{case}");
            assert_eq!(err.retry_after(), sent.hint, "{case}");
            checked += 1;
        }
    }
    assert!(checked >= 70, "{checked} cases");
}

#[tokio::test]
async fn hints_in_every_form_round_trip_with_their_source() {
    let forms = [
        (Dialect::OpenAi, HintForm::Seconds, HintSource::RetryAfter),
        (Dialect::OpenAi, HintForm::HttpDate, HintSource::RetryAfter),
        (Dialect::OpenAi, HintForm::Millis, HintSource::RetryAfterMs),
        (
            Dialect::OpenAi,
            HintForm::SecondsAndMillis,
            HintSource::RetryAfterMs,
        ),
        (Dialect::OpenAi, HintForm::Body, HintSource::Body),
        (Dialect::Moonshot, HintForm::Body, HintSource::Body),
        (Dialect::Gemini, HintForm::Body, HintSource::Body),
        (Dialect::Aiapi, HintForm::Body, HintSource::Body),
        (Dialect::Aiapi, HintForm::Seconds, HintSource::RetryAfter),
        (
            Dialect::Anthropic,
            HintForm::Millis,
            HintSource::RetryAfterMs,
        ),
    ];
    let mut builder = MockProvider::builder();
    for (i, (dialect, form, _)) in forms.iter().enumerate() {
        let fault = Fault::rate_limited(RetryAfter::millis(2500).form(*form));
        builder = builder.key(format!("sk-{i}"), Script::new(*dialect).fault(fault));
    }
    let server = builder.start().await.unwrap();
    let mut stack = stack();
    for (i, (dialect, form, source)) in forms.into_iter().enumerate() {
        let key = format!("sk-{i}");
        let err = api_error(&mut stack, chat(&server, &key, false)).await;
        let case = format!("{dialect} {form:?}: {err:?}");
        assert_eq!(err.kind(), ErrorKind::RateLimited, "{case}");
        let hint = err.retry_hint().expect(&case);
        assert_eq!(hint.source, source, "{case}");
        let announced = arrival(&server, &key).hint.unwrap();
        if form == HintForm::HttpDate {
            // Both sides measure the date from their own reading of the wall clock.
            let gap = announced.abs_diff(hint.delay);
            assert!(gap <= Duration::from_secs(1), "{case}: {announced:?}");
        } else {
            assert_eq!(hint.delay, announced, "{case}");
        }
    }
}

#[tokio::test]
async fn server_side_limits_round_trip() {
    let server = MockProvider::builder()
        .key(
            "sk-bucket",
            Script::new(Dialect::OpenAi)
                .rate_limit(RateLimit::token_bucket(10.0, 1).hint_form(HintForm::Millis)),
        )
        .key(
            "sk-window",
            Script::new(Dialect::OpenAi).rate_limit(
                RateLimit::fixed_window(5, Duration::from_secs(60)).success_headers(true),
            ),
        )
        .start()
        .await
        .unwrap();
    let mut stack = stack();

    let ok = stack
        .ready()
        .await
        .unwrap()
        .call(chat(&server, "sk-bucket", false))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let err = api_error(&mut stack, chat(&server, "sk-bucket", false)).await;
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), arrival(&server, "sk-bucket").hint);
    assert!(err.retry_after().unwrap() <= Duration::from_millis(100));
    let snapshot = err.rate_limit().expect("x-ratelimit-* headers");
    assert_eq!(snapshot.requests.limit, Some(1));
    assert_eq!(snapshot.requests.remaining, Some(0));

    let ok = stack
        .ready()
        .await
        .unwrap()
        .call(chat(&server, "sk-window", false))
        .await
        .unwrap();
    let snapshot = ok
        .extensions()
        .get::<RateLimitSnapshot>()
        .expect("the success's rate-limit snapshot");
    assert_eq!(snapshot.requests.limit, Some(5));
    assert_eq!(snapshot.requests.remaining, Some(4));
    let reset = snapshot.requests.reset.unwrap();
    assert!(
        reset <= Duration::from_secs(60) && reset > Duration::from_secs(50),
        "{reset:?}"
    );
}

#[tokio::test]
async fn the_session_rule_round_trips_as_a_rate_limit() {
    let server = MockProvider::builder()
        .default_script(
            Script::new(Dialect::KimiFreeApi)
                .session_busy(true)
                .fault(Fault::stall_headers().first(1)),
        )
        .start()
        .await
        .unwrap();
    let mut stack = stack();
    let with_session = |server: &MockServer| {
        let mut req = chat(server, "sk-1", true);
        req.headers_mut()
            .insert("x-session-id", "conv-1".parse().unwrap());
        req
    };
    let first = {
        let (mut stack, req) = (stack.clone(), with_session(&server));
        tokio::spawn(async move { stack.ready().await.unwrap().call(req).await.map(|_| ()) })
    };
    while server.sessions_in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let err = api_error(&mut stack, with_session(&server)).await;
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.status(), 200);
    assert_eq!(err.provider_code(), Some("-2005"));
    assert_eq!(err.message(), Some("已有对话流正在输出"));
    first.abort();
}

#[tokio::test]
async fn broken_streams_are_interrupted_with_the_class_the_mock_sent() {
    let classes = [ErrorKind::Overloaded, ErrorKind::Server];
    let mut builder = MockProvider::builder();
    for dialect in Dialect::ALL {
        for kind in classes
            .into_iter()
            .filter(|k| dialect.native_kinds().contains(k))
        {
            builder = builder.key(
                format!("sk-{dialect}-{kind}"),
                Script::new(dialect).fault(Fault::break_stream(2, kind)),
            );
        }
    }
    let server = builder.start().await.unwrap();
    let mut stack = stack();
    for dialect in Dialect::ALL {
        for kind in classes
            .into_iter()
            .filter(|k| dialect.native_kinds().contains(k))
        {
            let key = format!("sk-{dialect}-{kind}");
            let response = stack
                .ready()
                .await
                .unwrap()
                .call(chat(&server, &key, true))
                .await;
            let response = response.unwrap_or_else(|e| panic!("{key}: the stream starts: {e:?}"));
            let mut body = response.into_body();
            let mut delivered = Vec::new();
            let err = loop {
                match body.frame().await {
                    Some(Ok(frame)) => delivered.extend_from_slice(&frame.into_data().unwrap()),
                    Some(Err(e)) => break e,
                    None => panic!("{key}: the stream must fail"),
                }
            };
            let case = format!("{key}: {err:?}");
            let Error::StreamInterrupted(inner) = &err else {
                panic!("{case}");
            };
            assert_eq!(inner.kind(), kind, "{case}");
            let delivered = String::from_utf8(delivered).unwrap();
            assert_eq!(
                delivered.matches("\"content\":").count(),
                3,
                "{case}: {delivered}"
            );
        }
    }
}

#[tokio::test]
async fn cut_streams_resets_and_should_retry_round_trip() {
    let server = MockProvider::builder()
        .key("sk-cut", Script::default().fault(Fault::cut_stream(1)))
        .key("sk-reset", Script::default().fault(Fault::reset()))
        .key(
            "sk-should",
            Script::default().fault(Fault::error(
                ErrorSpec::new(ErrorKind::ContentFiltered).should_retry(true),
            )),
        )
        .start()
        .await
        .unwrap();
    let mut stack = stack();

    let response = stack
        .ready()
        .await
        .unwrap()
        .call(chat(&server, "sk-cut", true))
        .await
        .unwrap();
    let err = response.into_body().collect().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamInterrupted, "{err:?}");
    assert!(
        matches!(&err, Error::StreamInterrupted(inner) if inner.kind() == ErrorKind::Transport)
    );

    let err = stack
        .ready()
        .await
        .unwrap()
        .call(chat(&server, "sk-reset", false))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");

    let err = api_error(&mut stack, chat(&server, "sk-should", false)).await;
    assert_eq!(err.kind(), ErrorKind::ContentFiltered);
    assert_eq!(err.should_retry(), Some(true));
    assert!(err.is_retryable());
}
