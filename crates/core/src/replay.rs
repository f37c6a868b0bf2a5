//! Request replay: sending the same request again for a retry.
//!
//! LLM request bodies are small JSON documents, and a retry must send the same bytes again.
//! [`BufferRequest`] reads a request's body once, up to a limit: a body that fits (which is every
//! `Full<Bytes>`, `String`, `Vec<u8>`, `Bytes` or empty body, in one poll) becomes a
//! [`ReplayableRequest`] that builds identical requests on demand without copying the bytes; a
//! larger body is passed on once, its buffered prefix followed by the rest of the stream, and is
//! not retried.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BoxError, Error};

pin_project! {
    /// The request body towline layers below a retry send: either replayable bytes, or a body
    /// that streams once (its buffered prefix, then the rest of the original body).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body;
    /// use towline_core::ReplayBody;
    ///
    /// let body: ReplayBody<String> = ReplayBody::full(Bytes::from_static(b"{}"));
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub struct ReplayBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<B> {
        // Bytes held in memory; cloning them is a reference count.
        Full { data: Option<Bytes>, trailers: Option<Box<HeaderMap>> },
        // A body too large to hold: what was read while deciding, then the rest.
        Streaming { prefix: VecDeque<Bytes>, #[pin] rest: B },
    }
}

impl<B> ReplayBody<B> {
    /// A body of `data`.
    pub fn full(data: Bytes) -> Self {
        Self::with_trailers(data, None)
    }

    fn with_trailers(data: Bytes, trailers: Option<Box<HeaderMap>>) -> Self {
        let data = (!data.is_empty()).then_some(data);
        ReplayBody {
            inner: Inner::Full { data, trailers },
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::with_trailers(Bytes::new(), None)
    }

    /// `rest` preceded by chunks already read from it.
    pub fn streaming(prefix: impl Into<VecDeque<Bytes>>, rest: B) -> Self {
        ReplayBody {
            inner: Inner::Streaming {
                prefix: prefix.into(),
                rest,
            },
        }
    }

    /// Whether this body can only be sent once.
    pub fn is_streaming(&self) -> bool {
        matches!(self.inner, Inner::Streaming { .. })
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Full { data, .. } => f
                .debug_struct("ReplayBody::Full")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Inner::Streaming { prefix, .. } => f
                .debug_struct("ReplayBody::Streaming")
                .field("prefix_chunks", &prefix.len())
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().inner.project() {
            InnerProj::Full { data, trailers } => {
                let frame = match data.take() {
                    Some(data) => Some(Frame::data(data)),
                    None => trailers.take().map(|t| Frame::trailers(*t)),
                };
                Poll::Ready(frame.map(Ok))
            }
            InnerProj::Streaming { prefix, rest } => {
                if let Some(chunk) = prefix.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                let frame = ready!(rest.poll_frame(cx));
                Poll::Ready(frame.map(|r| {
                    r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                        .map_err(Into::into)
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full { data, trailers } => data.is_none() && trailers.is_none(),
            Inner::Streaming { prefix, rest } => prefix.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Streaming { prefix, rest } => {
                let buffered: u64 = prefix.iter().map(|c| c.len() as u64).sum();
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(buffered));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(buffered));
                }
                hint
            }
        }
    }
}

/// A request whose body was read into memory, from which identical requests can be built any
/// number of times: same method, URI, version, headers, extensions and body bytes.
///
/// ```
/// use bytes::Bytes;
/// use http::Request;
/// use towline_core::ReplayableRequest;
///
/// let req = Request::post("http://localhost/v1/chat/completions").body(()).unwrap();
/// let (parts, ()) = req.into_parts();
/// let template = ReplayableRequest::new(parts, Bytes::from_static(br#"{"model":"m"}"#));
/// let first = template.request::<()>();
/// let second = template.request::<()>();
/// assert_eq!(first.uri(), second.uri());
/// assert_eq!(template.body().len(), 13);
/// ```
#[derive(Clone)]
pub struct ReplayableRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: Bytes,
    // Boxed: trailers are rare, and the template is moved through the retry future.
    trailers: Option<Box<HeaderMap>>,
}

impl fmt::Debug for ReplayableRequest {
    // By hand: header values (the API key among them) must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayableRequest")
            .field("method", &self.method)
            .field("uri", &self.uri.path())
            .field("version", &self.version)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("trailers", &self.trailers.is_some())
            .finish_non_exhaustive()
    }
}

impl ReplayableRequest {
    /// A template from a request's head and its whole body.
    pub fn new(parts: Parts, body: Bytes) -> Self {
        ReplayableRequest {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
            trailers: None,
        }
    }

    /// A template from a request's head, its whole body and the trailers that followed it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::BodyExt;
    /// use towline_core::ReplayableRequest;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let (parts, ()) = http::Request::post("https://api.openai.com/v1/chat/completions")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let mut trailers = http::HeaderMap::new();
    /// trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    /// let template = ReplayableRequest::with_trailers(parts, Bytes::from_static(b"{}"), trailers);
    /// let request = template.request::<http_body_util::Empty<Bytes>>();
    /// let collected = request.into_body().collect().await.unwrap();
    /// assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
    /// # }
    /// ```
    pub fn with_trailers(parts: Parts, body: Bytes, trailers: HeaderMap) -> Self {
        ReplayableRequest {
            trailers: Some(Box::new(trailers)),
            ..ReplayableRequest::new(parts, body)
        }
    }

    /// A new request, identical to the original.
    pub fn request<B>(&self) -> Request<ReplayBody<B>> {
        let mut req = Request::new(ReplayBody::with_trailers(
            self.body.clone(),
            self.trailers.clone(),
        ));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        *req.extensions_mut() = self.extensions.clone();
        req
    }

    /// The body bytes (for a cheap look at the JSON, e.g. the model name).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request's headers, to change them for every later attempt (an idempotency key).
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The request's extensions.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The request's URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The request's method.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

/// What [`BufferRequest`] made of a request.
pub enum Buffered<B> {
    /// The body fit under the limit: replay it as often as needed.
    Replayable(ReplayableRequest),
    /// The body is larger than the limit: this request can be sent once.
    OneShot(Request<ReplayBody<B>>),
}

impl<B> fmt::Debug for Buffered<B> {
    // By hand: `http::Request`'s own `Debug` prints header values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffered::Replayable(template) => f.debug_tuple("Replayable").field(template).finish(),
            Buffered::OneShot(request) => f
                .debug_struct("OneShot")
                .field("method", request.method())
                .field("uri", &request.uri().path())
                .finish_non_exhaustive(),
        }
    }
}

