use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use towline_core::Error;

pin_project! {
    /// The future of a [`Timeout`](super::Timeout) call.
    ///
    /// The timer is made only when the response is not there on the first poll: an attempt
    /// that answers at once never touches the timer wheel, and the future stays small (the
    /// deadline, and a box for the `Sleep` once it exists) however far up the stack it is
    /// moved before its first poll.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` when the timeout is too far away for the clock to represent: no timeout.
        deadline: Option<Instant>,
        sleep: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, timeout: Duration) -> Self {
        // The attempt's time counts from the call, as before: only the timer is deferred.
        ResponseFuture {
            inner,
            deadline: Instant::now().checked_add(timeout),
            sleep: None,
            timeout,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<Error>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The response wins a tie with the timer.
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        let Some(deadline) = *this.deadline else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::timeout(*this.timeout))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.timeout)
            .field("timer_started", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}
