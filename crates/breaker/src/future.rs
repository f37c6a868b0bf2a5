use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use towline_core::Error;

use crate::body::ResponseBody;
use crate::permit::Permit;

pin_project! {
    /// The future of a [`Breaker`](crate::Breaker) call.
    ///
    /// Resolves at once with [`Error::CircuitOpen`] when the call was refused; otherwise drives
    /// the inner call and records its outcome. Dropping it before the response arrives releases
    /// a half-open probe slot without counting anything.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Rejected { error: Option<Error> },
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn rejected(error: Error) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) fn called(future: F, permit: Option<Permit>) -> Self {
        ResponseFuture {
            kind: Kind::Called { future, permit },
        }
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
        match self.project().kind.project() {
            KindProj::Rejected { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Called { future, permit } => {
                let result = ready!(future.poll(cx));
                let mut permit = permit.take();
                Poll::Ready(match result {
                    Ok(response) => {
                        if let Some(permit) = &mut permit {
                            permit.on_response(response.body().is_end_stream());
                        }
                        Ok(response.map(|body| ResponseBody::new(body, permit)))
                    }
                    Err(err) => {
                        let err = err.into();
                        if let Some(permit) = &mut permit {
                            permit.on_error(&err);
                        }
                        Err(err)
                    }
                })
            }
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected { error } => f
                .debug_struct("ResponseFuture::Rejected")
                .field("error", error)
                .finish(),
            Kind::Called { permit, .. } => f
                .debug_struct("ResponseFuture::Called")
                .field("permit", permit)
                .finish_non_exhaustive(),
        }
    }
}
