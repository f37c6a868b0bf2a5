//! Cancellation at every await point: each layer's response future is dropped after 0, 1, 2,
//! ... polls, for every count up to the one at which it completes, and then its response body
//! after 0, 1, 2, ... frames. After every drop, nothing may be left behind: no session slot or
//! waiter, no throttle waiter and no token spent by a call that was never sent, no breaker
//! probe slot, no retry withdrawn for a retry that was never sent, no unfinished span, no
//! inner call or response body still alive, no task.
//!
//! The harness polls the future itself, with its own waker, and between two polls waits for
//! that waker (tokio's paused clock jumps to the next timer), so "after k polls" is exactly "at
//! its k-th await point". A future that stays pending without ever waking its waker would hang
//! an executor; the harness fails instead.
#![cfg(feature = "stack")]
// The harness's `make` closures are async (they set up state) and return the future under
// test, which is meant to be polled by the harness rather than awaited by them.
#![allow(clippy::async_yields_async)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use towline::breaker::BreakerLayer;
use towline::normalize::NormalizeLayer;
use towline::retry::{RetryBudget, RetryLayer, TimeoutLayer};
use towline::session::SessionLayer;
use towline::throttle::ThrottleLayer;
use towline::trace::TraceLayer;
use towline::{ApiError, Error, ErrorKind, HintSource, ReplayBody, RetryHint, Stack};

const MS: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------------
// The harness.

/// The harness's waker: remembers that it was woken, and wakes the test task.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.lock().unwrap().take() {
            task.wake();
        }
    }
}

