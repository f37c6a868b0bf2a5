use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use towline_core::event::{self, Event, Observer};
use towline_core::{Error, KeyHash, RateLimitSnapshot, ThrottleReason};

use crate::layer::Core;
use crate::store::{Admission, Ask, Grant, Learned, Lesson, Signal, Store, Ticket};

/// How long the throttle held a call before sending it, inserted in the response's extensions
/// when it held it at all (the last attempt's wait, when a retry layer sits above). The sum
/// over all calls is [`ThrottleLayer::total_wait`](crate::ThrottleLayer::total_wait).
///
/// ```
/// # use std::time::Duration;
/// let mut resp = http::Response::new(());
/// resp.extensions_mut().insert(towline_throttle::ThrottleDelay(Duration::from_millis(40)));
/// assert_eq!(resp.extensions().get::<towline_throttle::ThrottleDelay>().unwrap().0.as_millis(), 40);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleDelay(pub Duration);

pin_project! {
    /// The response future of [`Throttle`](crate::Throttle): waits for the key when it must,
    /// calls the inner service, then teaches the store what the answer said.
    pub struct ResponseFuture<S, B, K, St>
    where
        S: Service<Request<B>>,
        St: Store<K>,
    {
        #[pin]
        state: State<S::Future, S, Request<B>, St::Admit, St::Ticket, St::Learn, S::Response>,
        call: CallInfo<K, St>,
        // Allocated on the first wait only, then reset for every later one.
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut, Svc, Req, Adm, Tkt, Lrn, Res> {
        // Waiting for the store's answer (a remote store's round trip).
        Admitting { admit: Adm, pending: Option<(Svc, Req)> },
        // Holding a place in the key's queue until `until` or until the ticket wakes the task.
        Waiting { ticket: Option<Tkt>, until: Option<Instant>, armed: bool, pending: Option<(Svc, Req)> },
        // Sent.
        Calling { #[pin] fut: Fut },
        // Recording what the answer taught.
        Learning { learn: Lrn, result: Option<Result<Res, Error>> },
        // Refused before sending.
        Failed { error: Option<Error> },
        Done,
    }
}

/// What a call carries from start to end.
pub(crate) struct CallInfo<K, St> {
    core: Arc<Core<K, St>>,
    key: Option<K>,
    ask: Ask,
    sent_at: Instant,
    observer: Option<Observer>,
    learns_from_success: bool,
    waited: Duration,
}

impl<K, St> CallInfo<K, St>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K>,
{
    pub(crate) fn new(core: Arc<Core<K, St>>, key: Option<K>, ask: Ask) -> Self {
        CallInfo {
            core,
            key,
            sent_at: ask.now,
            ask,
            observer: None,
            learns_from_success: false,
            waited: Duration::ZERO,
        }
    }

    /// The call was admitted: record when, report the wait, remember the observer.
    fn admitted<B>(&mut self, grant: Grant, req: &Request<B>, now: Instant) {
        self.sent_at = now;
        self.learns_from_success = grant.learns_from_success;
        // Admitted at once (`now` is the ask's own instant): nothing waited, no clock
        // arithmetic.
        if now != self.ask.now {
            self.waited = now.saturating_duration_since(self.ask.now);
        }
        if !self.waited.is_zero() {
            let waited = self.waited;
            event::emit(req.extensions(), || Event::ThrottleWaited { waited });
            let ns = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.core.total_wait_ns.fetch_add(ns, Ordering::Relaxed);
        }
        self.observer = req.extensions().get::<Observer>().cloned();
    }

    fn rejected<B>(&self, error: &Error, req: &Request<B>) {
        let (reason, retry_after) = match error {
            Error::Throttled(t) => (t.reason, t.retry_after),
            // The key is blocked by the provider's quota answer.
            other => (ThrottleReason::PausedByProvider, other.retry_after()),
        };
        event::emit(req.extensions(), || Event::ThrottleRejected {
            reason,
            retry_after,
        });
    }

    fn lesson<RB>(&self, result: &Result<Response<RB>, Error>) -> Option<Lesson> {
        match result {
            Ok(resp) => {
                let snapshot = resp
                    .extensions()
                    .get::<RateLimitSnapshot>()
                    .copied()
                    .filter(|s| !s.is_empty());
                // The clock is read only when there is something to learn: a plain success
                // of a key with nothing learned is most calls.
                (snapshot.is_some() || self.learns_from_success)
                    .then(|| Lesson::success(snapshot, self.sent_at, Instant::now()))
            }
            Err(err) => {
                let lesson = Lesson::from_error(err, self.sent_at, Instant::now());
                // An error that is no rate signal still passed the provider's limiter: a key
                // that learns its rate counts it among the answers it was not refused.
                let nothing = matches!(lesson.signal, Signal::Other)
                    && lesson.snapshot.is_none()
                    && !self.learns_from_success;
                (!nothing).then_some(lesson)
            }
        }
    }

    fn report(&self, learned: Learned) {
        let Some(observer) = &self.observer else {
            return;
        };
        let key = || self.key.as_ref().map(KeyHash::digest);
        if let Some((pause, cause)) = learned.paused {
            observer.emit(&Event::KeyPaused {
                key: key(),
                pause,
                cause,
            });
        }
        if let Some(per_second) = learned.rate {
            observer.emit(&Event::RateLearned {
                key: key(),
                per_second,
            });
        }
    }

    fn finish<RB>(&self, mut result: Result<Response<RB>, Error>) -> Result<Response<RB>, Error> {
        // In place: a call that did not wait hands its response on untouched, without moving
        // it through a closure.
        if !self.waited.is_zero()
            && let Ok(resp) = &mut result
        {
            resp.extensions_mut().insert(ThrottleDelay(self.waited));
        }
        result
    }
}

type StateOf<S, B, K, St> = State<
    <S as Service<Request<B>>>::Future,
    S,
    Request<B>,
    <St as Store<K>>::Admit,
    <St as Store<K>>::Ticket,
    <St as Store<K>>::Learn,
    <S as Service<Request<B>>>::Response,
>;

impl<S, B, RB, K, St> ResponseFuture<S, B, K, St>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<Error>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K>,
{
    /// Admitted at once: call the (ready) inner service now.
    pub(crate) fn go(
        mut call: CallInfo<K, St>,
        grant: Grant,
        inner: &mut S,
        req: Request<B>,
    ) -> Self {
        call.admitted(grant, &req, call.ask.now);
        ResponseFuture {
            state: State::Calling {
                fut: inner.call(req),
            },
            call,
            sleep: None,
        }
    }

    /// The store answered at once with a wait or a refusal.
    pub(crate) fn decided(
        mut call: CallInfo<K, St>,
        admission: Admission<St::Ticket>,
        inner: S,
        req: Request<B>,
    ) -> Self {
        let state = on_admission(&mut call, admission, inner, req);
        ResponseFuture {
            state,
            call,
            sleep: None,
        }
    }

    /// The store has not answered yet.
    pub(crate) fn admitting(
        call: CallInfo<K, St>,
        admit: St::Admit,
        inner: S,
        req: Request<B>,
    ) -> Self {
        ResponseFuture {
            state: State::Admitting {
                admit,
                pending: Some((inner, req)),
            },
            call,
            sleep: None,
        }
    }
}

fn on_admission<S, B, RB, K, St>(
    call: &mut CallInfo<K, St>,
    admission: Admission<St::Ticket>,
    mut inner: S,
    req: Request<B>,
) -> StateOf<S, B, K, St>
where
    S: Service<Request<B>, Response = Response<RB>>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K>,
{
    match admission {
        Admission::Go(grant) => {
            call.admitted(grant, &req, Instant::now());
            State::Calling {
                fut: inner.call(req),
            }
        }
        Admission::Wait { until, ticket } => State::Waiting {
            ticket: Some(ticket),
            until,
            armed: false,
            pending: Some((inner, req)),
        },
        Admission::Reject(error) => {
            call.rejected(&error, &req);
            State::Failed { error: Some(error) }
        }
    }
}

impl<S, B, RB, K, St> Future for ResponseFuture<S, B, K, St>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<Error>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K>,
{
    type Output = Result<Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Admitting { admit, pending } => {
                    let admission = ready!(Pin::new(admit).poll(cx));
                    let (inner, req) = pending
                        .take()
                        .expect("ResponseFuture polled after completion");
                    on_admission(this.call, admission, inner, req)
                }
                StateProj::Waiting {
                    ticket,
                    until,
                    armed,
                    pending,
                } => {
                    if !*armed {
                        *armed = true;
                        if let Some(ticket) = ticket.as_ref() {
                            ticket.register(cx.waker());
                        }
                        let Some(until) = *until else {
                            return Poll::Pending;
                        };
                        let sleep = match this.sleep.as_mut() {
                            Some(sleep) => {
                                sleep.as_mut().reset(until);
                                sleep
                            }
                            None => this.sleep.insert(Box::pin(tokio::time::sleep_until(until))),
                        };
                        if sleep.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    // Woken (or the time is up): ask again, keeping the place.
                    let ask = this.call.ask.at(Instant::now());
                    let admit =
                        this.call
                            .core
                            .store
                            .admit(this.call.key.as_ref(), &ask, ticket.take());
                    State::Admitting {
                        admit,
                        pending: pending.take(),
                    }
                }
                StateProj::Calling { fut } => {
                    let result = ready!(fut.poll(cx)).map_err(Into::into);
                    match this.call.lesson(&result) {
                        Some(lesson) => {
                            let quota = this.call.ask.quota;
                            let learn =
                                this.call
                                    .core
                                    .store
                                    .learn(this.call.key.as_ref(), quota, lesson);
                            State::Learning {
                                learn,
                                result: Some(result),
                            }
                        }
                        None => {
                            this.state.set(State::Done);
                            return Poll::Ready(this.call.finish(result));
                        }
                    }
                }
                StateProj::Learning { learn, result } => {
                    let learned = ready!(Pin::new(learn).poll(cx));
                    this.call.report(learned);
                    let result = result
                        .take()
                        .expect("ResponseFuture polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(this.call.finish(result));
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(error));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            };
            this.state.set(next);
        }
    }
}

impl<S, B, K, St> fmt::Debug for ResponseFuture<S, B, K, St>
where
    S: Service<Request<B>>,
    St: Store<K>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Admitting { .. } => "admitting",
            State::Waiting { .. } => "waiting",
            State::Calling { .. } => "calling",
            State::Learning { .. } => "learning",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("waited", &self.call.waited)
            .finish()
    }
}
