//! A scripted provider for the session layer's tests: it records every call it receives and
//! counts, per session, the turns whose response is still streaming, so that an overlap (two
//! turns of one conversation at once) is caught where it would hurt: at the provider.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};
use tower::Service;
use towline_core::Error;
use towline_core::event::{Event, Observer};
use towline_session::SessionLayer;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum End {
    /// `is_end_stream` turns true with the last data frame.
    #[default]
    Eager,
    /// Only the final `None` says the body is over.
    Lazy,
    /// A trailers frame ends the body.
    Trailers,
    /// The body fails after its data frames.
    Error,
}

/// What the provider does with one request; travels in the request's extensions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Turn {
    /// Arrival number, set just before the request is handed to the layer.
    pub(crate) seq: u64,
    /// Time to the response head.
    pub(crate) head: Duration,
    /// Data frames in the body.
    pub(crate) chunks: u32,
    /// Time before each data frame.
    pub(crate) chunk_every: Duration,
    pub(crate) end: End,
    /// Answer with an error instead of a response.
    pub(crate) fail: bool,
    /// How far the request got, for tests that drop requests at random.
    pub(crate) probe: Probe,
}

/// Flags a provider sets as a request progresses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe(Arc<ProbeFlags>);

#[derive(Debug, Default)]
pub(crate) struct ProbeFlags {
    pub(crate) called: AtomicBool,
    pub(crate) responded: AtomicBool,
}

impl Probe {
    pub(crate) fn called(&self) -> bool {
        self.0.called.load(Ordering::SeqCst)
    }
    pub(crate) fn responded(&self) -> bool {
        self.0.responded.load(Ordering::SeqCst)
    }
}

/// One call received by the provider.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) session: Option<String>,
    pub(crate) seq: u64,
    pub(crate) at: Instant,
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    streaming: Mutex<HashMap<String, usize>>,
    overlaps: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The scripted provider. Clones share their records.
#[derive(Clone, Default)]
pub(crate) struct Provider {
    state: Arc<State>,
}

impl Provider {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Every call received, in order.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// The arrival numbers of `session`'s calls, in the order the provider received them.
    pub(crate) fn seqs_of(&self, session: &str) -> Vec<u64> {
        self.calls()
            .into_iter()
            .filter(|c| c.session.as_deref() == Some(session))
            .map(|c| c.seq)
            .collect()
    }

    /// How many times a call arrived while an earlier turn of its session was still running.
    pub(crate) fn overlaps(&self) -> usize {
        self.state.overlaps.load(Ordering::SeqCst)
    }

    /// The most turns (of any sessions) that were running at once.
    pub(crate) fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Turns running now.
    pub(crate) fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    fn enter(&self, session: Option<String>, seq: u64) -> Running {
        let now = self.state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(session) = &session {
            let mut streaming = self.state.streaming.lock().unwrap();
            let n = streaming.entry(session.clone()).or_default();
            *n += 1;
            if *n > 1 {
                self.state.overlaps.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.state.calls.lock().unwrap().push(Call {
            session: session.clone(),
            seq,
            at: Instant::now(),
        });
        Running {
            state: self.state.clone(),
            session,
            done: false,
        }
    }
}

impl Service<Request<()>> for Provider {
    type Response = Response<TurnBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<TurnBody>, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let turn = req.extensions().get::<Turn>().cloned().unwrap_or_default();
        let session = req
            .headers()
            .get("x-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let running = self.enter(session, turn.seq);
        turn.probe.0.called.store(true, Ordering::SeqCst);
        Box::pin(async move {
            if !turn.head.is_zero() {
                tokio::time::sleep(turn.head).await;
            }
            if turn.fail {
                return Err(Error::transport(std::io::Error::other("scripted failure")));
            }
            turn.probe.0.responded.store(true, Ordering::SeqCst);
            Ok(Response::new(TurnBody::new(&turn, running)))
        })
    }
}

/// A turn that is running at the provider: from the call until its body's last frame (or the
/// body's drop).
struct Running {
    state: Arc<State>,
    session: Option<String>,
    done: bool,
}

impl Running {
    fn finish(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(session) = &self.session {
            let mut streaming = self.state.streaming.lock().unwrap();
            let n = streaming.get_mut(session).unwrap();
            *n -= 1;
            if *n == 0 {
                streaming.remove(session);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A streamed response body: `chunks` data frames, each after `chunk_every`, then the end.
pub(crate) struct TurnBody {
    remaining: u32,
    chunk_every: Duration,
    end: End,
    sleep: Option<Pin<Box<Sleep>>>,
    running: Running,
    ended: bool,
}

impl TurnBody {
    fn new(turn: &Turn, running: Running) -> Self {
        let mut body = TurnBody {
            remaining: turn.chunks,
            chunk_every: turn.chunk_every,
            end: turn.end,
            sleep: None,
            running,
            ended: false,
        };
        if body.remaining == 0 && body.end == End::Eager {
            body.running.finish();
        }
        body
    }
}

impl Body for TurnBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.remaining > 0 {
            if !this.chunk_every.is_zero() {
                let every = this.chunk_every;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                ready!(sleep.as_mut().poll(cx));
                this.sleep = None;
            }
            this.remaining -= 1;
            if this.remaining == 0 && this.end == End::Eager {
                this.running.finish();
            }
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: {}\n\n")))));
        }
        if std::mem::replace(&mut this.ended, true) {
            return Poll::Ready(None);
        }
        this.running.finish();
        Poll::Ready(match this.end {
            End::Eager | End::Lazy => None,
            End::Trailers => Some(Ok(Frame::trailers(HeaderMap::new()))),
            End::Error => Some(Err(Error::transport(std::io::Error::other("stream broke")))),
        })
    }

    fn is_end_stream(&self) -> bool {
        self.end == End::Eager && self.remaining == 0
    }
}

/// A request of `session` (or of no session) that the provider serves as `turn` says.
pub(crate) fn request(session: Option<&str>, turn: Turn) -> Request<()> {
    let mut builder = Request::builder().uri("http://provider.test/v1/chat/completions");
    if let Some(session) = session {
        builder = builder.header("x-session-id", session);
    }
    let mut req = builder.body(()).unwrap();
    req.extensions_mut().insert(turn);
    req
}

/// A layer with `depth` waiters at most and an unbounded wait.
pub(crate) fn layer(depth: usize) -> SessionLayer {
    SessionLayer::builder()
        .max_queue_depth(depth)
        .no_max_wait()
        .build()
        .unwrap()
}

/// An observer that keeps every event.
pub(crate) fn recorder() -> (Observer, Arc<Mutex<Vec<Event>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        Observer::new(move |e: &Event| sink.lock().unwrap().push(*e)),
        events,
    )
}

/// Reads a body to its end; returns the number of data frames.
pub(crate) async fn drain<B>(body: B) -> Result<usize, B::Error>
where
    B: Body + Unpin,
{
    use http_body_util::BodyExt;
    let mut body = body;
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        if frame?.is_data() {
            frames += 1;
        }
    }
    Ok(frames)
}

/// Fails instead of hanging when a test's requests never finish: on paused time a stuck test
/// leaves only this timer, which then fires at once.
pub(crate) async fn within_an_hour<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(3600), fut)
        .await
        .expect("requests still stuck after an hour of (paused) time")
}