pin_project! {
    /// Reads a request's body up to a limit, to make it replayable.
    ///
    /// Resolves to [`Buffered::Replayable`] when the body ends within `limit` bytes, and to
    /// [`Buffered::OneShot`] as soon as it is known to be larger (from its size hint, before
    /// reading anything, or after reading just past the limit); the bytes read so far are kept
    /// and sent first. Reading a `Full<Bytes>` or `String` body takes one poll and no copy.
    ///
    /// The body must be `Unpin` (every body of hyper, reqwest and http-body-util is); box a body
    /// that is not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use http::Request;
    /// use http_body_util::Full;
    /// use bytes::Bytes;
    /// use towline_core::{Buffered, BufferRequest};
    ///
    /// let req = Request::post("http://localhost/").body(Full::new(Bytes::from_static(b"{}"))).unwrap();
    /// match BufferRequest::new(req, 1024).await.unwrap() {
    ///     Buffered::Replayable(template) => assert_eq!(template.body().as_ref(), b"{}"),
    ///     Buffered::OneShot(_) => unreachable!(),
    /// }
    /// # }
    /// ```
    pub struct BufferRequest<B> {
        state: Option<(Parts, B)>,
        chunks: Chunks,
        len: usize,
        limit: usize,
    }
}

impl<B> BufferRequest<B> {
    /// Buffers `req`'s body up to `limit` bytes.
    pub fn new(req: Request<B>, limit: usize) -> Self {
        let (parts, body) = req.into_parts();
        BufferRequest {
            state: Some((parts, body)),
            chunks: Chunks::default(),
            len: 0,
            limit,
        }
    }
}

impl<B> fmt::Debug for BufferRequest<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferRequest")
            .field("buffered", &self.len)
            .field("limit", &self.limit)
            .finish()
    }
}

impl<B> Future for BufferRequest<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<Buffered<B>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let (_, body) = this
            .state
            .as_mut()
            .expect("BufferRequest polled after completion");
        if body.size_hint().lower() > *this.limit as u64 {
            return Poll::Ready(Ok(one_shot(this.state, this.chunks)));
        }
        let mut trailers = None;
        loop {
            if body.is_end_stream() {
                break;
            }
            match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                None => break,
                Some(Err(e)) => {
                    *this.state = None;
                    return Poll::Ready(Err(Error::transport(e)));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let chunk = data.copy_to_bytes(data.remaining());
                        *this.len += chunk.len();
                        this.chunks.push(chunk);
                        if *this.len > *this.limit {
                            return Poll::Ready(Ok(one_shot(this.state, this.chunks)));
                        }
                    }
                    Err(frame) => {
                        trailers = frame.into_trailers().ok().map(Box::new);
                        break;
                    }
                },
            }
        }
        let (parts, _) = this.state.take().expect("checked above");
        let mut template = ReplayableRequest::new(parts, this.chunks.concat());
        template.trailers = trailers;
        Poll::Ready(Ok(Buffered::Replayable(template)))
    }
}

