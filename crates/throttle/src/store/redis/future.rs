//! The futures of the Redis store: an answer at once (decided locally) or one round trip.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::RedisTicket;
use crate::store::{Admission, Learned};

type Remote<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The answer of [`RedisStore::admit`](crate::Store::admit): ready at once when the store
/// decided locally (a quota block learned here, Redis marked down, a place in the local
/// queue), else one round trip to Redis bounded by the store's timeout.
pub struct RedisAdmit(Answer<Admission<RedisTicket>>);

/// The completion of [`RedisStore::learn`](crate::Store::learn): ready at once when the
/// lesson has nothing to share, else the write to Redis, bounded by the store's timeout.
pub struct RedisLearn(Answer<Learned>);

enum Answer<T> {
    Ready(Option<T>),
    Remote(Remote<T>),
}

impl<T> Answer<T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        match self {
            Answer::Ready(value) => Poll::Ready(value.take().expect("polled after completion")),
            Answer::Remote(fut) => fut.as_mut().poll(cx),
        }
    }

    fn state(&self) -> &'static str {
        match self {
            Answer::Ready(Some(_)) => "ready",
            Answer::Ready(None) => "done",
            Answer::Remote(_) => "round trip",
        }
    }
}

impl RedisAdmit {
    pub(super) fn ready(admission: Admission<RedisTicket>) -> Self {
        RedisAdmit(Answer::Ready(Some(admission)))
    }

    pub(super) fn remote(
        fut: impl Future<Output = Admission<RedisTicket>> + Send + 'static,
    ) -> Self {
        RedisAdmit(Answer::Remote(Box::pin(fut)))
    }
}

impl RedisLearn {
    pub(super) fn ready(learned: Learned) -> Self {
        RedisLearn(Answer::Ready(Some(learned)))
    }

    pub(super) fn remote(fut: impl Future<Output = Learned> + Send + 'static) -> Self {
        RedisLearn(Answer::Remote(Box::pin(fut)))
    }
}

impl Future for RedisAdmit {
    type Output = Admission<RedisTicket>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx)
    }
}

impl Future for RedisLearn {
    type Output = Learned;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll(cx)
    }
}

impl fmt::Debug for RedisAdmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisAdmit").field(&self.0.state()).finish()
    }
}

impl fmt::Debug for RedisLearn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisLearn").field(&self.0.state()).finish()
    }
}
