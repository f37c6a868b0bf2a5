//! The SSE error scanner, driven through the Normalize layer as a client would meet it: a
//! `200 text/event-stream` answer whose body arrives in arbitrary chunks.
//!
//! Input: one control byte, then the stream's bytes. The control byte seeds where the stream
//! is cut into chunks (1 to 64 bytes each), and picks the layer's settings: first-event peek
//! on or off, the smallest SSE line limit (64 bytes) or the default, and whether the client's
//! body ends cleanly or with a transport failure.
//!
//! Checked besides "never panics, never hangs":
//! - what the body delivers is a prefix of what the provider sent, and all of it when the
//!   stream ended cleanly without an in-band error;
//! - every error has status 200 (or none) and is an API error, a transport failure, or an
//!   interrupted stream wrapping one of those;
//! - the outcome (success, or which class of error and whether it came from the response future
//!   or the body) does not depend on how the stream was chunked, as long as no line is longer
//!   than the line limit (longer lines are skipped only when they cross a chunk boundary).
#![no_main]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt, service_fn};
use towline_core::{Error, ErrorKind};
use towline_normalize::NormalizeLayer;

/// The client's body: the chunks, then a clean end or a transport failure.
struct Chunks {
    chunks: VecDeque<Bytes>,
    fail_at_end: bool,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.chunks.pop_front() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            None if self.fail_at_end => {
                self.fail_at_end = false;
                Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
            }
            None => Poll::Ready(None),
        }
    }
}

/// Where the stream ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The response future failed: the first event was an error.
    Refused(Class),
    /// The response came; its body ended cleanly, or with an error.
    Streamed(Option<Class>),
}

/// An error's class, and the class inside an interrupted stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Class(ErrorKind, Option<ErrorKind>);

fn class(err: &Error) -> Class {
    match err {
        Error::Api(api) => {
            assert_eq!(
                api.status(),
                200,
                "an in-band error has status 200: {api:?}"
            );
            Class(api.kind(), None)
        }
        Error::Transport(_) => Class(ErrorKind::Transport, None),
        Error::StreamInterrupted(inner) => {
            assert!(
                matches!(**inner, Error::Api(_) | Error::Transport(_)),
                "an interrupted stream wraps what interrupted it: {err:?}"
            );
            Class(ErrorKind::StreamInterrupted, Some(inner.kind()))
        }
        other => panic!("the Normalize layer takes no local decision: {other:?}"),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

/// Cuts `stream` into chunks of 1 to 64 bytes, sizes drawn from `seed`.
fn chunked(stream: &Bytes, seed: u8) -> VecDeque<Bytes> {
    let mut state = u32::from(seed) | 0x100;
    let mut chunks = VecDeque::new();
    let mut at = 0;
    while at < stream.len() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (state >> 16) as usize % 64;
        let end = (at + size).min(stream.len());
        chunks.push_back(stream.slice(at..end));
        at = end;
    }
    chunks
}

fn run(layer: &NormalizeLayer, chunks: VecDeque<Bytes>, fail_at_end: bool, sent: &[u8]) -> Outcome {
    let body = Chunks {
        chunks,
        fail_at_end,
    };
    let body = std::sync::Mutex::new(Some(body));
    let client = service_fn(move |_req: Request<()>| {
        let body = body.lock().unwrap().take().expect("one call");
        let response = Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("x-request-id", "req-fuzz")
            .body(body)
            .unwrap();
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let service = layer.layer(client);
    runtime().block_on(async move {
        let response = match service.oneshot(Request::new(())).await {
            Ok(response) => response,
            Err(err) => return Outcome::Refused(class(&err)),
        };
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut delivered = Vec::new();
        let end = loop {
            match body.frame().await {
                None => break None,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        delivered.extend_from_slice(&data);
                    }
                }
                Some(Err(err)) => break Some(class(&err)),
            }
        };
        assert!(
            sent.starts_with(&delivered),
            "the body delivers a prefix of what was sent"
        );
        if end.is_none() {
            assert_eq!(delivered, sent, "a clean end delivers everything");
        }
        Outcome::Streamed(end)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let stream = Bytes::copy_from_slice(stream);
    let peek = control & 0x01 == 0;
    let short_lines = control & 0x02 != 0;
    let fail_at_end = control & 0x04 != 0;
    let mut builder = NormalizeLayer::builder().sse_peek_first_event(peek);
    if short_lines {
        builder = builder.sse_line_limit(64);
    }
    let layer = builder.build().expect("valid settings");

    let whole = run(
        &layer,
        VecDeque::from([stream.clone()]),
        fail_at_end,
        &stream,
    );
    let pieces = run(&layer, chunked(&stream, control), fail_at_end, &stream);
    let one_byte = run(
        &layer,
        stream
            .iter()
            .map(|&b| Bytes::copy_from_slice(&[b]))
            .collect(),
        fail_at_end,
        &stream,
    );
    let longest_line = stream
        .split(|&b| b == b'\n' || b == b'\r')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    if !short_lines || longest_line < 64 {
        assert_eq!(whole, pieces, "chunking changed the outcome");
        assert_eq!(whole, one_byte, "byte-by-byte chunking changed the outcome");
    }
});