fn one_shot<B>(state: &mut Option<(Parts, B)>, chunks: &mut Chunks) -> Buffered<B> {
    let (parts, rest) = state.take().expect("BufferRequest polled after completion");
    let body = ReplayBody::streaming(chunks.take_all(), rest);
    Buffered::OneShot(Request::from_parts(parts, body))
}

/// The chunks read so far. A body of one chunk (every in-memory body) needs no allocation.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    more: VecDeque<Bytes>,
}

impl Chunks {
    fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match self.first {
            None => self.first = Some(chunk),
            Some(_) => self.more.push_back(chunk),
        }
    }

    fn take_all(&mut self) -> VecDeque<Bytes> {
        let mut all = std::mem::take(&mut self.more);
        if let Some(first) = self.first.take() {
            all.push_front(first);
        }
        all
    }

    fn concat(&mut self) -> Bytes {
        let first = self.first.take().unwrap_or_default();
        if self.more.is_empty() {
            return first;
        }
        let len = first.len() + self.more.iter().map(Bytes::len).sum::<usize>();
        let mut all = BytesMut::with_capacity(len);
        all.extend_from_slice(&first);
        for chunk in self.more.drain(..) {
            all.extend_from_slice(&chunk);
        }
        all.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn stream_of(chunks: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn small_body_replays_identically() {
        let mut req = Request::post("http://h/x")
            .header("x-a", "1")
            .body(stream_of(&[b"ab", b"cd"]))
            .unwrap();
        req.extensions_mut().insert(7u32);
        let Buffered::Replayable(t) = BufferRequest::new(req, 4).await.unwrap() else {
            panic!("fits the limit exactly");
        };
        for _ in 0..2 {
            let r = t.request::<String>();
            assert_eq!(r.headers()["x-a"], "1");
            assert_eq!(r.extensions().get::<u32>(), Some(&7));
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.as_ref(), b"abcd");
        }
    }

    #[tokio::test]
    async fn large_body_streams_once_with_nothing_lost() {
        let req = Request::post("http://h/x")
            .body(stream_of(&[b"ab", b"cd", b"ef"]))
            .unwrap();
        let Buffered::OneShot(r) = BufferRequest::new(req, 3).await.unwrap() else {
            panic!("over the limit");
        };
        assert!(r.body().is_streaming());
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.as_ref(), b"abcdef");
    }

    #[tokio::test]
    async fn size_hint_over_limit_is_not_read_at_all() {
        let req = Request::post("http://h/x")
            .body(Full::new(Bytes::from(vec![b'x'; 2048])))
            .unwrap();
        let Buffered::OneShot(r) = BufferRequest::new(req, 1024).await.unwrap() else {
            panic!("over the limit");
        };
        assert_eq!(r.body().size_hint().exact(), Some(2048));
        let body = r.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 2048);
    }

    #[tokio::test]
    async fn full_body_is_not_copied() {
        let bytes = Bytes::from(vec![b'y'; 100]);
        let ptr = bytes.as_ptr();
        let req = Request::post("http://h/").body(Full::new(bytes)).unwrap();
        let Buffered::Replayable(t) = BufferRequest::new(req, 1024).await.unwrap() else {
            panic!("fits");
        };
        assert_eq!(t.body().as_ptr(), ptr);
    }

    #[test]
    fn debug_never_shows_header_values() {
        let req = Request::post("http://h/v1?key=sk-query")
            .header("authorization", "Bearer sk-secret")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let debug = format!("{:?}", ReplayableRequest::new(parts, Bytes::new()));
        assert!(debug.contains("authorization"), "{debug}");
        assert!(!debug.contains("sk-"), "{debug}");
    }

    #[tokio::test]
    async fn empty_body_replays_as_empty() {
        let req = Request::get("http://h/").body(String::new()).unwrap();
        let Buffered::Replayable(t) = BufferRequest::new(req, 0).await.unwrap() else {
            panic!("empty fits");
        };
        assert!(t.request::<String>().body().is_end_stream());
    }
}
