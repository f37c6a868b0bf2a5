//! What an admitted call holds until its outcome is known, and what it releases when dropped.

use std::fmt;
use std::sync::Arc;

use towline_core::Error;
use towline_core::event::Observer;

use crate::circuit::{Outcome, Stage};
use crate::shared::Node;

/// Where a call is in its life, which decides what dropping it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No response yet: dropping it cancels the call, which says nothing about the provider.
    AwaitingResponse,
    /// The response head arrived; the body may still fail. Dropping the body counts as a
    /// success: the provider answered and the caller chose to stop reading.
    AwaitingBody,
    /// A provisional success was recorded at the first body frame; the end of the body confirms
    /// it, and a body error still counts as a failure, without counting the call twice.
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
        self.record(outcome, Stage::Whole);
        self.phase = Phase::Done;
    }

    /// The response head arrived; `ended` if its body is already complete.
    pub(crate) fn on_response(&mut self, ended: bool) {
        if ended {
            self.record(Outcome::Success, Stage::Whole);
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
            self.record(Outcome::Success, Stage::First);
            self.phase = Phase::Answered;
        }
    }

    /// The body failed with `err`.
    pub(crate) fn on_body_error(&mut self, err: &Error) {
        let stage = match self.phase {
            Phase::AwaitingBody => Stage::Whole,
            Phase::Answered => Stage::Rest,
            Phase::AwaitingResponse | Phase::Done => return,
        };
        self.record(self.node.env.classify(err), stage);
        self.phase = Phase::Done;
    }

    /// The body ended cleanly.
    pub(crate) fn on_body_end(&mut self) {
        self.finish_body();
        self.phase = Phase::Done;
    }

    /// A body that ended, or that its reader dropped: the provider answered.
    fn finish_body(&self) {
        match self.phase {
            Phase::AwaitingBody => self.record(Outcome::Success, Stage::Whole),
            Phase::Answered => self.record(Outcome::Success, Stage::Rest),
            Phase::AwaitingResponse | Phase::Done => {}
        }
    }

    fn record(&self, outcome: Outcome, stage: Stage) {
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
            stage,
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
            Phase::AwaitingResponse => self.record(Outcome::Ignored, Stage::Whole),
            Phase::AwaitingBody | Phase::Answered => self.finish_body(),
            Phase::Done => {}
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
