//! One key's circuit: the lock-free state machine and its sliding window.
//!
//! Everything a transition needs is packed into one `AtomicU64` (the *state word*), so that every
//! transition is a single compare-and-swap whose winner alone reports it, and a call admitted in
//! one state can be told apart from a call admitted in an earlier one (the *generation*):
//!
//! ```text
//!  63 62 61                 40 39                                    0
//! [mode][ generation (22 bits) ][ payload (40 bits)                    ]
//!   Closed:    payload unused
//!   Open:      payload = the probe time, in ms since the breaker's origin (34 years)
//!   Half-open: payload = probes in flight (bits 0..16) | probe successes (bits 16..32)
//! ```
//!
//! The closed window is a ring of buckets, each one `AtomicU64` holding
//! `[bucket epoch (24 bits) | calls (20 bits) | failures (20 bits)]`: recording a call is one
//! compare-and-swap on one word, and a bucket left over from an earlier lap of the ring is
//! recognized by its epoch and read as empty, so nothing ever has to clear the ring on time.
//!
//! Time enters as nanoseconds since the breaker's origin, so this module is tested with plain
//! numbers; the service reads them from its [`Clock`](towline_core::Clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use towline_core::{CircuitState, ErrorKind};

use crate::policy::Policy;

const MODE_SHIFT: u32 = 62;
const GEN_SHIFT: u32 = 40;
const GEN_MASK: u64 = (1 << 22) - 1;
const PAYLOAD_MASK: u64 = (1 << GEN_SHIFT) - 1;

const MODE_CLOSED: u64 = 0;
const MODE_OPEN: u64 = 1;
const MODE_HALF_OPEN: u64 = 2;

const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const EPOCH_SHIFT: u32 = 2 * COUNT_BITS;
const EPOCH_MASK: u64 = (1 << 24) - 1;

const NANOS_PER_MS: u64 = 1_000_000;

/// The decoded state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Word {
    Closed {
        generation: u32,
    },
    Open {
        generation: u32,
        until_ms: u64,
    },
    HalfOpen {
        generation: u32,
        in_flight: u32,
        successes: u32,
    },
}

impl Word {
    fn decode(raw: u64) -> Word {
        let generation = ((raw >> GEN_SHIFT) & GEN_MASK) as u32;
        let payload = raw & PAYLOAD_MASK;
        match raw >> MODE_SHIFT {
            MODE_OPEN => Word::Open {
                generation,
                until_ms: payload,
            },
            MODE_HALF_OPEN => Word::HalfOpen {
                generation,
                in_flight: (payload & 0xffff) as u32,
                successes: ((payload >> 16) & 0xffff) as u32,
            },
            _ => Word::Closed { generation },
        }
    }

    fn encode(self) -> u64 {
        let (mode, generation, payload) = match self {
            Word::Closed { generation } => (MODE_CLOSED, generation, 0),
            Word::Open {
                generation,
                until_ms,
            } => (MODE_OPEN, generation, until_ms.min(PAYLOAD_MASK)),
            Word::HalfOpen {
                generation,
                in_flight,
                successes,
            } => (
                MODE_HALF_OPEN,
                generation,
                u64::from(in_flight & 0xffff) | (u64::from(successes & 0xffff) << 16),
            ),
        };
        (mode << MODE_SHIFT) | ((u64::from(generation) & GEN_MASK) << GEN_SHIFT) | payload
    }

    fn generation(self) -> u32 {
        match self {
            Word::Closed { generation }
            | Word::Open { generation, .. }
            | Word::HalfOpen { generation, .. } => generation,
        }
    }

