use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use towline_core::{BoxError, Error};

use crate::service::into_error;
use crate::sse::{Found, SseScanner};

pin_project! {
    /// The response body of [`Normalize`](crate::Normalize).
    ///
    /// For an ordinary success it is the client's body, frame for frame (data is handed on as
    /// `Bytes`, which for hyper and reqwest bodies is the same buffer, not a copy). For a
    /// `text/event-stream` answer it also watches the events go by and ends with an error when
    /// the provider sends one in-band:
    ///
    /// - before any content event was delivered, the error is the provider's
    ///   [`Error::Api`] (status 200, classified like any error answer);
    /// - after content was delivered, it is [`Error::StreamInterrupted`] with that class inside,
    ///   so that nobody retries a half-delivered answer as if nothing happened.
    ///
    /// The error event itself is not delivered as data: the bytes before it are, then the
    /// error. A failure of the client's body becomes [`Error::Transport`], or
    /// `StreamInterrupted(Transport)` once content was delivered.
    pub struct NormalizeBody<B> {
        #[pin]
        inner: Inner<B>,
        // Frames read ahead (SSE peek, HTTP-200 inspection), delivered first.
        prefix: VecDeque<Frame<Bytes>>,
        sse: Option<Box<SseScanner>>,
        // An error to deliver after the current prefix.
        pending: Option<Error>,
        // A non-empty data frame was delivered (for bodies that are not scanned).
        delivered: bool,
        // The client's body ended or failed: it is not polled again.
        finished: bool,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        // The client's body, in place: the common case, no allocation.
        Direct { #[pin] body: B },
        // A body that was read from before the response was returned (and so had to be pinned
        // somewhere that could move with the response).
        Boxed { body: Pin<Box<B>> },
    }
}

impl<B> NormalizeBody<B> {
    /// The client's body, untouched.
    pub(crate) fn plain(body: B) -> Self {
        Self::new(Inner::Direct { body }, VecDeque::new(), None)
    }

    /// The client's body, scanned for in-band SSE errors.
    pub(crate) fn sse(body: B, scanner: Box<SseScanner>) -> Self {
        Self::new(Inner::Direct { body }, VecDeque::new(), Some(scanner))
    }

    /// A body that was read ahead: `prefix` first, then the rest of `body` unless `finished`,
    /// then `pending` if set.
    pub(crate) fn read_ahead(
        body: Pin<Box<B>>,
        prefix: VecDeque<Frame<Bytes>>,
        scanner: Option<Box<SseScanner>>,
        finished: bool,
        pending: Option<Error>,
    ) -> Self {
        let mut this = Self::new(Inner::Boxed { body }, prefix, scanner);
        this.finished = finished || pending.is_some();
        this.pending = pending;
        this
    }

    fn new(inner: Inner<B>, prefix: VecDeque<Frame<Bytes>>, sse: Option<Box<SseScanner>>) -> Self {
        NormalizeBody {
            inner,
            prefix,
            sse,
            pending: None,
            delivered: false,
            finished: false,
        }
    }
}

/// The error of an in-band event: plain before any content, `StreamInterrupted` after.
pub(crate) fn in_band_error(found: Found) -> Error {
    let api = Error::from(found.error);
    if found.data_events_before > 0 {
        Error::stream_interrupted(api)
    } else {
        api
    }
}

impl<B> Body for NormalizeBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut this = self.project();
        if let Some(frame) = this.prefix.pop_front() {
            if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                *this.delivered = true;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(err) = this.pending.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if *this.finished {
            return Poll::Ready(None);
        }
        loop {
            let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
                None => {
                    *this.finished = true;
                    let found = this.sse.as_mut().and_then(|s| s.finish());
                    return Poll::Ready(found.map(|f| Err(in_band_error(f))));
                }
                Some(Err(err)) => {
                    *this.finished = true;
                    let delivered = match this.sse {
                        Some(scanner) => scanner.data_events() > 0,
                        None => *this.delivered,
                    };
                    return Poll::Ready(Some(Err(body_error(err, delivered))));
                }
                Some(Ok(frame)) => frame,
            };
            let mut data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => match frame.into_trailers() {
                    Ok(trailers) => return Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    // A frame kind this version of http-body does not know: skip it.
                    Err(_) => continue,
                },
            };
            let bytes = data.copy_to_bytes(data.remaining());
            if let Some(found) = this.sse.as_mut().and_then(|s| s.scan(&bytes)) {
                *this.finished = true;
                let cut = found.cut;
                let err = in_band_error(found);
                if cut == 0 {
                    return Poll::Ready(Some(Err(err)));
                }
                *this.pending = Some(err);
                return Poll::Ready(Some(Ok(Frame::data(bytes.slice(..cut)))));
            }
            if !bytes.is_empty() {
                *this.delivered = true;
            }
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty()
            && self.pending.is_none()
            && (self.finished || (self.sse.is_none() && self.inner.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        if self.sse.is_some() || self.pending.is_some() {
            // An in-band error may cut the stream short.
            return SizeHint::default();
        }
        let prefix: u64 = self
            .prefix
            .iter()
            .filter_map(|f| f.data_ref().map(|d| d.len() as u64))
            .sum();
        if self.finished {
            return SizeHint::with_exact(prefix);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(prefix));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(prefix));
        }
        hint
    }
}

/// A failure of the client's body.
fn body_error(err: impl Into<BoxError>, content_delivered: bool) -> Error {
    let err = into_error(err);
    if content_delivered && !matches!(err, Error::StreamInterrupted(_)) {
        Error::stream_interrupted(err)
    } else {
        err
    }
}

/// A frame of the client's body.
type InnerFrame<B> = Result<Frame<<B as Body>::Data>, <B as Body>::Error>;

impl<B> Inner<B>
where
    B: Body,
{
    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<InnerFrame<B>>> {
        match self.project() {
            InnerProj::Direct { body } => body.poll_frame(cx),
            InnerProj::Boxed { body } => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Direct { body } => body.is_end_stream(),
            Inner::Boxed { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::Direct { body } => body.size_hint(),
            Inner::Boxed { body } => body.size_hint(),
        }
    }
}

impl<B> fmt::Debug for NormalizeBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NormalizeBody")
            .field("read_ahead_frames", &self.prefix.len())
            .field("sse_scanning", &self.sse.is_some())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
