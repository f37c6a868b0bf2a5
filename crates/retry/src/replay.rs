//! Reading a request's body so that it can be sent again.
//!
//! The same contract as [`towline_core::BufferRequest`] (read up to the limit; a larger body is
//! sent once, what was read first; a body that ends within the limit is replayed byte for
//! byte, trailers included), but a body that is whole at once comes back as its head and its
//! bytes rather than as a [`ReplayableRequest`]. So the common call (a `Full<Bytes>` body)
//! sends its first attempt built from the caller's own head, keeps that head as the template,
//! and never moves the head through a template and back out again: a `ReplayableRequest` is
//! only made when a policy must look at one, after a failure, or at once for the rare body that
//! ends with trailers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::Body;
use towline_core::{BoxError, Error, ReplayBody, ReplayableRequest};

/// How a body read within the limit ended, or that it is larger.
pub(crate) enum Ended {
    /// The body ended, without trailers: every byte.
    Whole(Bytes),
    /// The body ended with trailers.
    Trailers(Bytes, HeaderMap),
    /// The body is larger than the limit; what was read is in the [`Chunks`].
    TooLarge,
}

/// The chunks of a body read so far. A body of one chunk (every in-memory body) needs no
/// allocation, and dropping the empty `Vec` is one test (an empty `VecDeque`'s drop is not).
#[derive(Default)]
pub(crate) struct Chunks {
    first: Option<Bytes>,
    more: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    /// Reads `body` on from where it was left; ready once it is known what the body is. The
    /// head stays with the caller: a body that is whole at once never moves it.
    #[inline]
    pub(crate) fn poll_read<B>(
        &mut self,
        body: &mut B,
        limit: usize,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Ended, Error>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        if body.size_hint().lower() > limit as u64 {
            return Poll::Ready(Ok(Ended::TooLarge));
        }
        loop {
            if body.is_end_stream() {
                break;
            }
            match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => break,
                Some(Err(error)) => return Poll::Ready(Err(Error::transport(error))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        self.push(data.copy_to_bytes(data.remaining()));
                        if self.len > limit {
                            return Poll::Ready(Ok(Ended::TooLarge));
                        }
                    }
                    // Trailers end the body; any other kind of frame ends the reading, as in
                    // core's `BufferRequest`.
                    Err(frame) => {
                        let bytes = self.concat();
                        return Poll::Ready(Ok(match frame.into_trailers() {
                            Ok(trailers) => Ended::Trailers(bytes, trailers),
                            Err(_) => Ended::Whole(bytes),
                        }));
                    }
                },
            }
        }
        Poll::Ready(Ok(Ended::Whole(self.concat())))
    }

    #[inline]
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        if chunk.is_empty() {
            return;
        }
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.more.push(chunk),
        }
    }

    /// Everything read, in order, to be sent first by a one-shot body.
    pub(crate) fn take_all(&mut self) -> VecDeque<Bytes> {
        let mut all = VecDeque::from(std::mem::take(&mut self.more));
        if let Some(first) = self.first.take() {
            all.push_front(first);
        }
        all
    }

    /// The chunks as one `Bytes`: the one chunk of an in-memory body as it is, without a copy.
    #[inline]
    fn concat(&mut self) -> Bytes {
        let first = self.first.take().unwrap_or_default();
        if self.more.is_empty() {
            return first;
        }
        let mut all = BytesMut::with_capacity(self.len);
        all.extend_from_slice(&first);
        for chunk in self.more.drain(..) {
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    }
}

/// What reading a request's body gave, with its head.
pub(crate) enum Read<B> {
    /// The body ended within the limit, without trailers: the head and every byte.
    Whole(Parts, Bytes),
    /// The body ended within the limit with trailers: a template that replays them too.
    WithTrailers(ReplayableRequest),
    /// The body is larger than the limit: this request can be sent once.
    OneShot(Request<ReplayBody<B>>),
    /// Reading the body failed.
    Failed(Error),
}

impl<B> Read<B> {
    /// The request as far as its body was read.
    pub(crate) fn of(
        parts: Parts,
        body: B,
        chunks: &mut Chunks,
        read: Result<Ended, Error>,
    ) -> Self {
        match read {
            Ok(Ended::Whole(bytes)) => Read::Whole(parts, bytes),
            Ok(Ended::Trailers(bytes, trailers)) => with_trailers(parts, bytes, trailers),
            Ok(Ended::TooLarge) => {
                let body = ReplayBody::streaming(chunks.take_all(), body);
                Read::OneShot(Request::from_parts(parts, body))
            }
            Err(error) => Read::Failed(error),
        }
    }
}

