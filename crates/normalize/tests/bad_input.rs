//! Bad input: arbitrary bytes, truncated JSON, wrong types, huge numbers, non-UTF-8, hostile
//! headers and SSE streams never panic and always give a class; error bodies are read no
//! further than the limit and no longer than the read timeout.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use towline_core::{Error, ErrorKind};
use towline_normalize::{NormalizeLayer, classify, classify_ok_body, headers, retry_hint};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Sends `response` through the layer.
async fn through<B>(
    layer: NormalizeLayer,
    response: Response<B>,
) -> Result<Response<towline_normalize::NormalizeBody<B>>, Error>
where
    B: Body,
    B::Error: Into<towline_core::BoxError>,
{
    let mut response = Some(response);
    let client = service_fn(move |_: Request<()>| {
        let response = response.take().expect("one call");
        async move { Ok::<_, Infallible>(response) }
    });
    ServiceBuilder::new()
        .layer(layer)
        .service(client)
        .oneshot(Request::new(()))
        .await
}

fn status_strategy() -> impl Strategy<Value = StatusCode> {
    (100u16..=999).prop_map(|s| StatusCode::from_u16(s).unwrap())
}

/// Fragments that make random SSE streams hit the interesting paths often.
fn sse_fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"event: error\n".to_vec()),
        Just(b"{\"error\":{\"type\":\"server_error\",\"message\":\"x\"}}".to_vec()),
        Just(
            b"{\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"error\"}]}"
                .to_vec()
        ),
        Just(b"{\"error\":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b": comment\n".to_vec()),
        Just(b"\n\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

/// A stream of chunks cut at arbitrary places.
fn sse_chunks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(sse_fragment(), 0..24).prop_flat_map(|fragments| {
        let joined: Vec<u8> = fragments.concat();
        let len = joined.len();
        proptest::collection::vec(0..=len, 0..8).prop_map(move |mut cuts| {
            cuts.push(0);
            cuts.push(len);
            cuts.sort_unstable();
            cuts.windows(2)
                .map(|w| joined[w[0]..w[1]].to_vec())
                .collect()
        })
    })
}

/// A body yielding the given chunks, then (optionally) stalling forever.
struct Scripted {
    chunks: VecDeque<Bytes>,
    stall: bool,
    yielded: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl Scripted {
    fn new(chunks: impl IntoIterator<Item = Bytes>, stall: bool) -> Self {
        Scripted {
            chunks: chunks.into_iter().collect(),
            stall,
            yielded: Arc::default(),
            dropped: Arc::default(),
        }
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Body for Scripted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.chunks.pop_front() {
            Some(chunk) => {
                self.yielded.fetch_add(chunk.len(), Ordering::SeqCst);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None if self.stall => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_as_error_bodies(status in status_strategy(), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let err = classify(status, &HeaderMap::new(), &body);
        prop_assert_eq!(err.status(), status);
        let _ = err.kind().as_str();
        let _ = classify_ok_body(&HeaderMap::new(), &body);
        let _ = retry_hint(&HeaderMap::new(), &body, SystemTime::now());
    }

    #[test]
    fn arbitrary_header_values(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..48), 12)) {
        let names = [
            "retry-after", "retry-after-ms", "x-should-retry", "x-request-id",
            "x-ratelimit-limit-requests", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests",
            "x-ratelimit-reset", "anthropic-ratelimit-tokens-reset", "x-ratelimit-limit-tokens-month",
            "anthropic-ratelimit-input-tokens-limit", "cf-ray",
        ];
        let mut map = HeaderMap::new();
        for (name, value) in names.iter().zip(values) {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.insert(HeaderName::from_static(name), value);
            }
        }
        let now = SystemTime::now();
        let _ = headers::rate_limit_snapshot(&map, now);
        let _ = headers::retry_hint(&map, now);
        let _ = headers::should_retry(&map);
        let err = classify(StatusCode::TOO_MANY_REQUESTS, &map, b"{}");
        prop_assert!(matches!(err.kind(), ErrorKind::RateLimited | ErrorKind::QuotaExhausted));
    }

    #[test]
    fn arbitrary_error_bodies_through_the_layer(status in 400u16..600, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let rt = runtime();
        let response = Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap();
        let result = rt.block_on(through(NormalizeLayer::new(), response));
        let err = result.expect_err("an error status is an Err");
        prop_assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
    }

    /// Whatever the stream, the body delivers a prefix of it (all of it when no error), ends,
    /// and the only errors are classified in-band errors.
    #[test]
    fn arbitrary_sse_streams(chunks in sse_chunks(), peek in any::<bool>(), line_limit in 64usize..256) {
        let rt = runtime();
        let input: Vec<u8> = chunks.concat();
        let layer = NormalizeLayer::builder()
            .sse_peek_first_event(peek)
            .sse_line_limit(line_limit)
            .build()
            .unwrap();
        let body = Scripted::new(chunks.into_iter().map(Bytes::from), false);
        let response = Response::builder()
            .header("content-type", "text/event-stream")
            .body(body)
            .unwrap();
        let (delivered, error) = rt.block_on(async {
            let response = match through(layer, response).await {
                Ok(response) => response,
                Err(err) => return (Vec::new(), Some(err)),
            };
            let mut body = response.into_body();
            let mut delivered = Vec::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => delivered.extend_from_slice(&frame.into_data().unwrap()),
                    Err(err) => {
                        assert!(body.frame().await.is_none());
                        return (delivered, Some(err));
                    }
                }
            }
            (delivered, None)
        });
        prop_assert!(input.starts_with(&delivered));
        match error {
            None => prop_assert_eq!(delivered, input),
            Some(err) => {
                prop_assert!(matches!(err, Error::Api(_) | Error::StreamInterrupted(_)), "{:?}", err);
                prop_assert!(err.api().is_some());
            }
        }
    }
}

