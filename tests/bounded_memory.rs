//! A provider cannot make towline buffer what it sends: a 1 GiB error body is read no further
//! than the error-body limit, an endless event stream without events (keep-alive comments, or
//! one endless line) is never accumulated, and a huge successful body streams through the
//! whole stack in constant memory.
//!
//! Measured two ways: the bytes the stack actually pulled from the client's body (a counting
//! wrapper right above hyper-util), and the heap (a counting global allocator for this test
//! binary, sampled at every frame; the tests of this file run one at a time, on one thread,
//! so the counts are theirs alone).
//!
//! The limits, all configurable and documented on the Normalize layer's builder: error bodies
//! are read up to 64 KiB (`error_body_limit`, at most 16 MiB) and for at most 5 s
//! (`error_body_timeout`); an SSE line is kept across chunks up to 64 KiB
//! (`sse_line_limit`); the first SSE event is looked for in the first 64 KiB
//! (`sse_peek_limit`), within the attempt's timeout.
#![cfg(all(feature = "stack", feature = "mock"))]

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use towline::mock::{Dialect, Fault, MockProvider, MockServer, Script};
use towline::normalize::NormalizeLayer;
use towline::retry::RetryLayer;
use towline::{Error, ErrorKind, ReplayBody, Stack};

#[global_allocator]
static HEAP: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The tests of this file measure the process's heap: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn live_heap() -> i64 {
    let s = HEAP.stats();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64 + s.bytes_reallocated as i64
}

/// What the stack pulled from the client's bodies, and the heap's high-water mark above where
/// the measurement started, sampled at every frame.
#[derive(Clone)]
struct Meter {
    bytes_read: Arc<AtomicU64>,
    baseline: Arc<AtomicI64>,
    peak: Arc<AtomicI64>,
}

impl Meter {
    fn new() -> Self {
        Meter {
            bytes_read: Arc::default(),
            baseline: Arc::new(AtomicI64::new(live_heap())),
            peak: Arc::default(),
        }
    }

    /// Measures the heap from here on (after the stack and its connection were set up).
    fn rebase(&self) {
        self.baseline.store(live_heap(), Ordering::Relaxed);
        self.peak.store(0, Ordering::Relaxed);
    }

