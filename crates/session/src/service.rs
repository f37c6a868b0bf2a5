use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use towline_core::event::{self, Event};
use towline_core::{Error, KeyExtractor, SessionHeader, SessionQueueReason};

use crate::body::SessionBody;
use crate::future::ResponseFuture;
use crate::queue::{Admission, SessionMonitor, Sessions};

/// Serves the requests of each session (conversation) one at a time, in arrival order, and
/// holds the session until the response body ends. Built by [`crate::SessionLayer`].
///
/// Requests whose key extractor finds no key pass straight through. Clones share the sessions,
/// as do all services built by one layer.
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use towline_session::{Session, SessionLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let inner = service_fn(|_req: http::Request<()>| async {
///     Ok::<_, towline_core::Error>(http::Response::new(String::from("ok")))
/// });
/// let svc: Session<_> = Session::new(inner, &SessionLayer::new());
/// let res = svc.oneshot(http::Request::new(())).await.unwrap();
/// assert!(!res.body().holds_slot(), "no session key, no slot");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Session<S, E = SessionHeader> {
    inner: S,
    extractor: E,
    sessions: Arc<Sessions>,
}

impl<S, E: Clone> Session<S, E> {
    /// Wraps `inner` with the settings and the sessions of `layer`.
    pub fn new(inner: S, layer: &crate::SessionLayer<E>) -> Self {
        Session {
            inner,
            extractor: layer.extractor.clone(),
            sessions: layer.sessions.clone(),
        }
    }
}

impl<S, E> Session<S, E> {
    /// Counts the live sessions and waiting requests of this service's layer.
    pub fn monitor(&self) -> SessionMonitor {
        SessionMonitor {
            sessions: self.sessions.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, E, B, ResB> Service<Request<B>> for Session<S, E>
where
    S: Service<Request<B>, Response = Response<ResB>> + Clone,
    S::Error: Into<Error>,
    E: KeyExtractor<B>,
    ResB: Body,
{
    type Response = Response<SessionBody<ResB>>;
    type Error = Error;
    type Future = ResponseFuture<S, B>;

    /// Delegates to the inner service: a session's turn is decided per request, in the
    /// response future, so that one busy conversation never holds up the others.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(key) = self.extractor.extract(&req) else {
            return ResponseFuture::calling(self.inner.call(req), None);
        };
        match self.sessions.admit(self.sessions.digest(&key)) {
            Admission::Acquired(slot) => ResponseFuture::calling(self.inner.call(req), Some(slot)),
            Admission::Queued(claim) => {
                // The ready inner service stays here for the next call; the waiting request
                // makes its own clone ready once its turn has come, so that it holds no
                // capacity of the services below while it waits.
                let service = self.inner.clone();
                ResponseFuture::queued(service, req, claim, self.sessions.max_wait)
            }
            Admission::Full => {
                let reason = SessionQueueReason::Full {
                    limit: self.sessions.max_queue_depth,
                };
                event::emit(req.extensions(), || Event::SessionRejected { reason });
                ResponseFuture::rejected(reason)
            }
        }
    }
}
