//! The retry state machine.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use fastrand::Rng;
use http::request::Parts;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;
use towline_core::event::{Event, Observer, StopReason};
use towline_core::{BoxError, Error, ReplayBody, ReplayableRequest};

use crate::budget::Reservation;
use crate::config::Shared;
use crate::replay::{Chunks, Ended, Read, ReadBody};
use crate::{Attempt, Attempts, Decision, Policy, idempotency};

pin_project! {
    /// The future of a [`Retry`](crate::Retry) call.
    ///
    /// A state machine: *buffering* the body for replay, then *attempt* → (*waiting* →
    /// *readying* → *attempt*)* until an attempt succeeds or the layer gives up. An in-memory
    /// body is buffered, and the first attempt started, within `call` itself, so the common
    /// case starts in *attempt*. One timer, created on the first wait or for a deadline, is
    /// reused for the waits and for the deadline. Dropping the future at any point releases
    /// everything it holds: a retry withdrawn from the budget but not yet sent is refunded.
    pub struct ResponseFuture<S, B, P>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<B, S::Future>,
        service: S,
        call: Call<P>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, F> {
        // Reading a streaming body that was not complete when the call was made.
        Buffering { body: Box<ReadBody<B>> },
        // An attempt is in flight.
        Attempt { #[pin] future: F },
        // Sleeping until the next attempt may start (the timer holds the instant).
        Waiting,
        // Waiting for the service below to be ready for the next attempt.
        Readying,
        // Reading the body failed when the call was made.
        Failed { error: Option<Error> },
        // The output was returned.
        Done,
    }
}

/// One `Sleep` per call at most, created when first needed (a wait or a deadline) and reset
/// for every later wait; the common call that succeeds at once never creates it.
#[derive(Default)]
struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    fn arm(&mut self, at: Instant) {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.0 = Some(Box::pin(sleep_until(at))),
        }
    }

    fn is_off(&self) -> bool {
        self.0.is_none()
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// What a retry is built from.
enum Template {
    /// Nothing to replay: the body is still being read, or is too large to replay.
    None,
    /// The caller's own head and the body's bytes, kept as they came: the first attempt was a
    /// clone of them. Most calls end here, successful, having built nothing else.
    Head { parts: Parts, body: Bytes },
    /// The template a [`Policy`] looks at, made from `Head` at the first failure (at once for a
    /// body with trailers).
    Replayable(ReplayableRequest),
}

impl Template {
    /// The replayable request, made now if it was still a head; `None` if there is none.
    fn replayable(&mut self) -> Option<&ReplayableRequest> {
        if let Template::Head { .. } = self {
            let Template::Head { parts, body } = std::mem::replace(self, Template::None) else {
                unreachable!("matched above")
            };
            *self = Template::Replayable(ReplayableRequest::new(parts, body));
        }
        match self {
            Template::Replayable(template) => Some(template),
            _ => None,
        }
    }

    fn request<B>(&self) -> Option<Request<ReplayBody<B>>> {
        match self {
            Template::None => None,
            Template::Head { parts, body } => Some(head_request(parts, body)),
            Template::Replayable(template) => Some(template.request()),
        }
    }
}

/// A request identical to `parts` and `body`: the clones share the bytes of the URI, the
/// header values and the body.
fn head_request<B>(parts: &Parts, body: &Bytes) -> Request<ReplayBody<B>> {
    Request::from_parts(parts.clone(), ReplayBody::full(body.clone()))
}

/// Everything a call remembers between attempts; no pinning needed.
struct Call<P> {
    shared: Arc<Shared<P>>,
    template: Template,
    observer: Option<Observer>,
    started: Instant,
    deadline: Option<Instant>,
    /// Attempts sent so far.
    attempts: u32,
    /// The error of the last finished attempt, kept while the next one runs.
    last_error: Option<Error>,
    previous_backoff: Duration,
    rng: Option<Rng>,
    /// The retry withdrawn for the wait in progress; refunded if the call is dropped.
    reservation: Option<Reservation>,
    timer: Timer,
}

enum Next {
    Wait(Instant),
    Stop(Error),
}

impl<S, B, P> ResponseFuture<S, B, P>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    P: Policy,
{
    /// Starts a call on `service`, which is ready. A body already in memory (`Full`, `String`,
    /// `Bytes`, ...) is buffered and the first attempt sent right here; a streaming body that
    /// is not complete yet is read when the future is polled.
    pub(crate) fn start(
        request: Request<B>,
        service: S,
        shared: Arc<Shared<P>>,
        started: Instant,
        deadline: Option<Instant>,
        observer: Option<Observer>,
    ) -> Self {
        let limit = shared.config.replay_limit;
        // Built in place, then filled in: the future is a few hundred bytes, and every move
        // of it is a copy.
        let mut this = ResponseFuture {
            state: State::Done,
            service,
            call: Call {
                shared,
                template: Template::None,
                observer,
                started,
                deadline,
                attempts: 0,
                last_error: None,
                previous_backoff: Duration::ZERO,
                rng: None,
                reservation: None,
                timer: Timer::default(),
            },
        };
        let call = &mut this.call;
        let (mut parts, mut body) = request.into_parts();
        let mut chunks = Chunks::default();
        // Polling with a no-op waker is sound: a body that is not ready registers the real
        // waker again when the future polls it.
        let mut cx = Context::from_waker(Waker::noop());
        this.state = match chunks.poll_read(&mut body, limit, &mut cx) {
            // The common call, kept apart so that the head is not moved through a `Read`: the
            // first attempt is a clone, the caller's head stays as the template.
            Poll::Ready(Ok(Ended::Whole(bytes))) => {
                call.attempts = 1;
                call.add_idempotency_key(&mut parts.headers);
                let future = this.service.call(head_request(&parts, &bytes));
                call.template = Template::Head { parts, body: bytes };
                State::Attempt { future }
            }
            Poll::Ready(read) => match Read::of(parts, body, &mut chunks, read) {
                Read::Failed(error) => State::Failed { error: Some(error) },
                read => State::Attempt {
                    future: this.service.call(call.first_request(read)),
                },
            },
            Poll::Pending => State::Buffering {
                body: Box::new(ReadBody::new(parts, body, chunks, limit)),
            },
        };
        this
    }
}

impl<S, B, P, ResBody> Future for ResponseFuture<S, B, P>
where
    S: Service<Request<ReplayBody<B>>, Response = Response<ResBody>>,
    S::Error: Into<Error>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
    P: Policy,
{
    type Output = Result<Response<ResBody>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering { body } => {
                    if let Some(deadline) = this.call.deadline
                        && this.call.timer.is_off()
                    {
                        this.call.timer.arm(deadline);
                    }
                    let read = match body.poll_read(cx) {
                        Poll::Ready(Read::Failed(error)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                        Poll::Ready(read) => read,
                        Poll::Pending => return this.call.poll_deadline(this.state, cx),
                    };
                    let request = this.call.first_request(read);
                    let future = this.service.call(request);
                    this.state.set(State::Attempt { future });
                }
                StateProj::Attempt { future } => match future.poll(cx) {
                    Poll::Ready(Ok(mut response)) => {
                        this.state.set(State::Done);
                        if this.call.attempts > 1 {
                            response
                                .extensions_mut()
                                .insert(Attempts(this.call.attempts));
                        }
                        return Poll::Ready(Ok(response));
                    }
                    Poll::Ready(Err(error)) => match this.call.after_failure(error.into()) {
                        Next::Wait(until) => {
                            this.call.timer.arm(until);
                            this.state.set(State::Waiting);
                        }
                        Next::Stop(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    },
                    Poll::Pending => {
                        if let Some(deadline) = this.call.deadline
                            && this.call.timer.is_off()
                        {
                            this.call.timer.arm(deadline);
                        }
                        return this.call.poll_deadline(this.state, cx);
                    }
                },
                StateProj::Waiting => {
                    // Waits never end past the deadline: `plan_retry` refused those.
                    ready!(this.call.timer.poll_expired(cx));
                    if let Some(deadline) = this.call.deadline {
                        this.call.timer.arm(deadline);
                    }
                    this.state.set(State::Readying);
                }
                StateProj::Readying => match this.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let request = this.call.next_request();
                        let future = this.service.call(request);
                        this.state.set(State::Attempt { future });
                    }
                    Poll::Ready(Err(error)) => {
                        this.state.set(State::Done);
                        // The retry was not sent: give it back.
                        this.call.reservation = None;
                        this.call.stopped(StopReason::NotRetryable);
                        return Poll::Ready(Err(error.into()));
                    }
                    Poll::Pending => return this.call.poll_deadline(this.state, cx),
                },
                StateProj::Failed { error } => {
                    let error = error.take().expect("set when the call was made");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error));
                }
                StateProj::Done => panic!("retry ResponseFuture polled after completion"),
            }
        }
    }
}

