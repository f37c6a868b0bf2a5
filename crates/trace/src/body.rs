use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::telemetry::Guard;

pin_project! {
    /// The response body of a traced call or attempt: the inner body, unchanged, whose end
    /// (or error, or drop) ends the span and records the duration.
    ///
    /// A streamed answer's span thus covers the whole stream, as the GenAI conventions ask.
    ///
    /// ```
    /// use http_body::Body;
    /// use towline_trace::ResponseBody;
    ///
    /// fn is_a_body<B: Body>(_: &B) {}
    /// # fn check(b: ResponseBody<String>) { is_a_body(&b); }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<Box<Guard>>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: Option<Box<Guard>>) -> Self {
        ResponseBody { inner, guard }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .field("traced", &self.guard.is_some())
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Error: 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let Some(guard) = this.guard.as_mut() else {
            return Poll::Ready(frame);
        };
        match &frame {
            Some(Ok(f)) => {
                if f.is_data() {
                    guard.on_data();
                }
                if this.inner.is_end_stream() {
                    guard.on_end();
                    *this.guard = None;
                }
            }
            Some(Err(err)) => {
                guard.on_body_error(err);
                *this.guard = None;
            }
            None => {
                guard.on_end();
                *this.guard = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
