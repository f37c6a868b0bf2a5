//! The response body: a scripted sequence of frames, then an end (clean, cut, stalled or never),
//! recording in the journal when its last byte left.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::state::Shared;

/// Records the end of one exchange in the journal, exactly once: when the body's last frame is
/// handed to the connection, or when whatever holds it (the handler's future, the body) is
/// dropped first (client gone, connection cut or reset, server shut down).
pub(crate) struct FinishGuard {
    shared: Arc<Shared>,
    seq: u64,
    session: Option<Arc<str>>,
    done: bool,
}

impl FinishGuard {
    pub(crate) fn new(shared: Arc<Shared>, seq: u64, session: Option<Arc<str>>) -> Self {
        FinishGuard {
            shared,
            seq,
            session,
            done: false,
        }
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.shared
                .finished(self.seq, self.session.take(), Instant::now());
        }
    }
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for FinishGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FinishGuard")
            .field("seq", &self.seq)
            .field("done", &self.done)
            .finish()
    }
}

/// What happens once the scripted frames are sent.
#[derive(Debug)]
pub(crate) enum End {
    /// The body ends normally.
    Done,
    /// The body fails: hyper aborts the connection mid-body.
    Cut,
    /// Nothing more, ever.
    Stall,
    /// `frame` again every `interval`, forever.
    Endless { frame: Bytes, interval: Duration },
    /// `remaining` more bytes, taken from `chunk` over and over.
    Repeat { remaining: u64, chunk: Bytes },
}

/// The error that cuts a body (and with it the connection).
#[derive(Debug, thiserror::Error)]
#[error("the mock provider cut the response body (scripted fault)")]
pub(crate) struct BodyCut;

/// A response body of the mock.
pub(crate) struct MockBody {
    frames: VecDeque<Bytes>,
    end: End,
    interval: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    cut_armed: bool,
    exact_len: Option<u64>,
    guard: Option<FinishGuard>,
}

impl fmt::Debug for MockBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockBody")
            .field("frames", &self.frames.len())
            .field("end", &self.end)
            .finish()
    }
}

impl MockBody {
    /// A whole body at once, with a `content-length`.
    pub(crate) fn full(data: impl Into<Bytes>, guard: Option<FinishGuard>) -> Self {
        let data = data.into();
        let exact_len = Some(data.len() as u64);
        let frames = if data.is_empty() {
            VecDeque::new()
        } else {
            VecDeque::from([data])
        };
        MockBody {
            frames,
            end: End::Done,
            interval: Duration::ZERO,
            sleep: None,
            waiting: false,
            cut_armed: false,
            exact_len,
            guard,
        }
    }

    /// `frames` one by one, `interval` apart, then `end`; sent chunked.
    pub(crate) fn frames(
        frames: impl Into<VecDeque<Bytes>>,
        interval: Duration,
        end: End,
        guard: Option<FinishGuard>,
    ) -> Self {
        let exact_len = match &end {
            End::Repeat { remaining, .. } => Some(*remaining),
            _ => None,
        };
        MockBody {
            frames: frames.into(),
            end,
            interval,
            sleep: None,
            waiting: false,
            cut_armed: false,
            exact_len,
            guard,
        }
    }

    fn finish(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.finish();
        }
    }

    /// Waits `interval` before the next frame.
    fn pause(&mut self, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let deadline = Instant::now() + interval;
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(deadline),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
        self.waiting = true;
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyCut>>> {
        let this = self.get_mut();
        if this.waiting {
            if let Some(sleep) = this.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
            }
            this.waiting = false;
        }
        if let Some(frame) = this.frames.pop_front() {
            if this.frames.is_empty() && matches!(this.end, End::Done) {
                this.finish();
            } else {
                this.pause(this.interval);
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        match &mut this.end {
            End::Done => {
                this.finish();
                Poll::Ready(None)
            }
            End::Cut if !this.cut_armed => {
                // Let the connection flush what was sent before the cut (hyper writes buffered
                // frames when the body is pending), then fail on the next poll.
                this.cut_armed = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            End::Cut => {
                this.finish();
                Poll::Ready(Some(Err(BodyCut)))
            }
            End::Stall => Poll::Pending,
            End::Endless { frame, interval } => {
                let (frame, interval) = (frame.clone(), *interval);
                this.pause(interval);
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            End::Repeat { remaining, chunk } => {
                if *remaining == 0 {
                    this.finish();
                    return Poll::Ready(None);
                }
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                let data = chunk.slice(..n);
                *remaining -= n as u64;
                if *remaining == 0 {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.waiting
            && self.frames.is_empty()
            && matches!(self.end, End::Done | End::Repeat { remaining: 0, .. })
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn frames_come_one_interval_apart_then_end() {
        let frames = vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")];
        let mut body = MockBody::frames(frames, Duration::from_millis(100), End::Done, None);
        let start = Instant::now();
        let mut got = Vec::new();
        while let Some(frame) = body.frame().await {
            got.push((frame.unwrap().into_data().unwrap(), start.elapsed()));
        }
        let times: Vec<_> = got.iter().map(|(_, t)| t.as_millis()).collect();
        assert_eq!(times, [0, 100, 200]);
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_cut_body_fails_after_its_frames() {
        let mut body = MockBody::frames(vec![Bytes::from("a")], Duration::ZERO, End::Cut, None);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_repeated_body_has_exactly_its_length() {
        let end = End::Repeat {
            remaining: 10_000,
            chunk: Bytes::from(vec![b'x'; 4096]),
        };
        let body = MockBody::frames(VecDeque::new(), Duration::ZERO, end, None);
        assert_eq!(body.size_hint().exact(), Some(10_000));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 10_000);
    }
}