/// Every prefix of real error bodies: never a panic, always the status's class at least.
#[test]
fn truncated_json_keeps_the_status_class() {
    let bodies = [
        r#"{"error":{"type":"rate_limit_reached_error","message":"please try again after 1 seconds"}}"#,
        r#"{"error":{"type":"rate_limit_error","code":"too_many_requests","message":"Rate limit exceeded","param":null,"request_id":"req-7f65ab21d1"}}"#,
        r#"{ "code": "rate_limit_exceeded", "message": "Rate limit exceeded.", "data": { "retry_after": 60 } }"#,
        r#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"26s"}]}}]"#,
        r#"{"errcode":-2005,"errmsg":"已有对话流正在输出","data":null}"#,
    ];
    for body in bodies {
        for end in 0..=body.len() {
            let err = classify(
                StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &body.as_bytes()[..end],
            );
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::RateLimited | ErrorKind::QuotaExhausted | ErrorKind::Overloaded
                ),
                "{:?} for {:?}",
                err.kind(),
                String::from_utf8_lossy(&body.as_bytes()[..end])
            );
        }
    }
}

#[test]
fn wrong_types_huge_numbers_and_non_utf8() {
    let cases: [(&[u8], ErrorKind); 12] = [
        (
            br#"{"error":{"code":1302,"message":"x"}}"#,
            ErrorKind::RateLimited,
        ),
        (
            br#"{"error":{"code":"1302","message":"x"}}"#,
            ErrorKind::RateLimited,
        ),
        (
            br#"{"error":{"message":{"text":"nested"},"type":["a"]}}"#,
            ErrorKind::RateLimited,
        ),
        (br#"{"error":[1,2,3]}"#, ErrorKind::RateLimited),
        (
            br#"{"error":12345678901234567890123}"#,
            ErrorKind::RateLimited,
        ),
        (
            br#"{"errcode":-99999999999999999999999999,"errmsg":5}"#,
            ErrorKind::RateLimited,
        ),
        (br#"{"code":1e400,"message":null}"#, ErrorKind::RateLimited),
        (
            br#"{"error":{"type":"insufficient_quota","message":"\ud800"}}"#,
            ErrorKind::QuotaExhausted,
        ),
        (
            b"{\"error\":{\"type\":\"insufficient_quota\",\"message\":\"\xff\xfe bad utf8\"}}",
            ErrorKind::QuotaExhausted,
        ),
        (b"\xff\xfe\xfd\x00\x01", ErrorKind::RateLimited),
        (
            br#"{"error":{"type":"rate_limit_error"},"error":{"type":"insufficient_quota"}}"#,
            ErrorKind::RateLimited,
        ),
        (&[b'['; 10_000], ErrorKind::RateLimited),
    ];
    for (body, expected) in cases {
        let err = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), body);
        assert_eq!(err.kind(), expected, "{}", String::from_utf8_lossy(body));
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // A 200 is Unknown at worst.
    let err = classify(StatusCode::OK, &HeaderMap::new(), b"\xff");
    assert_eq!(err.kind(), ErrorKind::Unknown);
    // A message of the wrong type is kept as its JSON, not dropped.
    let err = classify(
        StatusCode::BAD_REQUEST,
        &HeaderMap::new(),
        br#"{"error":{"message":{"text":"nested"}}}"#,
    );
    assert_eq!(err.message(), Some(r#"{"text":"nested"}"#));
}

#[tokio::test]
async fn ten_mib_error_body_is_read_no_further_than_the_limit() {
    let chunk = Bytes::from(vec![b'a'; 8 * 1024]);
    let body = Scripted::new(std::iter::repeat_n(chunk, 1280), false); // 10 MiB
    let yielded = body.yielded.clone();
    let response = Response::builder().status(500).body(body).unwrap();
    let err = through(NormalizeLayer::new(), response).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    let read = yielded.load(Ordering::SeqCst);
    assert!(
        (64 * 1024..=64 * 1024 + 8 * 1024).contains(&read),
        "read {read} bytes of a 10 MiB body"
    );
    // The plain-text message is cut too.
    assert!(err.api().unwrap().message().unwrap().len() <= 512 + '…'.len_utf8());
}

#[tokio::test]
async fn error_body_limit_is_configurable() {
    let chunk = Bytes::from(vec![b'a'; 1024]);
    let body = Scripted::new(std::iter::repeat_n(chunk, 100), false);
    let yielded = body.yielded.clone();
    let response = Response::builder().status(502).body(body).unwrap();
    let layer = NormalizeLayer::builder()
        .error_body_limit(4096)
        .build()
        .unwrap();
    let _ = through(layer, response).await.unwrap_err();
    assert_eq!(yielded.load(Ordering::SeqCst), 4096);
}

#[tokio::test(start_paused = true)]
async fn stalled_error_body_finishes_within_the_read_timeout() {
    let body = Scripted::new(
        [Bytes::from_static(
            br#"{"error":{"type":"engine_overloaded_error","message":"busy"#,
        )],
        true,
    );
    let response = Response::builder()
        .status(429)
        .header("retry-after", "2")
        .header("x-request-id", "stalled-1")
        .body(body)
        .unwrap();
    let layer = NormalizeLayer::builder()
        .error_body_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let err = through(layer, response).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    // Classified from the status, the headers and what was read (truncated JSON).
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert_eq!(err.api().unwrap().request_id(), Some("stalled-1"));
}

#[tokio::test(start_paused = true)]
async fn stalled_ok_json_inspection_hands_on_what_was_read() {
    let body = Scripted::new([Bytes::from_static(b"{\"id\":")], true);
    let response = Response::builder()
        .header("content-type", "application/json")
        .header("content-length", "100")
        .body(SizedScripted(body, 100))
        .unwrap();
    let layer = NormalizeLayer::builder()
        .inspect_ok_json(true)
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let response = through(layer, response)
        .await
        .expect("a stall is not an error");
    assert_eq!(
        start.elapsed(),
        towline_normalize::DEFAULT_ERROR_BODY_TIMEOUT
    );
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, Bytes::from_static(b"{\"id\":"));
}

/// `Scripted` with a known length, as a body with `content-length` reports.
struct SizedScripted(Scripted, u64);

impl Body for SizedScripted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.1)
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_or_the_body_drops_the_client_body() {
    // Future dropped while reading an error body.
    let body = Scripted::new([Bytes::from_static(b"{")], true);
    let dropped = body.dropped.clone();
    let response = Response::builder().status(500).body(body).unwrap();
    let mut response = Some(response);
    let mut service = ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service(service_fn(move |_: Request<()>| {
            let response = response.take().unwrap();
            async move { Ok::<_, Infallible>(response) }
        }));
    let future = service.ready().await.unwrap().call(Request::new(()));
    let mut future = Box::pin(future);
    assert!(futures_poll_once(future.as_mut()).await.is_pending());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(future);
    assert!(dropped.load(Ordering::SeqCst));

    // Body dropped mid-stream.
    let body = Scripted::new([Bytes::from_static(b"data: {\"a\":1}\n\n")], true);
    let dropped = body.dropped.clone();
    let response = Response::builder()
        .header("content-type", "text/event-stream")
        .body(body)
        .unwrap();
    let response = through(NormalizeLayer::new(), response).await.unwrap();
    drop(response);
    assert!(dropped.load(Ordering::SeqCst));
}

async fn futures_poll_once<F: std::future::Future + Unpin>(mut future: F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx))).await
}

#[test]
fn futures_and_bodies_are_send_and_sync_when_the_client_is() {
    fn send_sync<T: Send + Sync>() {}
    type Ready = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;
    send_sync::<towline_normalize::ResponseFuture<Ready, Full<Bytes>>>();
    send_sync::<towline_normalize::NormalizeBody<Full<Bytes>>>();
    send_sync::<towline_normalize::Normalize<()>>();
}
