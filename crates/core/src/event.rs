//! Decision events: how layers tell tracing (and users) what they decided for a call.
//!
//! A layer that waits, rejects, pauses or schedules a retry reports it as an [`Event`] to the
//! [`Observer`] found in the request's extensions, if any. The tracing layer inserts one per call
//! that turns events into span events and metrics; users can insert their own. With no observer,
//! reporting costs one lookup in an empty extension map.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Extensions;

use crate::{ErrorKind, KeyHash, ThrottleReason};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls fail fast until the next probe time.
    Open,
    /// A bounded number of probe calls test whether the endpoint recovered.
    HalfOpen,
}

impl CircuitState {
    /// A short name for reports and spans.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// Why the retry layer stopped trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The error's class (or the provider's `x-should-retry: false`) says retrying cannot help.
    NotRetryable,
    /// The maximum number of attempts was reached.
    MaxAttempts,
    /// The shared retry budget was empty.
    BudgetExhausted,
    /// The next attempt could not start before the call's deadline.
    Deadline,
    /// The provider's hint is longer than the largest wait the layer accepts.
    HintTooLong,
    /// The request body was too large to keep for a replay.
    NotReplayable,
}

impl StopReason {
    /// A short name for reports and spans.
    pub const fn as_str(self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not_retryable",
            StopReason::MaxAttempts => "max_attempts",
            StopReason::BudgetExhausted => "budget_exhausted",
            StopReason::Deadline => "deadline",
            StopReason::HintTooLong => "hint_too_long",
            StopReason::NotReplayable => "not_replayable",
        }
    }
}

/// One decision a layer took for a call. Never carries a key or any other secret.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The call waited behind earlier turns of its conversation.
    SessionWaited {
        /// How long it waited for the slot.
        waited: Duration,
    },
    /// The session layer refused the call.
    SessionRejected {
        /// Queue depth or wait limit that was hit; see [`crate::SessionQueueReason`].
        reason: crate::SessionQueueReason,
    },
    /// The call waited for its key's rate.
    ThrottleWaited {
        /// How long it waited.
        waited: Duration,
    },
    /// The throttle refused the call.
    ThrottleRejected {
        /// Why.
        reason: ThrottleReason,
        /// When the key could admit it.
        retry_after: Option<Duration>,
    },
    /// The throttle paused the call's key because of what the provider said.
    KeyPaused {
        /// A digest of the key (see [`KeyHash::digest`]); never the key.
        key: Option<KeyHash>,
        /// How long the key is paused.
        pause: Duration,
        /// The class of the answer that caused it (`RateLimited`, `QuotaExhausted`), or
        /// `Unknown` for a `remaining: 0` header on a success.
        cause: ErrorKind,
    },
    /// The throttle's learned send rate for the call's key changed.
    RateLearned {
        /// A digest of the key (see [`KeyHash::digest`]); never the key. Lets a gauge per key
        /// exist without exposing it.
        key: Option<KeyHash>,
        /// Requests per second it will now send.
        per_second: f64,
    },
    /// The call was refused because the endpoint's circuit is open.
    BreakerRejected {
        /// Time until the next probe.
        retry_after: Duration,
    },
    /// The endpoint's circuit changed state.
    BreakerTransition {
        /// The state before.
        from: CircuitState,
        /// The state after.
        to: CircuitState,
    },
    /// The retry layer will send another attempt.
    RetryScheduled {
        /// The number of the attempt that failed (1 for the first).
        attempt: u32,
        /// How long it waits first.
        delay: Duration,
        /// The class of the failure.
        reason: ErrorKind,
    },
    /// The retry layer stopped and returned an error.
    RetryStopped {
        /// Attempts sent.
        attempts: u32,
        /// Why it stopped.
        reason: StopReason,
    },
}

/// Receives the [`Event`]s of the calls whose request extensions carry it.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use towline_core::event::{Event, Observer};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let sink = seen.clone();
/// let observer = Observer::new(move |e: &Event| sink.lock().unwrap().push(*e));
///
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(observer);
/// towline_core::event::emit(req.extensions(), || Event::ThrottleWaited { waited: Duration::from_millis(5) });
/// assert_eq!(seen.lock().unwrap().len(), 1);
/// ```
#[derive(Clone)]
pub struct Observer(Arc<dyn Fn(&Event) + Send + Sync>);

impl Observer {
    /// An observer calling `f` for every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Observer(Arc::new(f))
    }

    /// Reports `event`.
    pub fn emit(&self, event: &Event) {
        (self.0)(event)
    }

    /// An observer that reports to `self`, then to `next`.
    pub fn chain(self, next: Observer) -> Observer {
        Observer::new(move |e| {
            self.emit(e);
            next.emit(e);
        })
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer(..)")
    }
}

/// Reports the event built by `event` to the [`Observer`] in `extensions`, if there is one.
/// The event is only built when someone listens.
#[inline]
pub fn emit(extensions: &Extensions, event: impl FnOnce() -> Event) {
    if let Some(observer) = extensions.get::<Observer>() {
        observer.emit(&event());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn no_observer_builds_no_event() {
        let built = AtomicUsize::new(0);
        emit(&Extensions::new(), || {
            built.fetch_add(1, Ordering::Relaxed);
            Event::RateLearned {
                key: None,
                per_second: 1.0,
            }
        });
        assert_eq!(built.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn chained_observers_both_hear() {
        let count = Arc::new(AtomicUsize::new(0));
        let (a, b) = (count.clone(), count.clone());
        let chained = Observer::new(move |_| {
            a.fetch_add(1, Ordering::Relaxed);
        })
        .chain(Observer::new(move |_| {
            b.fetch_add(10, Ordering::Relaxed);
        }));
        chained.emit(&Event::BreakerRejected {
            retry_after: Duration::ZERO,
        });
        assert_eq!(count.load(Ordering::Relaxed), 11);
    }
}
