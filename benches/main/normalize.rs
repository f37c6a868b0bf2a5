//! Normalize: classifying a provider's 429, and passing a success through.
//!
//! No crate classifies LLM provider errors, so the peer is what users write by hand: a typed
//! `serde_json` parse of the OpenAI error envelope, a match on its `code`/`type` and the
//! `Retry-After` seconds, producing the same [`ApiError`]. It knows one dialect; towline's
//! classifier reads them all (and the rate-limit headers, the request id, the body hints).
//! In the layer cases the peer is that parse in an `and_then` after the client, which checks
//! the status and parses only when it is an error.

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use tower::{Layer, Service, ServiceExt};
use towline::normalize::{NormalizeLayer, classify};
use towline::{ApiError, Error, ErrorKind, HintSource, RetryHint};

use crate::support::{self, Compare, now};

/// OpenAI's 429, as the API sends it.
const RATE_LIMITED: &[u8] = br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc123 on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;

fn rate_limited_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("retry-after", "1"),
        ("x-request-id", "req_7f3a9c1e2b4d"),
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "120ms"),
        ("x-ratelimit-limit-tokens", "30000"),
        ("x-ratelimit-remaining-tokens", "29950"),
        ("x-ratelimit-reset-tokens", "100ms"),
    ] {
        headers.insert(name, value.parse().expect("a header value"));
    }
    headers
}

fn rate_limited() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(RATE_LIMITED)));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    *response.headers_mut() = rate_limited_headers();
    response
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    error: Detail<'a>,
}

#[derive(Deserialize)]
struct Detail<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    param: Option<Cow<'a, str>>,
}

/// The hand-written classifier: one dialect, typed.
fn classify_by_hand(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let kind = match status.as_u16() {
        429 => ErrorKind::RateLimited,
        401 => ErrorKind::Authentication,
        400 => ErrorKind::InvalidRequest,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::Unknown,
    };
    let mut error = ApiError::new(kind, status);
    if let Ok(Envelope { error: detail }) = serde_json::from_slice::<Envelope<'_>>(body) {
        if detail.code.as_deref() == Some("insufficient_quota") {
            error = error.with_kind(ErrorKind::QuotaExhausted);
        }
        error = error.with_message(detail.message);
        if let Some(kind) = detail.kind {
            error = error.with_provider_type(kind);
        }
        if let Some(code) = detail.code {
            error = error.with_provider_code(code);
        }
        if let Some(param) = detail.param {
            error = error.with_param(param);
        }
    }
    let seconds = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(seconds) = seconds {
        error = error.with_retry_hint(RetryHint::new(
            Duration::from_secs(seconds),
            HintSource::RetryAfter,
        ));
    }
    error
}

/// The hand-written layer: the status check, and the parse when it is an error.
async fn check_by_hand(response: Response<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Error> {
    if response.status().is_success() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(Error::transport)?.to_bytes();
    Err(classify_by_hand(parts.status, &parts.headers, &body).into())
}

pub(crate) fn bench_all(c: &mut Criterion) {
    bench_classify(c);
    bench_layer_429(c);
    bench_layer_ok(c);
}

fn bench_classify(c: &mut Criterion) {
    if !support::wants("normalize_classify_429") {
        return;
    }
    let headers = rate_limited_headers();
    let status = StatusCode::TOO_MANY_REQUESTS;
    let ours = classify(status, &headers, RATE_LIMITED);
    let theirs = classify_by_hand(status, &headers, RATE_LIMITED);
    assert_eq!(ours.kind(), ErrorKind::RateLimited);
    assert_eq!(theirs.kind(), ErrorKind::RateLimited);

    let mut group = Compare::new(c, "normalize_classify_429");
    group.case(
        "towline",
        || (),
        |()| {
            black_box(classify(
                status,
                black_box(&headers),
                black_box(RATE_LIMITED),
            ))
        },
    );
    group.case(
        "serde_by_hand",
        || (),
        |()| {
            black_box(classify_by_hand(
                status,
                black_box(&headers),
                black_box(RATE_LIMITED),
            ))
        },
    );
}

fn bench_layer_429(c: &mut Criterion) {
    if !support::wants("normalize_layer_429") {
        return;
    }
    // An error body is read under a timeout (a tokio timer): the calls need a runtime's context.
    let runtime = support::current_thread();
    let _context = runtime.enter();
    let provider = tower::service_fn(|_req: Request<Full<Bytes>>| {
        std::future::ready(Ok::<_, Error>(rate_limited()))
    });
    let mut ours = NormalizeLayer::new().layer(provider);
    let mut theirs = provider.and_then(check_by_hand);
    let err = now(ours.call(support::request())).expect_err("a 429 is an error");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    let err = now(theirs.call(support::request())).expect_err("a 429 is an error");
    assert_eq!(err.kind(), ErrorKind::RateLimited);

    let mut group = Compare::new(c, "normalize_layer_429");
    group.case("towline", support::request, |req| {
        now(ours.ready()).expect("ready");
        black_box(now(ours.call(req)).expect_err("a 429"))
    });
    group.case("serde_by_hand", support::request, |req| {
        now(theirs.ready()).expect("ready");
        black_box(now(theirs.call(req)).expect_err("a 429"))
    });
}

fn bench_layer_ok(c: &mut Criterion) {
    if !support::wants("normalize_layer_ok") {
        return;
    }
    let mut ours = NormalizeLayer::new().layer(support::client());
    let mut theirs = support::client().and_then(check_by_hand);
    let mut bare = support::client();
    support::check("towline", support::call(&mut ours, support::request()));
    support::check("by hand", support::call(&mut theirs, support::request()));

    let mut group = Compare::new(c, "normalize_layer_ok");
    group.case("towline", support::request, |req| {
        support::call(&mut ours, req)
    });
    group.case("serde_by_hand", support::request, |req| {
        support::call(&mut theirs, req)
    });
    group.case("bare", support::request, |req| {
        support::call(&mut bare, req)
    });
}