impl Flag {
    /// Waits until the polled future's waker is woken. A future that never wakes it would
    /// hang: fail after a (virtual) minute instead.
    async fn woken(&self) {
        let wait = std::future::poll_fn(|cx| {
            *self.task.lock().unwrap() = Some(cx.waker().clone());
            if self.woken.swap(false, Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("a pending future must wake its waker (lost wake-up)");
    }
}

/// Polls `future` at most `polls` times, waiting for its waker between polls, and drops it.
/// Its output, if it completed within those polls.
async fn poll_then_drop<F: Future>(future: F, polls: usize) -> Option<F::Output> {
    let flag = Arc::new(Flag::default());
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    for n in 1..=polls {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        if n < polls {
            flag.woken().await;
        }
    }
    None
}

/// Where a call was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropPoint {
    /// The response future, after this many polls.
    Future(usize),
    /// The response body, after this many frames.
    Body(usize),
    /// Nothing was dropped early: the call completed, its body read to the end.
    Completed,
}

/// Calls `make` for a fresh call each time, and drops it at every await point of its future,
/// then at every frame of its body; `check` runs after each drop. Returns how many await
/// points the future had.
async fn at_every_await_point<F, B>(
    name: &str,
    mut make: impl AsyncFnMut() -> F,
    mut check: impl AsyncFnMut(DropPoint),
) -> usize
where
    F: Future<Output = Result<Response<B>, Error>>,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let mut polls = 0;
    let completed_at = loop {
        assert!(polls < 1_000, "{name}: the future never completes");
        let call = make().await;
        if let Some(result) = poll_then_drop(call, polls).await {
            drop(result);
            check(DropPoint::Future(polls)).await;
            break polls;
        }
        check(DropPoint::Future(polls)).await;
        polls += 1;
    };
    for frames in 0.. {
        assert!(frames < 1_000, "{name}: the body never ends");
        let call = make().await;
        let response = poll_then_drop(call, completed_at)
            .await
            .expect("completes in as many polls as before");
        let mut body = Box::pin(response.map(Response::into_body).ok());
        let mut ended = body.is_none();
        if let Some(body) = body.as_mut().as_pin_mut() {
            let mut body = body;
            for _ in 0..frames {
                match body.as_mut().frame().await {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        drop(body);
        if ended {
            check(DropPoint::Completed).await;
            break;
        }
        check(DropPoint::Body(frames)).await;
    }
    eprintln!("{name}: dropped at each of {completed_at} await points and at every body frame");
    completed_at
}

// ---------------------------------------------------------------------------------------------
// A scripted provider whose calls and bodies can be counted while alive.

/// Counts what the provider has alive and what it was asked.
#[derive(Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    bodies: Arc<AtomicUsize>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Nothing of the provider is alive: no call in progress, no response body.
    #[track_caller]
    fn assert_idle(&self, at: DropPoint) {
        assert_eq!(
            self.in_flight.load(Ordering::SeqCst),
            0,
            "{at:?}: an inner call is still alive"
        );
        assert_eq!(
            self.bodies.load(Ordering::SeqCst),
            0,
            "{at:?}: a response body is still alive"
        );
    }
}

/// Alive while a counter says so.
#[derive(Debug)]
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Alive(counter.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body whose frames come `interval` apart.
#[derive(Debug)]
struct SlowBody {
    frames: VecDeque<Bytes>,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    _alive: Alive,
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.frames.is_empty() {
            return Poll::Ready(None);
        }
        let interval = self.interval;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let frame = self.frames.pop_front().expect("checked above");
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

/// What the provider answers to its n-th call.
#[derive(Clone)]
enum Answer {
    /// A response after `latency`, its body in `frames` 5 ms apart.
    Respond {
        latency: Duration,
        status: u16,
        content_type: &'static str,
        frames: &'static [&'static str],
    },
    /// An error after `latency`.
    Fail {
        latency: Duration,
        error: fn() -> Error,
    },
}

const SSE: &[&str] = &[
    ": keep-alive\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
    "data: [DONE]\n\n",
];

fn stream_after(latency: Duration) -> Answer {
    Answer::Respond {
        latency,
        status: 200,
        content_type: "text/event-stream",
        frames: SSE,
    }
}

fn json_after(latency: Duration) -> Answer {
    Answer::Respond {
        latency,
        status: 200,
        content_type: "application/json",
        frames: &["{\"choices\":", "[]}"],
    }
}

fn rate_limited() -> Error {
    ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
        .with_retry_hint(RetryHint::new(40 * MS, HintSource::RetryAfterMs))
        .into()
}

fn server_error() -> Error {
    ApiError::new(ErrorKind::Server, StatusCode::INTERNAL_SERVER_ERROR).into()
}

/// A provider answering its n-th call with `script(n)`.
fn provider<B>(
    probe: Probe,
    script: impl Fn(usize) -> Answer + Clone + Send + Sync + 'static,
) -> impl Service<
    Request<B>,
    Response = Response<SlowBody>,
    Error = Error,
    Future = impl Future<Output = Result<Response<SlowBody>, Error>> + Send,
> + Clone
+ Send
+ Sync
+ 'static
where
    B: Send + 'static,
{
    service_fn(move |_req: Request<B>| {
        let n = probe.calls.fetch_add(1, Ordering::SeqCst);
        let answer = script(n);
        let alive = Alive::new(&probe.in_flight);
        let bodies = probe.bodies.clone();
        async move {
            let _alive = alive;
            match answer {
                Answer::Fail { latency, error } => {
                    tokio::time::sleep(latency).await;
                    Err(error())
                }
                Answer::Respond {
                    latency,
                    status,
                    content_type,
                    frames,
                } => {
                    tokio::time::sleep(latency).await;
                    let body = SlowBody {
                        frames: frames
                            .iter()
                            .map(|f| Bytes::from_static(f.as_bytes()))
                            .collect(),
                        interval: 5 * MS,
                        sleep: None,
                        _alive: Alive::new(&bodies),
                    };
                    Ok(Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(body)
                        .unwrap())
                }
            }
        }
    })
}

fn request(session: &str) -> Request<Full<Bytes>> {
    Request::post("https://api.example.com/v1/chat/completions")
        .header("authorization", "Bearer sk-cancel-test-0123456789")
        .header("x-session-id", session)
        .body(Full::new(Bytes::from_static(
            br#"{"model":"m","stream":true,"messages":[]}"#,
        )))
        .unwrap()
}

/// The future of `svc.call(req)`, the service polled ready first (outside the harness, so that
/// "dropped after 0 polls" is a future that was created and never polled).
async fn called<S, R>(svc: &S, req: R) -> S::Future
where
    S: Service<R> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    svc.ready().await.unwrap();
    svc.call(req)
}

/// State a test's `make` hands to its `check`.
type Shared<T> = Arc<Mutex<Option<T>>>;

fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

// ---------------------------------------------------------------------------------------------
// Layer by layer.

#[tokio::test(start_paused = true)]
async fn session_cancellation_leaves_no_slot_nor_waiter() {
    let probe = Probe::default();
    let layer = SessionLayer::new();
    let monitor = layer.monitor();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(provider(probe.clone(), |_| stream_after(10 * MS)));
    let baseline = tasks();

    // Uncontended: the call owns its session at once.
    let points = at_every_await_point(
        "session alone",
        async || called(&svc, request("s1")).await,
        async |at| {
            probe.assert_idle(at);
            assert!(
                monitor.snapshot().is_idle(),
                "{at:?}: {:?}",
                monitor.snapshot()
            );
        },
    )
    .await;
    assert!(points >= 2, "{points}");

    // Contended: an earlier turn holds the session for 30 ms, so the call first waits in
    // line, then for the inner service, then for its body.
    let holder: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Default::default();
    let points = at_every_await_point(
        "session queued",
        async || {
            let first = svc.clone().oneshot(request("s1")).await.unwrap();
            *holder.lock().unwrap() = Some(tokio::spawn(async move {
                tokio::time::sleep(30 * MS).await;
                drop(first);
            }));
            called(&svc, request("s1")).await
        },
        async |at| {
            let release = holder.lock().unwrap().take().unwrap();
            release.await.unwrap();
            probe.assert_idle(at);
            assert!(
                monitor.snapshot().is_idle(),
                "{at:?}: {:?}",
                monitor.snapshot()
            );
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
            // The session serves the next turn at once.
            let next = async {
                svc.clone()
                    .oneshot(request("s1"))
                    .await
                    .unwrap()
                    .into_body()
                    .collect()
                    .await
            };
            let done = tokio::time::timeout(100 * MS, next).await;
            assert!(done.is_ok(), "{at:?}: the session is still held");
        },
    )
    .await;
    assert!(points >= 3, "{points}");
}

#[tokio::test(start_paused = true)]
async fn throttle_cancellation_gives_back_the_place_and_spends_no_token() {
    let baseline = tasks();
    let state: Arc<Mutex<Option<(ThrottleLayer, Probe, Instant)>>> = Default::default();
    let points = at_every_await_point(
        "throttle",
        async || {
            // A key allowing one call per 100 ms; the first call takes the token, so the call
            // under test waits 100 ms for its own.
            let layer = ThrottleLayer::builder()
                .rate(10.0)
                .burst(1)
                .no_adaptive()
                .build()
                .unwrap();
            let probe = Probe::default();
            let mut svc = layer.clone().layer(provider(probe.clone(), |n| match n {
                // The answer of the call under test teaches a pause, too.
                1 => Answer::Fail {
                    latency: 10 * MS,
                    error: rate_limited,
                },
                _ => json_after(10 * MS),
            }));
            let start = Instant::now();
            svc.ready().await.unwrap().call(request("s")).await.unwrap();
            *state.lock().unwrap() = Some((layer, probe, start));
            called(&svc, request("s")).await
        },
        async |at| {
            let (layer, probe, start) = state.lock().unwrap().take().unwrap();
            probe.assert_idle(at);
            assert_eq!(
                layer.stats().waiters,
                0,
                "{at:?}: a waiter was left in the queue"
            );
            // When does the key admit the next call? A call dropped before it was sent spent
            // nothing: the next token is the one it waited for, at 100 ms. A call that was
            // sent spent it: the next one comes at 200 ms (its answer's 40 ms pause, from
            // 110 ms, ends before that).
            let sent = probe.calls() == 2;
            let expected = start + if sent { 200 * MS } else { 100 * MS };
            let dropped_at = Instant::now();
            let svc = layer.layer(provider(probe.clone(), |_| json_after(Duration::ZERO)));
            svc.oneshot(request("s")).await.unwrap();
            assert_eq!(
                Instant::now(),
                dropped_at.max(expected),
                "{at:?}: the next call went {:?} after the start, expected {:?}",
                Instant::now() - start,
                dropped_at.max(expected) - start
            );
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
        },
    )
    .await;
    assert!(points >= 3, "{points}");
}

#[tokio::test(start_paused = true)]
async fn breaker_cancellation_frees_the_probe_slot() {
    let baseline = tasks();
    let state: Arc<Mutex<Option<(BreakerLayer, Probe)>>> = Default::default();
    let points = at_every_await_point(
        "breaker probe",
        async || {
            // One failure opens the circuit for 1 s; then one probe at a time.
            let layer = BreakerLayer::builder()
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(1))
                .half_open_probes(1)
                .probe_successes(1)
                .build()
                .unwrap();
            let probe = Probe::default();
            let svc = layer.layer(provider(probe.clone(), |n| match n {
                0 => Answer::Fail {
                    latency: MS,
                    error: server_error,
                },
                _ => stream_after(10 * MS),
            }));
            let failed = svc.clone().oneshot(request("s")).await.unwrap_err();
            assert_eq!(failed.kind(), ErrorKind::Server);
            let refused = svc.clone().oneshot(request("s")).await.unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::CircuitOpen);
            tokio::time::sleep(Duration::from_secs(1)).await;
            *state.lock().unwrap() = Some((layer, probe));
            // The probe under test.
            called(&svc, request("s")).await
        },
        async |at| {
            let (layer, probe) = state.lock().unwrap().take().unwrap();
            probe.assert_idle(at);
            let handle = layer.handle();
            assert_eq!(
                handle.probes_in_flight(),
                0,
                "{at:?}: a probe slot is still held"
            );
            // The circuit is not wedged half-open: the next call goes through.
            let svc = layer.layer(provider(probe.clone(), |_| json_after(MS)));
            let next = svc.oneshot(request("s")).await;
            assert!(next.is_ok(), "{at:?}: {:?}", next.err());
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
        },
    )
    .await;
    assert!(points >= 2, "{points}");
}

#[tokio::test(start_paused = true)]
async fn retry_cancellation_returns_an_unsent_retry_to_the_budget() {
    const FLOOR_RETRIES: u64 = 10; // floor 1/s over 10 s, no ratio
    let baseline = tasks();
    let state: Arc<Mutex<Option<(RetryBudget, Probe)>>> = Default::default();
    let points = at_every_await_point(
        "retry",
        async || {
            let budget = RetryBudget::new(0.0, 1, Duration::from_secs(10)).unwrap();
            assert_eq!(budget.available(), FLOOR_RETRIES);
            let probe = Probe::default();
            let svc = ServiceBuilder::new()
                .layer(
                    RetryLayer::builder()
                        .budget(budget.clone())
                        .backoff_base(20 * MS)
                        .seed(7)
                        .build()
                        .unwrap(),
                )
                .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
                .service(provider(probe.clone(), |n| match n {
                    // Two failures (a hint, then a backoff), then a stream.
                    0 => Answer::Fail {
                        latency: 10 * MS,
                        error: rate_limited,
                    },
                    1 => Answer::Fail {
                        latency: 10 * MS,
                        error: server_error,
                    },
                    _ => stream_after(10 * MS),
                }));
            *state.lock().unwrap() = Some((budget, probe));
            called(&svc, request("s")).await
        },
        async |at| {
            let (budget, probe) = state.lock().unwrap().take().unwrap();
            probe.assert_idle(at);
            let retries_sent = probe.calls().saturating_sub(1) as u64;
            assert_eq!(
                budget.available(),
                FLOOR_RETRIES - retries_sent,
                "{at:?}: {retries_sent} retries were sent"
            );
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
        },
    )
    .await;
    assert!(points >= 5, "{points}");
}

#[tokio::test(start_paused = true)]
async fn trace_cancellation_ends_every_span() {
    let exporter = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let trace = TraceLayer::builder()
        .tracer_provider(&tracer)
        .metrics(false)
        .build()
        .unwrap();
    let probe = Probe::default();
    let svc = ServiceBuilder::new()
        .layer(trace.clone())
        .layer(trace.attempt_layer())
        .service(provider(probe.clone(), |_| stream_after(10 * MS)));
    let baseline = tasks();
    let calls = AtomicUsize::new(0);
    let points = at_every_await_point(
        "trace",
        async || {
            calls.fetch_add(1, Ordering::SeqCst);
            called(&svc, request("s")).await
        },
        async |at| {
            probe.assert_idle(at);
            let spans = exporter.get_finished_spans().unwrap();
            let roots = spans
                .iter()
                .filter(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID)
                .count();
            assert_eq!(
                roots,
                calls.load(Ordering::SeqCst),
                "{at:?}: a call span never ended"
            );
            assert_eq!(
                spans.len() - roots,
                probe.calls(),
                "{at:?}: an attempt span never ended"
            );
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
        },
    )
    .await;
    assert!(points >= 2, "{points}");
}

#[tokio::test(start_paused = true)]
async fn normalize_cancellation_drops_the_client_body() {
    let baseline = tasks();
    for (what, answer) in [
        (
            "error body being read",
            Answer::Respond {
                latency: 10 * MS,
                status: 429,
                content_type: "application/json",
                frames: &[
                    "{\"error\":{\"type\":\"rate_limit_reached_error\",",
                    "\"message\":\"slow down\"}}",
                ],
            },
        ),
        ("stream peeked for its first event", stream_after(10 * MS)),
    ] {
        let probe = Probe::default();
        let svc = ServiceBuilder::new()
            .layer(NormalizeLayer::new())
            .service(provider(probe.clone(), move |_| answer.clone()));
        let points = at_every_await_point(
            what,
            async || called(&svc, request("s")).await,
            async |at| {
                probe.assert_idle(at);
                assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
            },
        )
        .await;
        assert!(points >= 3, "{what}: {points}");
    }
}

// ---------------------------------------------------------------------------------------------
// The whole stack.

/// The full stack over the scripted provider, with handles on every layer's state.
struct FullStack {
    svc: towline::StackService<Client>,
    probe: Probe,
    session: towline::session::SessionMonitor,
    throttle: ThrottleLayer,
    breaker: towline::breaker::BreakerHandle,
    spans: InMemorySpanExporter,
    _tracer: SdkTracerProvider,
}

type Client =
    tower::util::BoxCloneSyncService<Request<ReplayBody<Full<Bytes>>>, Response<SlowBody>, Error>;

impl FullStack {
    fn new() -> Self {
        let probe = Probe::default();
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let session = SessionLayer::new();
        let throttle = ThrottleLayer::builder()
            .rate(20.0)
            .burst(1)
            .build()
            .unwrap();
        let breaker = BreakerLayer::builder()
            .consecutive_failures(3)
            .build()
            .unwrap();
        let monitors = (session.monitor(), breaker.handle());
        // The turn under test: a 500 whose body is read slowly, then a retry answered with a
        // stream peeked for its first event. Other calls succeed at once.
        let client = Client::new(provider(probe.clone(), |n| match n {
            1 => Answer::Respond {
                latency: 10 * MS,
                status: 500,
                content_type: "application/json",
                frames: &[
                    "{\"error\":{\"type\":\"server_error\",",
                    "\"message\":\"x\"}}",
                ],
            },
            2 => stream_after(10 * MS),
            _ => json_after(MS),
        }));
        let svc = Stack::new()
            .trace(
                TraceLayer::builder()
                    .tracer_provider(&tracer)
                    .metrics(false)
                    .build()
                    .unwrap(),
            )
            .session(session)
            .retry(
                RetryLayer::builder()
                    .backoff_base(20 * MS)
                    .seed(3)
                    .build()
                    .unwrap(),
            )
            .throttle(throttle.clone())
            .breaker(breaker)
            .attempt_timeout(Duration::from_secs(1))
            .unwrap()
            .service(client);
        FullStack {
            svc,
            probe,
            session: monitors.0,
            throttle,
            breaker: monitors.1,
            spans,
            _tracer: tracer,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn full_stack_cancellation_leaves_nothing_behind() {
    let baseline = tasks();
    let state: Shared<(FullStack, tokio::task::JoinHandle<()>)> = Default::default();
    let points = at_every_await_point(
        "full stack",
        async || {
            let full = FullStack::new();
            // An earlier turn of the session holds it for 30 ms.
            let first = full.svc.clone().oneshot(request("s1")).await.unwrap();
            let holder = tokio::spawn(async move {
                tokio::time::sleep(30 * MS).await;
                drop(first);
            });
            let call = called(&full.svc, request("s1")).await;
            *state.lock().unwrap() = Some((full, holder));
            call
        },
        async |at| {
            let (full, holder) = state.lock().unwrap().take().unwrap();
            holder.await.unwrap();
            full.probe.assert_idle(at);
            assert!(
                full.session.snapshot().is_idle(),
                "{at:?}: {:?}",
                full.session.snapshot()
            );
            assert_eq!(
                full.throttle.stats().waiters,
                0,
                "{at:?}: a throttle waiter is left"
            );
            assert_eq!(
                full.breaker.probes_in_flight(),
                0,
                "{at:?}: a probe slot is held"
            );
            let spans = full.spans.get_finished_spans().unwrap();
            let roots = spans
                .iter()
                .filter(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID)
                .count();
            assert_eq!(roots, 2, "{at:?}: a call span never ended");
            assert_eq!(
                spans.len() - roots,
                full.probe.calls(),
                "{at:?}: an attempt span never ended"
            );
            assert_eq!(tasks(), baseline, "{at:?}: a task was left behind");
            // Everything still works: the session's next turn goes through.
            let next = full.svc.clone().oneshot(request("s1")).await;
            let body = next.unwrap().into_body().collect().await;
            assert!(body.is_ok(), "{at:?}");
        },
    )
    .await;
    assert!(points >= 6, "{points}");
}