    fn sample(&self) {
        let baseline = self.baseline.load(Ordering::Relaxed);
        self.peak
            .fetch_max(live_heap() - baseline, Ordering::Relaxed);
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    fn peak(&self) -> u64 {
        self.sample();
        self.peak.load(Ordering::Relaxed).max(0) as u64
    }
}

/// A client body that counts what is pulled from it and samples the heap.
struct Counted<B> {
    inner: B,
    meter: Meter,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.meter.sample();
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.meter
                .bytes_read
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// A hyper-util client whose response bodies are counted.
fn counted_client(
    meter: &Meter,
) -> impl Service<
    Request<ReplayBody<Full<Bytes>>>,
    Response = Response<Counted<hyper::body::Incoming>>,
    Error = hyper_util::client::legacy::Error,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let hyper = Client::builder(TokioExecutor::new()).build_http::<ReplayBody<Full<Bytes>>>();
    let meter = meter.clone();
    service_fn(move |req| {
        let answer = hyper.request(req);
        let meter = meter.clone();
        async move {
            let response = answer.await?;
            Ok(response.map(|inner| Counted { inner, meter }))
        }
    })
}

async fn mock(script: Script) -> MockServer {
    MockProvider::builder()
        .default_script(script)
        .start()
        .await
        .unwrap()
}

fn request(server: &MockServer, stream: bool) -> Request<Full<Bytes>> {
    Request::post(server.url("/chat/completions"))
        .header("authorization", "Bearer sk-memory-test-0123456789")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(
            r#"{{"model":"mock-model","messages":[],"stream":{stream}}}"#
        ))))
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn a_1_gib_error_body_is_read_only_up_to_the_limit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = mock(Script::new(Dialect::OpenAi).fault(Fault::oversized_body(500, GIB))).await;
    let meter = Meter::new();
    // The default stack retries a 500 three times: four error bodies, each read up to 64 KiB.
    let svc = Stack::new()
        .retry(
            RetryLayer::builder()
                .backoff_base(Duration::from_millis(10))
                .build()
                .unwrap(),
        )
        .service(counted_client(&meter));
    let started = Instant::now();
    let err = svc.oneshot(request(&server, false)).await.unwrap_err();
    let elapsed = started.elapsed();

    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    let attempts = server.journal().total() as u64;
    assert_eq!(attempts, 4, "the first attempt and three retries");
    // A frame may overshoot the limit by what hyper had buffered: at most its read buffer.
    let bound = attempts * (64 * KIB + 512 * KIB);
    assert!(
        meter.bytes_read() <= bound,
        "{} bytes read of four 1 GiB bodies (bound {bound})",
        meter.bytes_read()
    );
    assert!(
        meter.bytes_read() >= attempts * 64 * KIB,
        "each body was read to the limit"
    );
    assert!(
        meter.peak() < 4 * MIB,
        "heap grew by {} bytes",
        meter.peak()
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "{elapsed:?}: the bodies were not drained"
    );
    eprintln!(
        "1 GiB error body x{attempts}: {} bytes read, heap peak +{} bytes, {elapsed:?}",
        meter.bytes_read(),
        meter.peak()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_endless_stream_of_keep_alives_is_never_buffered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let interval = Duration::from_millis(1);
    let server = mock(Script::new(Dialect::OpenAi).fault(Fault::endless_stream(interval))).await;

    // The first event never comes: the attempt's timeout ends the wait for it, the comments
    // read meanwhile (at most the peek limit) were not kept.
    let meter = Meter::new();
    let svc = Stack::new()
        .retry(RetryLayer::builder().max_retries(0).build().unwrap())
        .attempt_timeout(Duration::from_millis(300))
        .unwrap()
        .service(counted_client(&meter));
    let err = svc.oneshot(request(&server, true)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        meter.bytes_read() <= 64 * KIB,
        "{} bytes read",
        meter.bytes_read()
    );

    // With a small peek limit the response is handed over once 1 KiB of comments came with no
    // event; reading on, the body is streamed, not kept.
    let meter = Meter::new();
    let svc = Stack::new()
        .normalize(
            NormalizeLayer::builder()
                .sse_peek_limit(1024)
                .build()
                .unwrap(),
        )
        .service(counted_client(&meter));
    let response = svc.oneshot(request(&server, true)).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    meter.rebase();
    let before = meter.bytes_read();
    let mut delivered = 0u64;
    while meter.bytes_read() - before < 8 * KIB {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("keep-alives keep coming")
            .expect("endless")
            .expect("no error");
        delivered += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(
        delivered,
        meter.bytes_read(),
        "delivered as read, nothing held back"
    );
    assert!(meter.peak() < MIB, "heap grew by {} bytes", meter.peak());
    eprintln!(
        "endless keep-alive stream: {delivered} bytes streamed, heap peak +{} bytes",
        meter.peak()
    );
    server.shutdown().await;
}

/// An endless `text/event-stream` body of one line that never ends: `data: xxxx…`.
struct EndlessLine {
    chunk: Bytes,
    sent: u64,
}

impl Body for EndlessLine {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.sent += 1;
        let frame = if self.sent == 1 {
            Bytes::from_static(b"data: ")
        } else {
            self.chunk.clone()
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_endless_line_without_newline_is_never_buffered() {
    let _one = ONE_AT_A_TIME.lock().await;
    let meter = Meter::new();
    let client = {
        let meter = meter.clone();
        service_fn(move |_req: Request<Full<Bytes>>| {
            let body = Counted {
                inner: EndlessLine {
                    chunk: Bytes::from(vec![b'x'; 16 * 1024]),
                    sent: 0,
                },
                meter: meter.clone(),
            };
            let response = Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap();
            std::future::ready(Ok::<_, Error>(response))
        })
    };
    // No first event within the peek limit: the response is handed over, and its body streams.
    let svc = tower::ServiceBuilder::new()
        .layer(NormalizeLayer::new())
        .service(client);
    let response = svc
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let mut delivered = 0u64;
    while delivered < 64 * MIB {
        let frame = body.frame().await.expect("endless").expect("no error");
        delivered += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    assert!(
        meter.peak() < 2 * MIB,
        "a 64 MiB line grew the heap by {} bytes",
        meter.peak()
    );
    eprintln!(
        "endless line: {delivered} bytes streamed, heap peak +{} bytes",
        meter.peak()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_huge_success_streams_through_the_whole_stack() {
    let _one = ONE_AT_A_TIME.lock().await;
    // A 200 with a 256 MiB body (the mock's oversized answer, generated as it is sent).
    let server =
        mock(Script::new(Dialect::OpenAi).fault(Fault::oversized_body(200, 256 * MIB))).await;
    let meter = Meter::new();
    let svc = Stack::new().service(counted_client(&meter));
    let response = svc.oneshot(request(&server, false)).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    let mut delivered = 0u64;
    while let Some(frame) = body.frame().await {
        delivered += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(delivered, 256 * MIB, "the whole body, untouched");
    assert_eq!(meter.bytes_read(), delivered);
    assert!(
        meter.peak() < 4 * MIB,
        "heap grew by {} bytes",
        meter.peak()
    );
    eprintln!(
        "256 MiB success: streamed through every layer, heap peak +{} bytes",
        meter.peak()
    );
    server.shutdown().await;
}