    fn state(self) -> CircuitState {
        match self {
            Word::Closed { .. } => CircuitState::Closed,
            Word::Open { .. } => CircuitState::Open,
            Word::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

fn next_generation(generation: u32) -> u32 {
    ((u64::from(generation) + 1) & GEN_MASK) as u32
}

/// What a call's outcome says about the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The provider answered (a success, or an error that is not its fault).
    Success,
    /// A failure the breaker counts, with its class and the provider's retry hint.
    Failure {
        kind: ErrorKind,
        retry_after: Option<Duration>,
    },
    /// Says nothing about the provider (a local decision, a cancelled call): release and forget.
    Ignored,
}

/// Which part of a call an outcome covers.
///
/// A streamed response is judged twice: at its first frame (the provider is producing, so the
/// call counts as a success and a probe frees its slot) and at its end (a body error then is a
/// failure of the same call, not of a new one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// The call's only outcome: an error or an empty body at the head, a body that failed or
    /// ended before any frame.
    Whole,
    /// The first frame arrived: a provisional success.
    First,
    /// The end of a call whose first frame was already counted: a success confirms it, a
    /// failure counts without counting the call again.
    Rest,
}

/// What admitting a call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The call may go; `probe` says whether it holds one of the half-open probe slots.
    Admitted {
        generation: u32,
        probe: bool,
        change: Option<Change>,
    },
    /// The circuit is open (or every probe slot is taken); try again in `retry_after`.
    Rejected { retry_after: Duration },
}

impl Admission {
    fn closed(generation: u32) -> Admission {
        Admission::Admitted {
            generation,
            probe: false,
            change: None,
        }
    }
}

/// A state change, reported by the one caller whose compare-and-swap made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: CircuitState,
    pub(crate) to: CircuitState,
    /// For a change to `Open`: how long until the next probe.
    pub(crate) open_for: Option<Duration>,
    /// The class of the failure that opened the circuit.
    pub(crate) cause: Option<ErrorKind>,
}

/// A point-in-time view of one circuit, for [`crate::BreakerHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) state: CircuitState,
    pub(crate) probes_in_flight: u32,
    pub(crate) probe_successes: u32,
    pub(crate) next_probe_in: Option<Duration>,
    pub(crate) calls: u64,
    pub(crate) failures: u64,
}

/// One key's breaker.
#[derive(Debug)]
pub(crate) struct Circuit {
    state: AtomicU64,
    buckets: Box<[AtomicU64]>,
    /// Failures in a row while closed.
    consecutive: AtomicU32,
    /// Consecutive trips without a full window of health in between; drives the open backoff.
    trips: AtomicU32,
    /// When the state last changed (ms since origin); written only by transition winners.
    changed_at_ms: AtomicU64,
    /// The latest time (ms since origin) a counted failure asked the breaker to stay away until
    /// (the provider's `Retry-After` on a 503/529).
    hint_until_ms: AtomicU64,
    /// The last time (ms since origin) an outcome was recorded, for idle eviction.
    last_seen_ms: AtomicU64,
    /// The key's description, for the transition callback and snapshots.
    key: Arc<str>,
}

