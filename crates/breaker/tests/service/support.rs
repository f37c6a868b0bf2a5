//! Test doubles: a provider whose answers the test holds or scripts, a body that yields what it
//! is told, an event recorder, and a poll-once helper. No real time anywhere: a `FakeClock`
//! drives the breaker and futures are polled by hand.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use tokio::sync::oneshot;
use tower::Service;
use towline_breaker::{BreakerBuilder, BreakerLayer};
use towline_core::event::{Event, Observer};
use towline_core::{ApiError, Error, ErrorKind, FakeClock, HintSource, RetryHint};

pub(crate) type Answer = Result<Response<TestBody>, Error>;

/// A request to `host`'s chat completions route.
pub(crate) fn req(host: &str) -> Request<()> {
    Request::builder()
        .method("POST")
        .uri(format!("https://{host}/v1/chat/completions"))
        .body(())
        .unwrap()
}

/// A request carrying `observer`.
pub(crate) fn observed(host: &str, observer: &Observer) -> Request<()> {
    let mut r = req(host);
    r.extensions_mut().insert(observer.clone());
    r
}

/// A provider error of class `kind` with HTTP `status`.
pub(crate) fn api(kind: ErrorKind, status: u16) -> Error {
    ApiError::new(kind, StatusCode::from_u16(status).unwrap()).into()
}

/// A provider error with a `Retry-After` hint.
pub(crate) fn api_with_hint(kind: ErrorKind, status: u16, hint: Duration) -> Error {
    ApiError::new(kind, StatusCode::from_u16(status).unwrap())
        .with_retry_hint(RetryHint::new(hint, HintSource::RetryAfter))
        .into()
}

/// A successful answer whose body is complete at once.
pub(crate) fn ok() -> Answer {
    Ok(Response::new(TestBody::empty()))
}

/// A successful answer with a body that yields `frames`.
pub(crate) fn ok_streaming(frames: Vec<Result<&'static str, Error>>) -> Answer {
    Ok(Response::new(TestBody::scripted(frames)))
}

/// A layer on a fake clock with small, test-friendly settings: window 1 s in 10 buckets,
/// ratio 0.5 over at least 4 calls, 3 failures in a row, open 1 s growing x2 up to 8 s,
/// 2 probes, 2 successes to close, idle after 60 s.
pub(crate) fn builder(clock: &FakeClock) -> BreakerBuilder {
    BreakerLayer::builder()
        .clock(clock.clone())
        .window(Duration::from_secs(1), 10)
        .failure_ratio(0.5)
        .min_calls(4)
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(1))
        .open_growth(2.0)
        .max_open_duration(Duration::from_secs(8))
        .half_open_probes(2)
        .probe_successes(2)
        .idle_timeout(Duration::from_secs(60))
}

type AnswerFn = dyn Fn(&Request<()>) -> Answer + Send + Sync;

/// A provider that answers every call with `answer(request)` at once and counts calls.
#[derive(Clone)]
pub(crate) struct Scripted {
    pub(crate) calls: Arc<AtomicUsize>,
    answer: Arc<AnswerFn>,
}

impl Scripted {
    pub(crate) fn new(answer: impl Fn(&Request<()>) -> Answer + Send + Sync + 'static) -> Self {
        Scripted {
            calls: Arc::new(AtomicUsize::new(0)),
            answer: Arc::new(answer),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<()>> for Scripted {
    type Response = Response<TestBody>;
    type Error = Error;
    type Future = std::future::Ready<Answer>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready((self.answer)(&req))
    }
}

/// A provider whose calls wait until the test answers them, in call order.
#[derive(Clone, Default)]
pub(crate) struct Held {
    waiting: Arc<Mutex<VecDeque<oneshot::Sender<Answer>>>>,
    pub(crate) calls: Arc<AtomicUsize>,
}

impl Held {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Answers the oldest call still waiting; false if none is.
    pub(crate) fn answer_next(&self, answer: Answer) -> bool {
        let next = self.waiting.lock().unwrap().pop_front();
        match next {
            Some(tx) => {
                // The call may have been dropped meanwhile; then nobody hears it.
                let _ = tx.send(answer);
                true
            }
            None => false,
        }
    }
}

impl Service<Request<()>> for Held {
    type Response = Response<TestBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap().push_back(tx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Error::transport(std::io::Error::other("gone"))))
        })
    }
}

/// A response body that yields scripted frames, or stays pending forever.
#[derive(Debug)]
pub(crate) struct TestBody {
    frames: VecDeque<Result<Bytes, Error>>,
    pending_forever: bool,
}

impl TestBody {
    pub(crate) fn empty() -> Self {
        TestBody {
            frames: VecDeque::new(),
            pending_forever: false,
        }
    }

    pub(crate) fn scripted(frames: Vec<Result<&'static str, Error>>) -> Self {
        TestBody {
            frames: frames
                .into_iter()
                .map(|f| f.map(|s| Bytes::from_static(s.as_bytes())))
                .collect(),
            pending_forever: false,
        }
    }

    /// A body that yields `frames` and then never ends.
    pub(crate) fn then_pending(frames: Vec<&'static str>) -> Self {
        TestBody {
            frames: frames
                .into_iter()
                .map(|f| Ok(Bytes::from_static(f.as_bytes())))
                .collect(),
            pending_forever: true,
        }
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.frames.pop_front() {
            Some(frame) => Poll::Ready(Some(frame.map(Frame::data))),
            None if self.pending_forever => Poll::Pending,
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && !self.pending_forever
    }
}

/// Polls `fut` once with a waker that does nothing.
pub(crate) fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

type FrameResult<B> = Result<Frame<<B as Body>::Data>, <B as Body>::Error>;

/// Polls a body for one frame.
pub(crate) fn poll_frame<B: Body + Unpin>(body: &mut B) -> Poll<Option<FrameResult<B>>> {
    Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop()))
}

/// Records every event reported to it.
#[derive(Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    pub(crate) fn observer(&self) -> Observer {
        let sink = self.0.clone();
        Observer::new(move |e| sink.lock().unwrap().push(*e))
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

/// Starts a call: checks readiness (the doubles are always ready) and calls.
pub(crate) fn start<S: Service<Request<()>>>(svc: &mut S, r: Request<()>) -> S::Future {
    let ready = svc.poll_ready(&mut Context::from_waker(Waker::noop()));
    assert!(
        matches!(ready, Poll::Ready(Ok(()))),
        "the breaker delegates readiness"
    );
    svc.call(r)
}

/// Runs a call against a provider that answers at once, and reads the body to its end.
/// Returns the first error, of the call or of its body.
pub(crate) fn run<S, B>(svc: &mut S, r: Request<()>) -> Result<(), Error>
where
    S: Service<Request<()>, Response = Response<B>, Error = Error>,
    S::Future: Unpin,
    B: Body<Error = Error> + Unpin,
{
    let mut fut = start(svc, r);
    let Poll::Ready(result) = poll_once(&mut fut) else {
        panic!("the scripted provider answers at once")
    };
    let mut body = result?.into_body();
    loop {
        match poll_frame(&mut body) {
            Poll::Ready(Some(Ok(_))) => continue,
            Poll::Ready(Some(Err(e))) => return Err(e),
            Poll::Ready(None) => return Ok(()),
            Poll::Pending => panic!("scripted bodies never wait"),
        }
    }
}
