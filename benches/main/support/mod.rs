//! What every bench module shares: the typical LLM request and answer, a driver for futures that
//! complete at once, and [`Compare`], the side-by-side group.

pub(crate) mod redis_server;
pub(crate) mod report;

use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

/// Where the requests go (the host is only read, never resolved: the clients are local).
pub(crate) const URL: &str = "https://api.moonshot.ai/v1/chat/completions";
/// The API key every request carries.
pub(crate) const API_KEY: &str = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz";
/// A typical small chat request.
pub(crate) const CHAT: &[u8] =
    br#"{"model":"kimi-k2-0711-preview","messages":[{"role":"user","content":"Say hi"}]}"#;
/// A typical small chat answer.
pub(crate) const REPLY: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"kimi-k2-0711-preview","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// The criterion configuration of the whole run (the command line can still override it).
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .noise_threshold(0.03)
        .without_plots()
}

/// A chat request to [`URL`] with an API key, a session id and a JSON body.
pub(crate) fn request() -> Request<Full<Bytes>> {
    Request::post(URL)
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .header("x-session-id", "bench-session")
        .body(Full::new(Bytes::from_static(CHAT)))
        .expect("a valid request")
}

/// The provider's answer: 200 with a JSON body.
pub(crate) fn ok_response() -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(REPLY)))
        .expect("a valid response")
}

/// The future of [`client`].
pub(crate) type ClientFuture = Ready<Result<Response<Full<Bytes>>, towline::Error>>;

/// The bare client: a `service_fn` that answers every request with [`ok_response`] at once.
pub(crate) fn client<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = towline::Error,
    Future = ClientFuture,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(|_request: Request<B>| ready(Ok(ok_response())))
}

/// Polls `future` once and returns its output: every service benched here over a
/// `service_fn` completes without waiting, so a pending future is a bug in the bench.
#[inline]
pub(crate) fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a benched future is pending: it should complete at once"),
    }
}

/// One call: ready, call, and the whole response body read, as a caller would.
#[inline]
pub(crate) fn call<S, R, B>(service: &mut S, request: R) -> Result<(), S::Error>
where
    S: Service<R, Response = Response<B>>,
    B: Body + Unpin,
{
    now(service.ready())?;
    let response = now(service.call(request))?;
    drain(response.into_body());
    Ok(())
}

/// Reads `body` to its end, frame by frame (no buffering).
#[inline]
pub(crate) fn drain<B: Body + Unpin>(mut body: B) {
    while let Some(frame) = now(body.frame()) {
        let _ = black_box(frame);
    }
}

/// Which single case to run outside criterion, and how often (see the crate docs).
fn count_mode() -> Option<(String, u64)> {
    let case = std::env::var("TOWLINE_BENCH_COUNT").ok()?;
    let iters = std::env::var("TOWLINE_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    Some((case, iters))
}

/// Whether this run needs group `group` at all: in count mode only the requested case's group
/// is set up, so that a callgrind run does not build a million-key table it never uses.
pub(crate) fn wants(group: &str) -> bool {
    match count_mode() {
        Some((case, _)) => case.split('/').next() == Some(group),
        None => true,
    }
}

/// A benchmark group whose cases do the same work: towline, its peer, the bare service.
pub(crate) struct Compare<'a> {
    name: &'static str,
    group: Option<BenchmarkGroup<'a, WallTime>>,
}

impl<'a> Compare<'a> {
    pub(crate) fn new(c: &'a mut Criterion, name: &'static str) -> Self {
        let group = wants_criterion().then(|| {
            let mut group = c.benchmark_group(name);
            group.throughput(Throughput::Elements(1));
            group
        });
        Compare { name, group }
    }

    /// Overrides the group's sample count (for slow cases: end to end, Redis).
    pub(crate) fn sample_size(&mut self, n: usize) -> &mut Self {
        if let Some(group) = &mut self.group {
            group.sample_size(n);
        }
        self
    }

    /// A case whose input is made outside the timed section (a fresh request per call).
    pub(crate) fn case<I, O>(
        &mut self,
        id: &str,
        mut setup: impl FnMut() -> I,
        mut routine: impl FnMut(I) -> O,
    ) -> &mut Self {
        if let Some(iters) = self.counting(id) {
            for _ in 0..iters {
                black_box(routine(setup()));
            }
            std::process::exit(0);
        }
        if let Some(group) = &mut self.group {
            group.bench_function(id, |b| {
                b.iter_batched(&mut setup, &mut routine, BatchSize::SmallInput)
            });
        }
        self
    }

    /// A case that times its own `iters` calls (several threads, or an async runtime).
    pub(crate) fn case_custom(
        &mut self,
        id: &str,
        mut routine: impl FnMut(u64) -> Duration,
    ) -> &mut Self {
        if let Some(iters) = self.counting(id) {
            black_box(routine(iters));
            std::process::exit(0);
        }
        if let Some(group) = &mut self.group {
            group.bench_function(id, |b| b.iter_custom(&mut routine));
        }
        self
    }

    fn counting(&self, id: &str) -> Option<u64> {
        let (case, iters) = count_mode()?;
        (case == format!("{}/{id}", self.name)).then_some(iters)
    }
}

impl Drop for Compare<'_> {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            group.finish();
        }
    }
}

fn wants_criterion() -> bool {
    count_mode().is_none()
}

/// A multi-threaded runtime with one worker per core, as a service on this machine would run.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A single-threaded runtime, entered (not run) by the cases that need a runtime's context for
/// timers while they poll their futures themselves.
pub(crate) fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The `p`th percentile of `sorted` (ascending), nearest rank.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Asserts a case does what it claims before it is timed (a bench of a failing call measures
/// the wrong thing).
pub(crate) fn check<E: std::fmt::Debug>(name: &str, outcome: Result<(), E>) {
    if let Err(e) = outcome {
        panic!("{name}: the benched call failed: {e:?}");
    }
}

/// `Bearer <key>`, the `authorization` header's value.
pub(crate) fn bearer() -> String {
    format!("Bearer {API_KEY}")
}

/// Collects `body` (async), for the end-to-end cases over real sockets.
pub(crate) async fn read_all<B>(body: B) -> Bytes
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    body.collect().await.expect("a whole body").to_bytes()
}