impl<P: Policy> Call<P> {
    /// The first attempt's request; keeps a template when the body can be replayed.
    fn first_request<B>(&mut self, read: Read<B>) -> Request<ReplayBody<B>> {
        self.attempts = 1;
        match read {
            Read::Whole(mut parts, body) => {
                self.add_idempotency_key(&mut parts.headers);
                // The first attempt is a clone; the caller's head stays as the template.
                let request = head_request(&parts, &body);
                self.template = Template::Head { parts, body };
                request
            }
            Read::WithTrailers(mut template) => {
                self.add_idempotency_key(template.headers_mut());
                let request = template.request();
                self.template = Template::Replayable(template);
                request
            }
            Read::OneShot(mut request) => {
                self.add_idempotency_key(request.headers_mut());
                request
            }
            Read::Failed(_) => unreachable!("a failed read sends nothing"),
        }
    }

    /// Adds a new idempotency key unless none is configured or the caller set one.
    #[inline(always)]
    fn add_idempotency_key(&mut self, headers: &mut HeaderMap) {
        let Some(name) = &self.shared.config.idempotency_header else {
            return;
        };
        if !headers.contains_key(name) {
            let rng = self.rng.get_or_insert_with(|| self.shared.config.rng());
            headers.insert(name.clone(), idempotency::new_key(rng));
        }
    }

