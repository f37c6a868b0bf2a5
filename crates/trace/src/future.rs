use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use towline_core::Error;

use crate::body::ResponseBody;
use crate::telemetry::{Ending, Guard};

pin_project! {
    /// The response future of [`Trace`](crate::Trace) and [`TraceAttempt`](crate::TraceAttempt).
    ///
    /// On an error it ends the span at once; on a response it hands the span to the
    /// [`ResponseBody`], which ends it with the body. Dropped before either, it ends the span as
    /// `cancelled`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Box<Guard>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, guard: Option<Box<Guard>>) -> Self {
        ResponseFuture { inner, guard }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("traced", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<Error>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut guard = this.guard.take();
        Poll::Ready(match result {
            Ok(resp) => {
                if let Some(g) = guard.as_mut() {
                    g.ending = Ending::response(&resp);
                    if resp.body().is_end_stream() {
                        g.on_end();
                        guard = None; // ends the span now: there is no body to wait for
                    }
                }
                Ok(resp.map(|body| ResponseBody::new(body, guard)))
            }
            Err(err) => {
                let err = err.into();
                if let Some(g) = guard.as_mut() {
                    g.ending = Ending::error(&err);
                }
                Err(err)
            }
        })
    }
}
