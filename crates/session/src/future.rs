use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use towline_core::event::{self, Event};
use towline_core::{Error, SessionQueueReason};

use crate::body::SessionBody;
use crate::queue::Slot;

pin_project! {
    /// The response future of [`crate::Session`].
    ///
    /// A request whose session was idle (or that has no session key) calls the inner service
    /// at once and this future only polls the inner future. A request of a busy session first
    /// waits in line (`Queued`): for its turn, bounded by the maximum wait; then for the inner
    /// service to be ready; then it calls it. Dropping the future at any point gives up its
    /// place in line or its slot.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        // Declared first so that an in-flight call is dropped before its slot is released.
        #[pin]
        state: State<S, B>,
        slot: Option<Slot>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // Boxed: the uncontended future stays as small as the inner future. One allocation per
        // request that has to wait for an earlier turn, which then waits for a whole LLM turn.
        Queued { queued: Pin<Box<Queued<S, B>>> },
        Calling { #[pin] future: S::Future },
        Rejected { reason: SessionQueueReason },
        Done,
    }
}

pin_project! {
    struct Queued<S, B> {
        // A clone of the inner service, made ready once the turn has come.
        service: S,
        request: Option<Request<B>>,
        queued_at: Instant,
        turn_taken: bool,
        #[pin]
        deadline: Deadline,
    }
}

pin_project! {
    #[project = DeadlineProj]
    enum Deadline {
        Never,
        At { #[pin] sleep: Sleep },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn calling(future: S::Future, slot: Option<Slot>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            slot,
        }
    }

    pub(crate) fn queued(
        service: S,
        request: Request<B>,
        slot: Slot,
        max_wait: Option<std::time::Duration>,
    ) -> Self {
        let queued_at = Instant::now();
        let deadline = match max_wait.and_then(|wait| queued_at.checked_add(wait)) {
            Some(at) => Deadline::At {
                sleep: tokio::time::sleep_until(at),
            },
            None => Deadline::Never,
        };
        ResponseFuture {
            state: State::Queued {
                queued: Box::pin(Queued {
                    service,
                    request: Some(request),
                    queued_at,
                    turn_taken: false,
                    deadline,
                }),
            },
            slot: Some(slot),
        }
    }

    pub(crate) fn rejected(reason: SessionQueueReason) -> Self {
        ResponseFuture {
            state: State::Rejected { reason },
            slot: None,
        }
    }
}

impl<S, B, ResB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<Error>,
    ResB: Body,
{
    type Output = Result<Response<SessionBody<ResB>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Queued { queued } => {
                    let future = ready!(poll_queued(queued.as_mut(), this.slot, cx));
                    match future {
                        Ok(future) => this.state.set(State::Calling { future }),
                        Err(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(error));
                        }
                    }
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    let slot = this.slot.take();
                    return Poll::Ready(match result {
                        Ok(response) => Ok(response.map(|body| SessionBody::new(body, slot))),
                        // `slot` is dropped here: an error ends the turn.
                        Err(error) => Err(error.into()),
                    });
                }
                StateProj::Rejected { reason } => {
                    let reason = *reason;
                    this.state.set(State::Done);
                    return Poll::Ready(Err(Error::session_queue_full(reason)));
                }
                StateProj::Done => panic!("session ResponseFuture polled after completion"),
            }
        }
    }
}

/// Waits for the turn (or the deadline), then for the service; returns the call's future.
/// On any error the slot is given up before returning.
fn poll_queued<S, B>(
    queued: Pin<&mut Queued<S, B>>,
    slot: &mut Option<Slot>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Future, Error>>
where
    S: Service<Request<B>>,
    S::Error: Into<Error>,
{
    let queued = queued.project();
    if !*queued.turn_taken {
        let turn = ready!(poll_turn(queued.deadline, *queued.queued_at, slot, cx));
        let request = queued
            .request
            .as_ref()
            .expect("the request waits with its future");
        if let Err(waited) = turn {
            let reason = SessionQueueReason::WaitTooLong { waited };
            event::emit(request.extensions(), || Event::SessionRejected { reason });
            return Poll::Ready(Err(Error::session_queue_full(reason)));
        }
        *queued.turn_taken = true;
        let waited = queued.queued_at.elapsed();
        event::emit(request.extensions(), || Event::SessionWaited { waited });
    }
    if let Err(error) = ready!(queued.service.poll_ready(cx)) {
        *slot = None;
        return Poll::Ready(Err(error.into()));
    }
    let request = queued
        .request
        .take()
        .expect("the request is sent only once");
    Poll::Ready(Ok(queued.service.call(request)))
}

/// Ready with `Ok` once `slot` owns the session, or with the time waited once the deadline
/// passed first (the claim is given up then).
fn poll_turn(
    deadline: Pin<&mut Deadline>,
    queued_at: Instant,
    slot: &mut Option<Slot>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), std::time::Duration>> {
    let claim = slot.as_ref().expect("a queued request holds a claim");
    // The turn is checked before the deadline: a turn that came in time is taken.
    if claim.poll_turn(cx.waker()) {
        return Poll::Ready(Ok(()));
    }
    let DeadlineProj::At { sleep } = deadline.project() else {
        return Poll::Pending;
    };
    ready!(sleep.poll(cx));
    // Leaving the line races with a release that hands the slot over: `withdraw` decides.
    *slot = slot.take().and_then(Slot::withdraw);
    if slot.is_some() {
        return Poll::Ready(Ok(()));
    }
    Poll::Ready(Err(queued_at.elapsed()))
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Queued { .. } => "queued",
            State::Calling { .. } => "calling",
            State::Rejected { .. } => "rejected",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("in_session", &self.slot.is_some())
            .finish()
    }
}