    /// The request of a retry: identical to the first. The retry is now sent, so its
    /// withdrawal from the budget is final.
    fn next_request<B>(&mut self) -> Request<ReplayBody<B>> {
        if let Some(reservation) = self.reservation.take() {
            reservation.commit();
        }
        self.attempts += 1;
        self.template
            .request()
            .expect("only replayable calls are retried")
    }

    /// Decides what follows a failed attempt and reports it.
    fn after_failure(&mut self, error: Error) -> Next {
        let now = Instant::now();
        match self.plan_retry(&error, now) {
            Ok(delay) => {
                let (attempt, reason) = (self.attempts, error.kind());
                self.emit(|| Event::RetryScheduled {
                    attempt,
                    delay,
                    reason,
                });
                self.last_error = Some(error);
                Next::Wait(now + delay)
            }
            Err(reason) => {
                self.stopped(reason);
                let error = match reason {
                    StopReason::Deadline => Error::deadline_exceeded(self.attempts, Some(error)),
                    StopReason::BudgetExhausted => Error::budget_exhausted(self.attempts, error),
                    _ => error,
                };
                Next::Stop(error)
            }
        }
    }

    /// How long to wait before retrying `error`, or why not to. The checks run from the
    /// cheapest and most final to the one that spends something (the budget).
    fn plan_retry(&mut self, error: &Error, now: Instant) -> Result<Duration, StopReason> {
        let config = &self.shared.config;
        // Another layer's decision (throttled, circuit open, ...) already took its waits.
        if error.kind().is_local() {
            return Err(StopReason::NotRetryable);
        }
        let Some(template) = self.template.replayable() else {
            return Err(if error.is_retryable() {
                StopReason::NotReplayable
            } else {
                StopReason::NotRetryable
            });
        };
        let attempt = Attempt {
            request: template,
            number: self.attempts,
            elapsed: now.saturating_duration_since(self.started),
        };
        let (retry, at_least) = match self.shared.policy.decide(error, &attempt) {
            Decision::Auto => (error.is_retryable(), Duration::ZERO),
            Decision::Retry => (true, Duration::ZERO),
            Decision::RetryAfter(at_least) => (true, at_least),
            Decision::Stop => (false, Duration::ZERO),
        };
        if !retry {
            return Err(StopReason::NotRetryable);
        }
        if self.attempts > config.max_retries {
            return Err(StopReason::MaxAttempts);
        }
        // The provider's hint, already chosen by precedence (retry-after-ms, Retry-After,
        // body) when the error was normalized.
        let hint = error.retry_after().unwrap_or_default();
        if hint > config.max_retry_after {
            return Err(StopReason::HintTooLong);
        }
        let rng = self.rng.get_or_insert_with(|| config.rng());
        let backoff = config
            .backoff
            .delay(self.attempts, self.previous_backoff, rng);
        self.previous_backoff = backoff;
        // Never before the hint; never faster than our own backoff.
        let delay = backoff.max(hint).max(at_least);
        // A wait that ends past what the clock can represent (a huge hint allowed by a huge
        // `max_retry_after`) would never end.
        let Some(until) = now.checked_add(delay) else {
            return Err(StopReason::HintTooLong);
        };
        if self.deadline.is_some_and(|deadline| until >= deadline) {
            return Err(StopReason::Deadline);
        }
        if let Some(budget) = &config.budget {
            self.reservation = Some(budget.reserve().ok_or(StopReason::BudgetExhausted)?);
        }
        Ok(delay)
    }

    /// `Pending`, unless the call's deadline has passed: then the call ends with
    /// `DeadlineExceeded` and whatever was in flight is dropped.
    fn poll_deadline<B, F, T>(
        &mut self,
        mut state: Pin<&mut State<B, F>>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, Error>> {
        if self.deadline.is_none() || self.timer.poll_expired(cx).is_pending() {
            return Poll::Pending;
        }
        state.set(State::Done);
        // A retry still waiting for the service below was not sent: give it back.
        self.reservation = None;
        self.stopped(StopReason::Deadline);
        Poll::Ready(Err(Error::deadline_exceeded(
            self.attempts,
            self.last_error.take(),
        )))
    }

    fn stopped(&self, reason: StopReason) {
        let attempts = self.attempts;
        self.emit(|| Event::RetryStopped { attempts, reason });
    }

    fn emit(&self, event: impl FnOnce() -> Event) {
        if let Some(observer) = &self.observer {
            observer.emit(&event());
        }
    }
}

impl<S, B, P> fmt::Debug for ResponseFuture<S, B, P>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Buffering { .. } => "buffering",
            State::Attempt { .. } => "attempt",
            State::Waiting => "waiting",
            State::Readying => "readying",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.call.attempts)
            .field("deadline", &self.call.deadline)
            .finish_non_exhaustive()
    }
}
