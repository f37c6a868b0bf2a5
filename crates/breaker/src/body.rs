use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use towline_core::Error;

use crate::permit::Permit;

pin_project! {
    /// The response body of a [`Breaker`](crate::Breaker): the inner body, watched so that a
    /// failure that arrives inside it is counted.
    ///
    /// A streamed answer fails after its response head was delivered, as a body error
    /// (typically [`ErrorKind::StreamInterrupted`](towline_core::ErrorKind::StreamInterrupted)
    /// from the Normalize layer). The breaker records a call's outcome once:
    ///
    /// - the first body frame counts the call in the window as a success, and a half-open
    ///   probe frees its slot and counts its success then, not at the end of a stream that may
    ///   run for minutes;
    /// - the end of the body confirms the success; only a confirmed success ends a run of
    ///   [consecutive failures](crate::BreakerBuilder::consecutive_failures);
    /// - a body error before any frame is classified like an error of the response future; a
    ///   body error after a frame counts as a failure without counting the call a second time,
    ///   and re-opens a half-open circuit whose probe it was (while that half-open state
    ///   lasts);
    /// - dropping the body counts as a success (the provider answered; the caller stopped
    ///   reading) and releases a probe's slot.
    ///
    /// Errors are converted to [`towline_core::Error`] so that they can be classified.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, permit: Option<Permit>) -> Self {
        ResponseBody { inner, permit }
    }

    /// The inner body, without the breaker's watch. A probe slot it held is released and the
    /// call counted as a success, as when the body is dropped.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: Into<Error>,
{
    type Data = B::Data;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let frame = ready!(inner.as_mut().poll_frame(cx));
        let Some(permit) = this.permit else {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        };
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if inner.is_end_stream() {
                    // The last frame (a whole answer in one frame, most non-streamed bodies):
                    // the call's outcome is known now. Recording it once, as at the end of the
                    // body, is what the provisional success at the first frame and its
                    // confirmation at the end would add up to, for one clock read instead of
                    // two.
                    permit.on_body_end();
                    *this.permit = None;
                } else {
                    permit.on_frame();
                }
                Some(Ok(frame))
            }
            Some(Err(err)) => {
                let err = err.into();
                permit.on_body_error(&err);
                *this.permit = None;
                Some(Err(err))
            }
            None => {
                permit.on_body_end();
                *this.permit = None;
                None
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("permit", &self.permit)
            .finish()
    }
}