/// A request whose body is still arriving: boxed by its owner while it waits (the common call
/// never waits).
pub(crate) struct ReadBody<B> {
    /// `None` once read.
    request: Option<(Parts, B)>,
    chunks: Chunks,
    limit: usize,
}

impl<B> ReadBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    /// `parts` and `body`, of which `chunks` were read already.
    pub(crate) fn new(parts: Parts, body: B, chunks: Chunks, limit: usize) -> Self {
        ReadBody {
            request: Some((parts, body)),
            chunks,
            limit,
        }
    }

    /// Reads as much of the body as is there; ready once it is known what the body is.
    pub(crate) fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Read<B>> {
        let (_, body) = self
            .request
            .as_mut()
            .expect("ReadBody polled after completion");
        let read = ready!(self.chunks.poll_read(body, self.limit, cx));
        let (parts, body) = self.request.take().expect("checked above");
        Poll::Ready(Read::of(parts, body, &mut self.chunks, read))
    }
}

/// A template replaying `bytes` and then `trailers`.
fn with_trailers<B>(parts: Parts, bytes: Bytes, trailers: HeaderMap) -> Read<B> {
    Read::WithTrailers(ReplayableRequest::with_trailers(parts, bytes, trailers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};

    type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>;

    fn stream_of(frames: Vec<Frame<Bytes>>) -> StreamBody<Frames> {
        StreamBody::new(futures_util::stream::iter(
            frames.into_iter().map(Ok).collect::<Vec<_>>(),
        ))
    }

    fn data(chunks: &[&'static [u8]]) -> Vec<Frame<Bytes>> {
        chunks
            .iter()
            .map(|c| Frame::data(Bytes::from_static(c)))
            .collect()
    }

    fn read<B>(body: B, limit: usize) -> Read<B>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        let request = Request::post("http://h/x")
            .header("x-a", "1")
            .body(body)
            .unwrap();
        let (parts, body) = request.into_parts();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match ReadBody::new(parts, body, Chunks::default(), limit).poll_read(&mut cx) {
            Poll::Ready(read) => read,
            Poll::Pending => panic!("every body here is in memory"),
        }
    }

    #[test]
    fn an_in_memory_body_is_whole_at_once_and_not_copied() {
        let bytes = Bytes::from(vec![b'y'; 100]);
        let ptr = bytes.as_ptr();
        let Read::Whole(parts, body) = read(Full::new(bytes), 1024) else {
            panic!("whole");
        };
        assert_eq!(body.as_ptr(), ptr);
        assert_eq!(parts.headers["x-a"], "1");
    }

    #[test]
    fn chunks_within_the_limit_are_joined() {
        let Read::Whole(_, body) = read(stream_of(data(&[b"ab", b"", b"cd"])), 4) else {
            panic!("fits the limit exactly");
        };
        assert_eq!(body.as_ref(), b"abcd");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_sent_once_with_nothing_lost() {
        let Read::OneShot(request) = read(stream_of(data(&[b"ab", b"cd", b"ef"])), 3) else {
            panic!("over the limit");
        };
        assert!(request.body().is_streaming());
        let body = request.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), b"abcdef");
    }

    #[test]
    fn a_size_hint_over_the_limit_reads_nothing() {
        let Read::OneShot(request) = read(Full::new(Bytes::from(vec![b'x'; 2048])), 1024) else {
            panic!("over the limit");
        };
        assert_eq!(request.body().size_hint().exact(), Some(2048));
    }

    #[tokio::test]
    async fn trailers_are_replayed_with_the_bytes() {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-checksum", "abc".parse().unwrap());
        let mut frames = data(&[b"ab", b"cd"]);
        frames.push(Frame::trailers(trailers));
        let Read::WithTrailers(template) = read(stream_of(frames), 1024) else {
            panic!("replayable, with trailers");
        };
        assert_eq!(template.headers()["x-a"], "1");
        for _ in 0..2 {
            let collected = template
                .request::<Full<Bytes>>()
                .into_body()
                .collect()
                .await
                .unwrap();
            assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
            assert_eq!(collected.to_bytes().as_ref(), b"abcd");
        }
    }

    #[test]
    fn a_failing_body_is_a_transport_error() {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("reset".into()),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let Read::Failed(error) = read(body, 1024) else {
            panic!("failed");
        };
        assert_eq!(error.kind(), towline_core::ErrorKind::Transport);
    }

    #[test]
    fn an_empty_body_is_whole_and_empty() {
        let Read::Whole(_, body) = read(String::new(), 0) else {
            panic!("empty fits");
        };
        assert!(body.is_empty());
    }
}
