//! What an admitted call holds until its outcome is known, and what it releases when dropped.

use std::fmt;
use std::sync::Arc;

use towline_core::Error;
use towline_core::event::Observer;

use crate::circuit::Outcome;
use crate::shared::Node;

/// Where a call is in its life, which decides what dropping it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No response yet: dropping it cancels the call, which says nothing about the provider.
    AwaitingResponse,
    /// The response head arrived; the body may still fail. Dropping the body counts as a
    /// success: the provider answered and the caller chose to stop reading.
    AwaitingBody,
    /// A success was recorded at the first body frame; a later body error still counts as a
    /// failure, without counting the call twice.
    Answered,
    /// Nothing left to record.
    Done,
}

/// An admitted call's claim on its circuit: a probe slot while half-open, a place in the
/// window while closed. Recorded exactly once; released on drop.
pub(crate) struct Permit {
    node: Arc<Node>,
    generation: u32,
    probe: bool,
    phase: Phase,
    observer: Option<Observer>,
}

impl Permit {
    pub(crate) fn new(
        node: Arc<Node>,
        generation: u32,
        probe: bool,
        observer: Option<Observer>,
    ) -> Self {
        Permit {
            node,
            generation,
            probe,
            phase: Phase::AwaitingResponse,
            observer,
        }
    }

    /// The inner service failed with `err`.
    pub(crate) fn on_error(&mut self, err: &Error) {
        let outcome = self.node.env.classify(err);
        self.record(outcome, false);
        self.phase = Phase::Done;
    }

    /// The response head arrived; `ended` if its body is already complete.
    pub(crate) fn on_response(&mut self, ended: bool) {
        if ended {
            self.record(Outcome::Success, false);
            self.phase = Phase::Done;
        } else {
            self.phase = Phase::AwaitingBody;
        }
    }

    /// A body frame arrived: the provider is producing, so the call counts as a success now
    /// (and a probe frees its slot) rather than at the end of a stream that may run for
    /// minutes.
    #[inline]
    pub(crate) fn on_frame(&mut self) {
        if self.phase == Phase::AwaitingBody {
            self.record(Outcome::Success, false);
            self.phase = Phase::Answered;
        }
    }

    /// The body failed with `err`.
    pub(crate) fn on_body_error(&mut self, err: &Error) {
        match self.phase {
            Phase::AwaitingBody => self.record(self.node.env.classify(err), false),
            Phase::Answered => match self.node.env.classify(err) {
                failure @ Outcome::Failure { .. } => self.record(failure, true),
                Outcome::Success | Outcome::Ignored => {}
            },
            Phase::AwaitingResponse | Phase::Done => {}
        }
        self.phase = Phase::Done;
    }

    /// The body ended cleanly.
    pub(crate) fn on_body_end(&mut self) {
        if self.phase == Phase::AwaitingBody {
            self.record(Outcome::Success, false);
        }
        self.phase = Phase::Done;
    }

    fn record(&self, outcome: Outcome, late: bool) {
        // A cancelled call while closed has nothing to give back.
        if outcome == Outcome::Ignored && !self.probe {
            return;
        }
        let env = &self.node.env;
        let now = env.now_nanos();
        let change = self.node.circuit.complete(
            &env.policy,
            self.generation,
            self.probe,
            outcome,
            late,
            now,
        );
        if let Some(change) = change {
            env.report(self.node.circuit.key(), change, self.observer.as_ref());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        match self.phase {
            Phase::AwaitingResponse => self.record(Outcome::Ignored, false),
            Phase::AwaitingBody => self.record(Outcome::Success, false),
            Phase::Answered | Phase::Done => {}
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("key", self.node.circuit.key())
            .field("generation", &self.generation)
            .field("probe", &self.probe)
            .field("phase", &self.phase)
            .finish()
    }
}
