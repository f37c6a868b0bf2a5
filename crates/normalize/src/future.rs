use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::CONTENT_TYPE;
use http::response::Parts;
use http::{HeaderMap, Response};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use towline_core::{BoxError, Error};

use crate::body::{NormalizeBody, in_band_error};
use crate::classify::Classifier;
use crate::config::Config;
use crate::headers::{LazyNow, snapshot_with};
use crate::scrub::Credential;
use crate::service::into_error;
use crate::sse::{EventContext, SseScanner};

/// Frames handled per poll while reading ahead, before yielding to the executor (a body that is
/// always ready must not starve the other tasks of the thread).
const FRAMES_PER_POLL: usize = 32;

pin_project! {
    /// The future of [`Normalize`](crate::Normalize): the client's response, classified.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        config: Config,
        credential: Option<Credential>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        // Waiting for the client's response.
        Calling { #[pin] future: F },
        // A non-success status: reading its body (bounded in size and time) to classify it.
        ReadingError {
            #[pin] body: B,
            #[pin] deadline: Sleep,
            head: Option<Parts>,
            buf: Vec<u8>,
        },
        // A small HTTP-200 JSON body, read whole to look for a kimi-free-api error answer.
        InspectingOk {
            body: Option<Pin<Box<B>>>,
            #[pin] deadline: Sleep,
            head: Option<Parts>,
            frames: VecDeque<Frame<Bytes>>,
            read: usize,
            limit: usize,
        },
        // An event stream, read up to its first data event.
        PeekingSse {
            body: Option<Pin<Box<B>>>,
            head: Option<Parts>,
            scanner: Option<Box<SseScanner>>,
            frames: VecDeque<Frame<Bytes>>,
            read: usize,
            limit: usize,
        },
        Done,
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn new(future: F, config: Config, credential: Option<Credential>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            config,
            credential,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<NormalizeBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let config = *this.config;
        let credential = *this.credential;
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(err) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(into_error(err)));
                        }
                    };
                    let (mut head, body) = response.into_parts();
                    if !head.status.is_success() {
                        let capacity = initial_capacity(&body, config.error_body_limit);
                        this.state.set(State::ReadingError {
                            body,
                            deadline: tokio::time::sleep(config.error_body_timeout),
                            head: Some(head),
                            buf: Vec::with_capacity(capacity),
                        });
                        continue;
                    }
                    let mut now = LazyNow::Later(config.wall_clock);
                    if let Some(snapshot) = snapshot_with(&head.headers, &mut now) {
                        head.extensions.insert(snapshot);
                    }
                    if config.sse_scan && has_content_type(&head.headers, "text/event-stream") {
                        let classifier =
                            Classifier::new(now.get()).with_credential_digest(credential);
                        let scanner = Box::new(SseScanner::new(
                            EventContext::new(classifier, &head.headers),
                            config.sse_line_limit,
                        ));
                        let Some(limit) = config.sse_peek_limit else {
                            let body = NormalizeBody::sse(body, scanner);
                            return Poll::Ready(Ok(Response::from_parts(head, body)));
                        };
                        this.state.set(State::PeekingSse {
                            body: Some(Box::pin(body)),
                            head: Some(head),
                            scanner: Some(scanner),
                            frames: VecDeque::new(),
                            read: 0,
                            limit,
                        });
                        continue;
                    }
                    if let Some(limit) = config.ok_json_limit
                        && has_content_type(&head.headers, "application/json")
                        && body.size_hint().upper().is_some_and(|n| n <= limit as u64)
                    {
                        this.state.set(State::InspectingOk {
                            body: Some(Box::pin(body)),
                            deadline: tokio::time::sleep(config.error_body_timeout),
                            head: Some(head),
                            frames: VecDeque::new(),
                            read: 0,
                            limit,
                        });
                        continue;
                    }
                    return Poll::Ready(Ok(Response::from_parts(head, NormalizeBody::plain(body))));
                }
                StateProj::ReadingError {
                    body,
                    deadline,
                    head,
                    buf,
                } => {
                    ready!(read_error_body(
                        body,
                        deadline,
                        buf,
                        config.error_body_limit,
                        cx
                    ));
                    let head = head.take().expect("error head is taken once");
                    let err = Classifier::new((config.wall_clock)())
                        .with_credential_digest(credential)
                        .classify(head.status, &head.headers, buf);
                    tracing::debug!(kind = %err.kind(), status = head.status.as_u16(), "provider error");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(err.into()));
                }
                StateProj::InspectingOk {
                    body,
                    deadline,
                    head,
                    frames,
                    read,
                    limit,
                } => {
                    let pinned = body.as_mut().expect("body is taken once");
                    let end = ready!(read_ok_body(
                        pinned.as_mut(),
                        deadline,
                        frames,
                        read,
                        *limit,
                        cx
                    ));
                    let head = head.take().expect("head is taken once");
                    let body = body.take().expect("body is taken once");
                    let frames = std::mem::take(frames);
                    this.state.set(State::Done);
                    return Poll::Ready(finish_inspection(
                        end, head, body, frames, config, credential,
                    ));
                }
                StateProj::PeekingSse {
                    body,
                    head,
                    scanner,
                    frames,
                    read,
                    limit,
                } => {
                    let pinned = body.as_mut().expect("body is taken once");
                    let scan = scanner.as_mut().expect("scanner is taken once");
                    let end = ready!(peek_sse(pinned.as_mut(), scan, frames, read, *limit, cx));
                    let head = head.take().expect("head is taken once");
                    let body = body.take().expect("body is taken once");
                    let scanner = scanner.take().expect("scanner is taken once");
                    let frames = std::mem::take(frames);
                    this.state.set(State::Done);
                    return Poll::Ready(finish_peek(end, head, body, scanner, frames));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Room for the whole error body when its length is known and small, else a modest start.
fn initial_capacity<B: Body>(body: &B, limit: usize) -> usize {
    let hint = body.size_hint();
    let expected = hint.upper().unwrap_or(hint.lower()).max(hint.lower());
    usize::try_from(expected)
        .unwrap_or(limit)
        .clamp(256, limit.max(256))
        .min(limit)
}

fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.as_bytes().get(..expected.len()))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(expected.as_bytes()))
}

