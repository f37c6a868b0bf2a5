use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::queue::Slot;

pin_project! {
    /// The response body of a [`crate::Session`] call: the inner body, holding the session's
    /// slot until the body ends.
    ///
    /// The slot is released, and the session's next turn may start, as soon as the body
    /// reports its end (the frame after which [`Body::is_end_stream`] is true, a trailers frame,
    /// or `None`), fails, or is dropped. A body that is already at its end when the response
    /// arrives releases the slot at once. Requests without a session key never held a slot;
    /// their body is passed through with one `Option` check per frame.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use tower::{service_fn, ServiceBuilder, ServiceExt};
    /// use towline_session::SessionLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let layer = SessionLayer::new();
    /// let monitor = layer.monitor();
    /// let svc = ServiceBuilder::new().layer(layer).service(service_fn(|_req: http::Request<()>| async {
    ///     Ok::<_, towline_core::Error>(http::Response::new(Full::new(Bytes::from("data: hi\n\n"))))
    /// }));
    /// let req = http::Request::builder().header("x-session-id", "conv-1").body(()).unwrap();
    /// let body = svc.oneshot(req).await.unwrap().into_body();
    /// assert!(body.holds_slot());
    /// assert_eq!(monitor.live_sessions(), 1);
    ///
    /// let bytes = body.collect().await.unwrap().to_bytes();
    /// assert_eq!(bytes, "data: hi\n\n");
    /// assert_eq!(monitor.live_sessions(), 0);
    /// # }
    /// ```
    pub struct SessionBody<B> {
        // Declared first so that it is dropped first: the provider's stream is closed before
        // the next turn is let through.
        #[pin]
        inner: B,
        slot: Option<Slot>,
    }
}

impl<B: Body> SessionBody<B> {
    pub(crate) fn new(inner: B, slot: Option<Slot>) -> Self {
        let slot = slot.filter(|_| !inner.is_end_stream());
        SessionBody { inner, slot }
    }
}

impl<B> SessionBody<B> {
    /// Whether this body still holds its session's slot (the next turn of the conversation
    /// waits for it).
    pub fn holds_slot(&self) -> bool {
        self.slot.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body> Body for SessionBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.slot.is_some() {
            let finished = match &frame {
                None | Some(Err(_)) => true,
                Some(Ok(frame)) => frame.is_trailers() || this.inner.is_end_stream(),
            };
            if finished {
                *this.slot = None;
            }
        }
        Poll::Ready(frame)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for SessionBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBody")
            .field("holds_slot", &self.holds_slot())
            .finish_non_exhaustive()
    }
}