impl Circuit {
    pub(crate) fn new(policy: &Policy, key: Arc<str>, now_nanos: u64) -> Circuit {
        let now_ms = now_nanos / NANOS_PER_MS;
        Circuit {
            state: AtomicU64::new(Word::Closed { generation: 0 }.encode()),
            buckets: (0..policy.buckets).map(|_| AtomicU64::new(0)).collect(),
            consecutive: AtomicU32::new(0),
            trips: AtomicU32::new(0),
            changed_at_ms: AtomicU64::new(now_ms),
            hint_until_ms: AtomicU64::new(0),
            last_seen_ms: AtomicU64::new(now_ms),
            key,
        }
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    fn load(&self) -> Word {
        Word::decode(self.state.load(Ordering::Acquire))
    }

    fn swap_state(&self, current: Word, next: Word) -> Result<(), Word> {
        self.state
            .compare_exchange(
                current.encode(),
                next.encode(),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(Word::decode)
    }

    /// Decides whether a call may go. The closed path is one atomic load; `now_nanos` is only
    /// read when the circuit is not closed.
    #[inline]
    pub(crate) fn admit(&self, policy: &Policy, now_nanos: impl Fn() -> u64) -> Admission {
        let mut word = self.load();
        if let Word::Closed { generation } = word {
            return Admission::closed(generation);
        }
        let now = now_nanos();
        loop {
            let attempt = match word {
                Word::Closed { generation } => return Admission::closed(generation),
                Word::Open { .. } => self.try_first_probe(word, now),
                Word::HalfOpen { .. } => self.try_probe(policy, word),
            };
            match attempt {
                Ok(admission) => return admission,
                Err(actual) => word = actual,
            }
        }
    }

    /// Open: rejects until the probe time, then turns half-open with this call as its first
    /// probe. `Err` carries the state another caller changed meanwhile.
    fn try_first_probe(&self, word: Word, now: u64) -> Result<Admission, Word> {
        let Word::Open {
            generation,
            until_ms,
        } = word
        else {
            return Err(word);
        };
        let until = until_ms.saturating_mul(NANOS_PER_MS);
        if now < until {
            return Ok(Admission::Rejected {
                retry_after: Duration::from_nanos(until - now),
            });
        }
        let next = Word::HalfOpen {
            generation: next_generation(generation),
            in_flight: 1,
            successes: 0,
        };
        self.swap_state(word, next)?;
        self.changed_at_ms
            .store(now / NANOS_PER_MS, Ordering::Relaxed);
        Ok(Admission::Admitted {
            generation: next.generation(),
            probe: true,
            change: Some(Change {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen,
                open_for: None,
                cause: None,
            }),
        })
    }

    /// Half-open: takes a probe slot if one is free.
    fn try_probe(&self, policy: &Policy, word: Word) -> Result<Admission, Word> {
        let Word::HalfOpen {
            generation,
            in_flight,
            successes,
        } = word
        else {
            return Err(word);
        };
        if in_flight >= u32::from(policy.max_probes) {
            // The probes in flight decide soon; if they fail, the next probe is at least the
            // base open time away.
            return Ok(Admission::Rejected {
                retry_after: policy.base_open,
            });
        }
        let next = Word::HalfOpen {
            generation,
            in_flight: in_flight + 1,
            successes,
        };
        self.swap_state(word, next)?;
        Ok(Admission::Admitted {
            generation,
            probe: true,
            change: None,
        })
    }

    /// Records the outcome of (a stage of) a call admitted in `generation`.
    ///
    /// Outcomes of calls admitted in an earlier generation are ignored: only the calls admitted
    /// in a state decide what that state becomes.
    pub(crate) fn complete(
        &self,
        policy: &Policy,
        generation: u32,
        probe: bool,
        outcome: Outcome,
        stage: Stage,
        now_nanos: u64,
    ) -> Option<Change> {
        self.touch(now_nanos);
        if let Outcome::Failure {
            retry_after: Some(hint),
            ..
        } = outcome
        {
            let until = now_nanos.saturating_add(Nanos64::from(hint.min(policy.max_open)).0);
            self.hint_until_ms
                .fetch_max(until.div_ceil(NANOS_PER_MS), Ordering::Relaxed);
        }
        if probe {
            self.complete_probe(policy, generation, outcome, stage, now_nanos)
        } else {
            self.complete_closed(policy, generation, outcome, stage, now_nanos)
        }
    }

    fn touch(&self, now_nanos: u64) {
        let now_ms = now_nanos / NANOS_PER_MS;
        // Written at most once per millisecond, to keep the line quiet under load.
        if self.last_seen_ms.load(Ordering::Relaxed) < now_ms {
            self.last_seen_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    fn complete_closed(
        &self,
        policy: &Policy,
        generation: u32,
        outcome: Outcome,
        stage: Stage,
        now_nanos: u64,
    ) -> Option<Change> {
        let word = self.load();
        if word != (Word::Closed { generation }) {
            return None;
        }
        match outcome {
            Outcome::Ignored => None,
            Outcome::Success => {
                if stage != Stage::Rest {
                    self.add_to_window(policy, now_nanos, 1, 0);
                }
                // A provisional success does not end a run of failures: its stream may still
                // break.
                if stage != Stage::First && self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
                None
            }
            Outcome::Failure { kind, .. } => {
                let calls = u64::from(stage != Stage::Rest);
                self.add_to_window(policy, now_nanos, calls, 1);
                let in_a_row = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
                let tripped = policy.consecutive.is_some_and(|limit| in_a_row >= limit)
                    || self.window_trips(policy, now_nanos);
                if tripped {
                    self.open(policy, word, kind, now_nanos)
                } else {
                    None
                }
            }
        }
    }

    fn complete_probe(
        &self,
        policy: &Policy,
        generation: u32,
        outcome: Outcome,
        stage: Stage,
        now_nanos: u64,
    ) -> Option<Change> {
        let mut word = self.load();
        loop {
            let Word::HalfOpen {
                generation: current,
                in_flight,
                successes,
            } = word
            else {
                return None;
            };
            if current != generation {
                return None;
            }
            let next = match (outcome, stage) {
                (Outcome::Failure { kind, .. }, _) => {
                    return self.open(policy, word, kind, now_nanos);
                }
                // The slot was released with the first frame's success.
                (Outcome::Success | Outcome::Ignored, Stage::Rest) => return None,
                (Outcome::Ignored, _) => Word::HalfOpen {
                    generation,
                    in_flight: in_flight.saturating_sub(1),
                    successes,
                },
                (Outcome::Success, _) if successes + 1 >= u32::from(policy.close_after) => {
                    return self.close(word, now_nanos);
                }
                (Outcome::Success, _) => Word::HalfOpen {
                    generation,
                    in_flight: in_flight.saturating_sub(1),
                    successes: successes + 1,
                },
            };
            match self.swap_state(word, next) {
                Ok(()) => return None,
                Err(actual) => word = actual,
            }
        }
    }

    /// Opens the circuit from `from` (closed or half-open); returns the change if this caller
    /// made it.
    fn open(
        &self,
        policy: &Policy,
        from: Word,
        cause: ErrorKind,
        now_nanos: u64,
    ) -> Option<Change> {
        let now_ms = now_nanos / NANOS_PER_MS;
        let trips = match from {
            // A circuit that trips again within one window of closing is flapping: back off
            // further. One that stayed healthy for a full window starts over.
            Word::Closed { .. } => {
                let closed_for = now_ms.saturating_sub(self.changed_at_ms.load(Ordering::Relaxed));
                if u128::from(closed_for) < policy.window().as_millis() {
                    self.trips.load(Ordering::Relaxed).saturating_add(1)
                } else {
                    1
                }
            }
            _ => self.trips.load(Ordering::Relaxed).saturating_add(1),
        };
        let backoff = policy.open_duration(trips);
        let hinted = self
            .hint_until_ms
            .load(Ordering::Relaxed)
            .saturating_mul(NANOS_PER_MS)
            .saturating_sub(now_nanos);
        let open_for = backoff.max(Duration::from_nanos(hinted).min(policy.max_open));
        let until_ms = now_nanos
            .saturating_add(Nanos64::from(open_for).0)
            .div_ceil(NANOS_PER_MS);
        let next = Word::Open {
            generation: next_generation(from.generation()),
            until_ms,
        };
        self.swap_state(from, next).ok()?;
        self.trips.store(trips, Ordering::Relaxed);
        self.changed_at_ms.store(now_ms, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        // The window restarts empty when the circuit closes again; outcomes of the old
        // generation are ignored from here on, so clearing it now cannot race with them.
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Relaxed);
        }
        Some(Change {
            from: from.state(),
            to: CircuitState::Open,
            open_for: Some(Duration::from_nanos(
                until_ms.saturating_mul(NANOS_PER_MS) - now_nanos,
            )),
            cause: Some(cause),
        })
    }

    fn close(&self, from: Word, now_nanos: u64) -> Option<Change> {
        let next = Word::Closed {
            generation: next_generation(from.generation()),
        };
        self.swap_state(from, next).ok()?;
        // `trips` is kept: a circuit that trips again within one window backs off further.
        self.changed_at_ms
            .store(now_nanos / NANOS_PER_MS, Ordering::Relaxed);
        self.consecutive.store(0, Ordering::Relaxed);
        Some(Change {
            from: from.state(),
            to: CircuitState::Closed,
            open_for: None,
            cause: None,
        })
    }

    fn add_to_window(&self, policy: &Policy, now_nanos: u64, calls: u64, failures: u64) {
        let epoch = now_nanos / policy.bucket_nanos;
        let bucket = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let tag = epoch & EPOCH_MASK;
        let mut current = bucket.load(Ordering::Relaxed);
        loop {
            let (c, f) = if current >> EPOCH_SHIFT == tag {
                (current >> COUNT_BITS & COUNT_MAX, current & COUNT_MAX)
            } else {
                (0, 0)
            };
            let next = (tag << EPOCH_SHIFT)
                | ((c + calls).min(COUNT_MAX) << COUNT_BITS)
                | (f + failures).min(COUNT_MAX);
            match bucket.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Calls and failures in the window ending at `now_nanos`.
    fn window_counts(&self, policy: &Policy, now_nanos: u64) -> (u64, u64) {
        let epoch = now_nanos / policy.bucket_nanos;
        let len = self.buckets.len() as u64;
        let (mut calls, mut failures) = (0, 0);
        for back in 0..len.min(epoch + 1) {
            let e = epoch - back;
            let value = self.buckets[(e % len) as usize].load(Ordering::Relaxed);
            if value >> EPOCH_SHIFT == e & EPOCH_MASK {
                calls += value >> COUNT_BITS & COUNT_MAX;
                failures += value & COUNT_MAX;
            }
        }
        (calls, failures)
    }

    fn window_trips(&self, policy: &Policy, now_nanos: u64) -> bool {
        let (calls, failures) = self.window_counts(policy, now_nanos);
        // A failure at a stream's end counts without its call, which was counted at its first
        // frame, possibly in a bucket that has aged out since.
        let failures = failures.min(calls);
        calls >= u64::from(policy.min_calls)
            && failures as f64 >= policy.failure_ratio * calls as f64
    }

    pub(crate) fn view(&self, policy: &Policy, now_nanos: u64) -> View {
        let word = self.load();
        let (calls, failures) = match word {
            Word::Closed { .. } => self.window_counts(policy, now_nanos),
            _ => (0, 0),
        };
        let (probes_in_flight, probe_successes, next_probe_in) = match word {
            Word::HalfOpen {
                in_flight,
                successes,
                ..
            } => (in_flight, successes, None),
            Word::Open { until_ms, .. } => (
                0,
                0,
                Some(Duration::from_nanos(
                    until_ms
                        .saturating_mul(NANOS_PER_MS)
                        .saturating_sub(now_nanos),
                )),
            ),
            Word::Closed { .. } => (0, 0, None),
        };
        View {
            state: word.state(),
            probes_in_flight,
            probe_successes,
            next_probe_in,
            calls,
            failures,
        }
    }

    /// Whether this circuit can be forgotten: nothing recorded or changed for `idle`, no probe
    /// in flight, and not holding callers off.
    pub(crate) fn is_idle(&self, now_nanos: u64, idle: Duration) -> bool {
        let now_ms = now_nanos / NANOS_PER_MS;
        let last = self
            .last_seen_ms
            .load(Ordering::Relaxed)
            .max(self.changed_at_ms.load(Ordering::Relaxed));
        if u128::from(now_ms.saturating_sub(last)) < idle.as_millis() {
            return false;
        }
        match self.load() {
            Word::Closed { .. } => true,
            Word::Open { until_ms, .. } => until_ms <= now_ms,
            Word::HalfOpen { in_flight, .. } => in_flight == 0,
        }
    }
}

/// `Duration` to `u64` nanoseconds, saturating.
struct Nanos64(u64);

impl From<Duration> for Nanos64 {
    fn from(d: Duration) -> Self {
        Nanos64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    const MS: u64 = NANOS_PER_MS;
    const SEC: u64 = 1_000 * MS;

    fn policy() -> Policy {
        Policy::for_tests()
    }

    fn failure() -> Outcome {
        Outcome::Failure {
            kind: ErrorKind::Server,
            retry_after: None,
        }
    }

    fn admit(c: &Circuit, p: &Policy, now: u64) -> Admission {
        c.admit(p, || now)
    }

    fn admitted(a: Admission) -> (u32, bool) {
        match a {
            Admission::Admitted {
                generation, probe, ..
            } => (generation, probe),
            Admission::Rejected { retry_after } => panic!("rejected, retry after {retry_after:?}"),
        }
    }

    #[test]
    fn state_word_round_trips() {
        for word in [
            Word::Closed { generation: 0 },
            Word::Closed {
                generation: GEN_MASK as u32,
            },
            Word::Open {
                generation: 7,
                until_ms: PAYLOAD_MASK,
            },
            Word::HalfOpen {
                generation: 3,
                in_flight: 65_535,
                successes: 65_535,
            },
        ] {
            assert_eq!(Word::decode(word.encode()), word);
        }
        assert_eq!(next_generation(GEN_MASK as u32), 0);
    }

    #[test]
    fn window_forgets_buckets_older_than_the_window() {
        let p = policy(); // 10 x 100 ms
        let c = Circuit::new(&p, "k".into(), 0);
        c.add_to_window(&p, 0, 3, 2);
        c.add_to_window(&p, 950 * MS, 1, 0);
        assert_eq!(c.window_counts(&p, 950 * MS), (4, 2));
        // At 1.05 s the bucket of t = 0 is out of the window.
        assert_eq!(c.window_counts(&p, 1_050 * MS), (1, 0));
        // A full lap later the slot of t = 0 is reused and read as fresh.
        c.add_to_window(&p, 1_000 * MS, 1, 1);
        assert_eq!(c.window_counts(&p, 1_000 * MS), (2, 1));
    }

    #[test]
    fn counts_saturate_instead_of_spilling_into_the_next_field() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        c.add_to_window(&p, 0, COUNT_MAX, 0);
        c.add_to_window(&p, 0, 5, 1);
        assert_eq!(c.window_counts(&p, 0), (COUNT_MAX, 1));
    }

    #[test]
    fn ratio_needs_the_minimum_number_of_calls() {
        let p = policy(); // ratio 0.5, min 4 calls, consecutive off
        let c = Circuit::new(&p, "k".into(), 0);
        for _ in 0..3 {
            let (g, _) = admitted(admit(&c, &p, 0));
            assert_eq!(c.complete(&p, g, false, failure(), Stage::Whole, 0), None);
        }
        let (g, _) = admitted(admit(&c, &p, 0));
        let change = c
            .complete(&p, g, false, failure(), Stage::Whole, 0)
            .unwrap();
        assert_eq!(
            (change.from, change.to),
            (CircuitState::Closed, CircuitState::Open)
        );
        assert_eq!(change.open_for, Some(p.base_open));
        assert_eq!(change.cause, Some(ErrorKind::Server));
    }

    #[test]
    fn ratio_below_threshold_keeps_it_closed() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        for i in 0..40 {
            let (g, _) = admitted(admit(&c, &p, 0));
            let outcome = if i % 3 == 2 {
                failure()
            } else {
                Outcome::Success
            };
            assert_eq!(
                c.complete(&p, g, false, outcome, Stage::Whole, i * MS),
                None
            );
        }
        assert_eq!(c.view(&p, 40 * MS).state, CircuitState::Closed);
    }

    #[test]
    fn consecutive_failures_trip_below_the_minimum_calls() {
        let p = Policy {
            consecutive: Some(2),
            min_calls: 100,
            ..policy()
        };
        let c = Circuit::new(&p, "k".into(), 0);
        let (g, _) = admitted(admit(&c, &p, 0));
        assert_eq!(c.complete(&p, g, false, failure(), Stage::Whole, 0), None);
        let (g, _) = admitted(admit(&c, &p, 0));
        assert_eq!(
            c.complete(&p, g, false, Outcome::Success, Stage::Whole, 0),
            None
        );
        let (g, _) = admitted(admit(&c, &p, 0));
        assert_eq!(c.complete(&p, g, false, failure(), Stage::Whole, 0), None);
        let (g, _) = admitted(admit(&c, &p, 0));
        assert!(
            c.complete(&p, g, false, failure(), Stage::Whole, 0)
                .is_some()
        );
    }

    fn trip(c: &Circuit, p: &Policy, now: u64) -> Change {
        loop {
            let (g, probe) = admitted(admit(c, p, now));
            if let Some(change) = c.complete(p, g, probe, failure(), Stage::Whole, now) {
                return change;
            }
        }
    }

    #[test]
    fn open_rejects_until_the_probe_time_then_admits_bounded_probes() {
        let p = policy(); // base open 1 s, 2 probes, 2 successes to close
        let c = Circuit::new(&p, "k".into(), 0);
        trip(&c, &p, 0);
        assert_eq!(
            admit(&c, &p, 400 * MS),
            Admission::Rejected {
                retry_after: Duration::from_millis(600)
            }
        );
        let first = admit(&c, &p, SEC);
        let Admission::Admitted {
            generation,
            probe: true,
            change: Some(change),
        } = first
        else {
            panic!("{first:?}")
        };
        assert_eq!(change.to, CircuitState::HalfOpen);
        assert!(matches!(
            admit(&c, &p, SEC),
            Admission::Admitted {
                probe: true,
                change: None,
                ..
            }
        ));
        assert!(matches!(admit(&c, &p, SEC), Admission::Rejected { .. }));
        // One success: still half-open, one slot free again.
        assert_eq!(
            c.complete(&p, generation, true, Outcome::Success, Stage::Whole, SEC),
            None
        );
        assert!(matches!(
            admit(&c, &p, SEC),
            Admission::Admitted { probe: true, .. }
        ));
        let closed = c
            .complete(&p, generation, true, Outcome::Success, Stage::Whole, SEC)
            .unwrap();
        assert_eq!(
            (closed.from, closed.to),
            (CircuitState::HalfOpen, CircuitState::Closed)
        );
        // The third probe's answer belongs to a state that no longer exists.
        assert_eq!(
            c.complete(&p, generation, true, failure(), Stage::Whole, SEC),
            None
        );
        assert_eq!(c.view(&p, SEC).state, CircuitState::Closed);
        assert_eq!(c.view(&p, SEC).calls, 0, "the window restarts empty");
    }

    #[test]
    fn one_probe_failure_reopens_for_longer() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        assert_eq!(trip(&c, &p, 0).open_for, Some(Duration::from_secs(1)));
        let (g, probe) = admitted(admit(&c, &p, SEC));
        assert!(probe);
        let reopened = c
            .complete(&p, g, true, failure(), Stage::Whole, SEC)
            .unwrap();
        assert_eq!(
            (reopened.from, reopened.to),
            (CircuitState::HalfOpen, CircuitState::Open)
        );
        assert_eq!(reopened.open_for, Some(Duration::from_secs(2)));
        let (g, _) = admitted(admit(&c, &p, 3 * SEC));
        let again = c
            .complete(&p, g, true, failure(), Stage::Whole, 3 * SEC)
            .unwrap();
        assert_eq!(again.open_for, Some(Duration::from_secs(4)));
        let (g, _) = admitted(admit(&c, &p, 7 * SEC));
        let capped = c
            .complete(&p, g, true, failure(), Stage::Whole, 7 * SEC)
            .unwrap();
        assert_eq!(capped.open_for, Some(p.max_open), "capped");
    }

    #[test]
    fn a_trip_soon_after_closing_backs_off_further_and_a_healthy_window_resets_it() {
        let p = policy(); // window 1 s
        let c = Circuit::new(&p, "k".into(), 0);
        trip(&c, &p, 0);
        for _ in 0..2 {
            let (g, _) = admitted(admit(&c, &p, SEC));
            c.complete(&p, g, true, Outcome::Success, Stage::Whole, SEC);
        }
        assert_eq!(c.view(&p, SEC).state, CircuitState::Closed);
        assert_eq!(
            trip(&c, &p, SEC + 500 * MS).open_for,
            Some(Duration::from_secs(2))
        );
        let at = 4 * SEC;
        for _ in 0..2 {
            let (g, _) = admitted(admit(&c, &p, at));
            c.complete(&p, g, true, Outcome::Success, Stage::Whole, at);
        }
        assert_eq!(
            trip(&c, &p, at + 2 * SEC).open_for,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn provider_retry_after_sets_the_minimum_open_time() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        let (g, _) = admitted(admit(&c, &p, 0));
        let overloaded = Outcome::Failure {
            kind: ErrorKind::Overloaded,
            retry_after: Some(Duration::from_millis(3_500)),
        };
        c.complete(&p, g, false, overloaded, Stage::Whole, 0);
        assert_eq!(
            trip(&c, &p, 10 * MS).open_for,
            Some(Duration::from_millis(3_490))
        );
        // A hint beyond the maximum open time is capped.
        let c = Circuit::new(&p, "k".into(), 0);
        let (g, _) = admitted(admit(&c, &p, 0));
        let huge = Outcome::Failure {
            kind: ErrorKind::Overloaded,
            retry_after: Some(Duration::from_secs(3_600)),
        };
        c.complete(&p, g, false, huge, Stage::Whole, 0);
        assert_eq!(trip(&c, &p, 0).open_for, Some(p.max_open));
    }

    #[test]
    fn ignored_probe_outcome_releases_the_slot_without_counting() {
        let p = Policy {
            max_probes: 1,
            ..policy()
        };
        let c = Circuit::new(&p, "k".into(), 0);
        trip(&c, &p, 0);
        let (g, _) = admitted(admit(&c, &p, SEC));
        assert!(matches!(admit(&c, &p, SEC), Admission::Rejected { .. }));
        c.complete(&p, g, true, Outcome::Ignored, Stage::Whole, SEC);
        let view = c.view(&p, SEC);
        assert_eq!((view.probes_in_flight, view.probe_successes), (0, 0));
        assert!(matches!(
            admit(&c, &p, SEC),
            Admission::Admitted { probe: true, .. }
        ));
    }

    #[test]
    fn late_failure_counts_without_counting_the_call_twice() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        let (g, _) = admitted(admit(&c, &p, 0));
        c.complete(&p, g, false, Outcome::Success, Stage::First, 0);
        c.complete(&p, g, false, failure(), Stage::Rest, 0);
        assert_eq!(c.window_counts(&p, 0), (1, 1));
    }

    #[test]
    fn only_a_confirmed_success_ends_a_run_of_failures() {
        let p = Policy {
            consecutive: Some(3),
            min_calls: 100,
            ..policy()
        };
        let c = Circuit::new(&p, "k".into(), 0);
        // Streams that break after their first frame: each is a failure in a row.
        for _ in 0..2 {
            let (g, _) = admitted(admit(&c, &p, 0));
            c.complete(&p, g, false, Outcome::Success, Stage::First, 0);
            assert_eq!(c.complete(&p, g, false, failure(), Stage::Rest, 0), None);
        }
        // A stream that ends well resets the run.
        let (g, _) = admitted(admit(&c, &p, 0));
        c.complete(&p, g, false, Outcome::Success, Stage::First, 0);
        c.complete(&p, g, false, Outcome::Success, Stage::Rest, 0);
        for _ in 0..2 {
            let (g, _) = admitted(admit(&c, &p, 0));
            assert_eq!(c.complete(&p, g, false, failure(), Stage::Whole, 0), None);
        }
        let (g, _) = admitted(admit(&c, &p, 0));
        assert!(
            c.complete(&p, g, false, failure(), Stage::Whole, 0)
                .is_some()
        );
        assert_eq!(c.window_counts(&p, 0), (0, 0), "cleared on opening");
    }

    #[test]
    fn late_probe_failure_reopens_but_does_not_free_a_slot_twice() {
        let p = Policy {
            close_after: 3,
            ..policy()
        };
        let c = Circuit::new(&p, "k".into(), 0);
        trip(&c, &p, 0);
        let (g, _) = admitted(admit(&c, &p, SEC));
        let (g2, _) = admitted(admit(&c, &p, SEC));
        c.complete(&p, g, true, Outcome::Success, Stage::First, SEC);
        let view = c.view(&p, SEC);
        assert_eq!((view.probes_in_flight, view.probe_successes), (1, 1));
        // The first probe's stream breaks after its first frame.
        let change = c
            .complete(&p, g, true, failure(), Stage::Rest, SEC)
            .unwrap();
        assert_eq!(change.to, CircuitState::Open);
        // The second probe's answer is now stale.
        assert_eq!(
            c.complete(&p, g2, true, Outcome::Success, Stage::Whole, SEC),
            None
        );
    }

    #[test]
    fn idle_rules() {
        let p = policy();
        let c = Circuit::new(&p, "k".into(), 0);
        assert!(!c.is_idle(SEC, Duration::from_secs(2)));
        assert!(c.is_idle(2 * SEC, Duration::from_secs(2)));
        trip(&c, &p, 2 * SEC);
        // Open until 3 s: kept while it holds callers off, even when idle.
        assert!(!c.is_idle(2 * SEC + 500 * MS, Duration::ZERO));
        assert!(c.is_idle(3 * SEC, Duration::ZERO));
        let (_g, _) = admitted(admit(&c, &p, 3 * SEC));
        assert!(!c.is_idle(10 * SEC, Duration::ZERO), "a probe is in flight");
    }
}