/// Reads an error body into `buf` until it ends, fails, reaches `limit` or the deadline passes.
/// Whatever was read is what gets classified.
fn read_error_body<B>(
    mut body: Pin<&mut B>,
    deadline: Pin<&mut Sleep>,
    buf: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<()>
where
    B: Body,
{
    for _ in 0..FRAMES_PER_POLL {
        if buf.len() >= limit {
            return Poll::Ready(());
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() && buf.len() < limit {
                        let chunk = data.chunk();
                        let take = chunk.len().min(limit - buf.len());
                        buf.extend_from_slice(&chunk[..take]);
                        data.advance(take);
                    }
                }
            }
            // A failing or finished body: classify what arrived.
            Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
            Poll::Pending => return deadline.poll(cx),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// How reading ahead ended.
enum ReadEnd {
    /// The body ended; everything is in the frames.
    Complete,
    /// Read as much as allowed (size, time, or the first event); the rest follows.
    Partial,
    /// The client's body failed before anything was delivered.
    Failed(Error),
}

fn read_ok_body<B>(
    mut body: Pin<&mut B>,
    deadline: Pin<&mut Sleep>,
    frames: &mut VecDeque<Frame<Bytes>>,
    read: &mut usize,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<ReadEnd>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    for _ in 0..FRAMES_PER_POLL {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Some(frame) = into_bytes_frame(frame) else {
                    continue;
                };
                *read += frame.data_ref().map_or(0, Bytes::len);
                frames.push_back(frame);
                if *read > limit {
                    return Poll::Ready(ReadEnd::Partial);
                }
            }
            Poll::Ready(Some(Err(err))) => return Poll::Ready(ReadEnd::Failed(into_error(err))),
            Poll::Ready(None) => return Poll::Ready(ReadEnd::Complete),
            Poll::Pending => return deadline.poll(cx).map(|()| ReadEnd::Partial),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

fn finish_inspection<B>(
    end: ReadEnd,
    head: Parts,
    body: Pin<Box<B>>,
    frames: VecDeque<Frame<Bytes>>,
    config: Config,
    credential: Option<Credential>,
) -> Result<Response<NormalizeBody<B>>, Error> {
    let finished = match end {
        ReadEnd::Failed(err) => return Err(err),
        ReadEnd::Partial => false,
        ReadEnd::Complete => {
            let joined = join_data(&frames);
            let error = Classifier::new((config.wall_clock)())
                .with_credential_digest(credential)
                .classify_ok_body(&head.headers, &joined);
            if let Some(error) = error {
                tracing::debug!(kind = %error.kind(), "provider error in an HTTP-200 body");
                return Err(error.into());
            }
            true
        }
    };
    let body = NormalizeBody::read_ahead(body, frames, None, finished, None);
    Ok(Response::from_parts(head, body))
}

/// The data of `frames` as one slice: the frame itself when there is one (no copy).
fn join_data(frames: &VecDeque<Frame<Bytes>>) -> Bytes {
    let mut data = frames.iter().filter_map(Frame::data_ref);
    match (data.next(), data.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        (Some(_), Some(_)) => {
            let mut joined = Vec::new();
            for chunk in frames.iter().filter_map(Frame::data_ref) {
                joined.extend_from_slice(chunk);
            }
            joined.into()
        }
    }
}

/// How peeking at an event stream ended.
enum PeekEnd {
    Read(ReadEnd),
    /// An error event: before any content (`data_events_before == 0`) it fails the call;
    /// after content, the response is returned and its body ends with the error.
    Error(crate::sse::Found),
}

fn peek_sse<B>(
    mut body: Pin<&mut B>,
    scanner: &mut SseScanner,
    frames: &mut VecDeque<Frame<Bytes>>,
    read: &mut usize,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<PeekEnd>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    for _ in 0..FRAMES_PER_POLL {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Some(frame) = into_bytes_frame(frame) else {
                    continue;
                };
                let Some(data) = frame.data_ref() else {
                    frames.push_back(frame);
                    continue;
                };
                *read += data.len();
                if let Some(found) = scanner.scan(data) {
                    if found.cut > 0 {
                        frames.push_back(Frame::data(data.slice(..found.cut)));
                    }
                    return Poll::Ready(PeekEnd::Error(found));
                }
                frames.push_back(frame);
                if scanner.data_events() > 0 || *read >= limit {
                    return Poll::Ready(PeekEnd::Read(ReadEnd::Partial));
                }
            }
            Poll::Ready(Some(Err(err))) => {
                return Poll::Ready(PeekEnd::Read(ReadEnd::Failed(into_error(err))));
            }
            Poll::Ready(None) => {
                return Poll::Ready(match scanner.finish() {
                    Some(found) => PeekEnd::Error(found),
                    None => PeekEnd::Read(ReadEnd::Complete),
                });
            }
            Poll::Pending => return Poll::Pending,
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

fn finish_peek<B>(
    end: PeekEnd,
    head: Parts,
    body: Pin<Box<B>>,
    scanner: Box<SseScanner>,
    frames: VecDeque<Frame<Bytes>>,
) -> Result<Response<NormalizeBody<B>>, Error> {
    let body = match end {
        PeekEnd::Read(ReadEnd::Failed(err)) => return Err(err),
        PeekEnd::Read(ReadEnd::Complete) => {
            NormalizeBody::read_ahead(body, frames, Some(scanner), true, None)
        }
        PeekEnd::Read(ReadEnd::Partial) => {
            NormalizeBody::read_ahead(body, frames, Some(scanner), false, None)
        }
        PeekEnd::Error(found) if found.data_events_before == 0 => {
            // Nothing was delivered: an ordinary error the retry layer may retry.
            tracing::debug!(kind = %found.error.kind(), "provider error as the first stream event");
            return Err(found.error.into());
        }
        PeekEnd::Error(found) => {
            let err = in_band_error(found);
            NormalizeBody::read_ahead(body, frames, Some(scanner), true, Some(err))
        }
    };
    Ok(Response::from_parts(head, body))
}

/// A frame with its data as `Bytes` (no copy when it already is `Bytes`); `None` for a frame
/// kind this version of http-body does not know.
fn into_bytes_frame<D: Buf>(frame: Frame<D>) -> Option<Frame<Bytes>> {
    match frame.into_data() {
        Ok(mut data) => Some(Frame::data(data.copy_to_bytes(data.remaining()))),
        Err(frame) => frame.into_trailers().ok().map(Frame::trailers),
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::ReadingError { .. } => "reading_error",
            State::InspectingOk { .. } => "inspecting_ok",
            State::PeekingSse { .. } => "peeking_sse",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
