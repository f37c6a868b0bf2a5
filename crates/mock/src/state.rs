//! The server's shared state: the compiled scenario, the counters, limiters and sessions in
//! flight, and the journal. One short critical section per arrival, one per response, one per
//! finish: far below the cost of the loopback round trip itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};
use tokio::time::Instant;
use towline_core::{ErrorKind, KeyHash};

use crate::Dialect;
use crate::body::FinishGuard;
use crate::journal::{Arrival, Cause, Journal, Outcome};
use crate::limit::{Admission, LimiterState, admit};
use crate::render::{ErrorSpec, LimitInfo, RetryAfter};
use crate::script::{Action, Scenario, Script};

/// The scenario, ready to select scripts fast.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) seed: u64,
    pub(crate) models: Vec<String>,
    /// Index 0 is the default script; index `i + 1` is `scripts[i]`.
    pub(crate) scripts: Vec<Script>,
    /// Whether attempts of a script are counted per session.
    session_scoped: Vec<bool>,
    by_key_session: HashMap<KeyHash, HashMap<String, usize>>,
    by_session: HashMap<String, usize>,
    by_key: HashMap<KeyHash, usize>,
}

impl Compiled {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let mut compiled = Compiled {
            seed: scenario.seed,
            models: scenario.models.clone(),
            scripts: vec![scenario.default.clone()],
            session_scoped: vec![false],
            by_key_session: HashMap::new(),
            by_session: HashMap::new(),
            by_key: HashMap::new(),
        };
        for (selector, script) in &scenario.scripts {
            let index = compiled.scripts.len();
            compiled.scripts.push(script.clone());
            compiled.session_scoped.push(selector.session.is_some());
            // Keys are hashed here; the raw key stays only in the caller's `Scenario`.
            let key = selector.key.as_ref().map(|k| KeyHash::of(k.as_bytes()));
            match (key, &selector.session) {
                (Some(key), Some(session)) => {
                    compiled
                        .by_key_session
                        .entry(key)
                        .or_default()
                        .insert(session.clone(), index);
                }
                (None, Some(session)) => {
                    compiled.by_session.insert(session.clone(), index);
                }
                (Some(key), None) => {
                    compiled.by_key.insert(key, index);
                }
                (None, None) => {}
            }
        }
        compiled
    }

    /// The script for a request: key and session, else session, else key, else default.
    fn select(&self, key: Option<KeyHash>, session: Option<&str>) -> usize {
        if let (Some(key), Some(session)) = (key, session)
            && let Some(&i) = self
                .by_key_session
                .get(&key)
                .and_then(|sessions| sessions.get(session))
        {
            return i;
        }
        if let Some(&i) = session.and_then(|s| self.by_session.get(s)) {
            return i;
        }
        key.and_then(|k| self.by_key.get(&k).copied()).unwrap_or(0)
    }
}

/// The route a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Chat,
    Models,
    Unknown,
}

impl Route {
    /// `/v1/chat/completions` and `/chat/completions`, `/v1/models` and `/models`.
    pub(crate) fn of(method: &Method, path: &str) -> Route {
        let path = path
            .strip_prefix("/v1")
            .filter(|p| p.starts_with('/'))
            .unwrap_or(path);
        let path = path.strip_suffix('/').unwrap_or(path);
        match (method, path) {
            (&Method::POST, "/chat/completions") => Route::Chat,
            (&Method::GET, "/models") => Route::Models,
            _ => Route::Unknown,
        }
    }
}

/// What the handler learned about a request before asking for a decision.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) at: Instant,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) route: Route,
    pub(crate) key: Option<KeyHash>,
    pub(crate) session: Option<String>,
    pub(crate) headers: HeaderMap,
    pub(crate) stream: bool,
    pub(crate) model: Option<String>,
    /// For a chat request whose body could not be used: the error to answer.
    pub(crate) malformed: Option<ErrorKind>,
}

/// What to answer.
#[derive(Debug)]
pub(crate) enum Answer {
    Models,
    Act(Action),
}

/// The decision for one request, and the guard that records its end.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) dialect: Dialect,
    pub(crate) script: usize,
    pub(crate) answer: Answer,
    pub(crate) latency: Duration,
    /// Rate-limit figures to report on a success.
    pub(crate) success_limit: Option<LimitInfo>,
    pub(crate) request_id: Option<String>,
    pub(crate) guard: FinishGuard,
}

/// Which requests a script counts together: the script, the key, and the session for a script
/// chosen by session.
type AttemptScope = (usize, Option<KeyHash>, Option<Arc<str>>);

#[derive(Debug, Default)]
struct State {
    key_arrivals: HashMap<Option<KeyHash>, u32>,
    script_attempts: HashMap<AttemptScope, u32>,
    limiters: HashMap<(usize, Option<KeyHash>), LimiterState>,
    in_flight: HashMap<Arc<str>, u32>,
    journal: VecDeque<Arrival>,
    /// The `seq` of `journal[0]`.
    first_seq: u64,
    next_seq: u64,
    /// Orders arrivals and ends (see `Arrival::tick`).
    last_tick: u64,
}

impl State {
    fn arrival_mut(&mut self, seq: u64) -> Option<&mut Arrival> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.journal.get_mut(index)
    }
}

/// Everything the connections of one server share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) compiled: Compiled,
    pub(crate) started: Instant,
    pub(crate) record_headers: Vec<HeaderName>,
    journal_limit: Option<usize>,
    state: Mutex<State>,
}

/// splitmix64's finalizer: a good 64-bit mix in a few instructions.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in `[0, 1)` that depends only on its inputs, so that a seeded scenario makes the
/// same draws whatever order concurrent requests arrive in.
pub(crate) fn draw(
    seed: u64,
    script: usize,
    fault: usize,
    key: Option<KeyHash>,
    session: Option<&str>,
    attempt: u32,
) -> f64 {
    let mut h = mix(seed);
    h = mix(h ^ script as u64);
    h = mix(h ^ fault as u64);
    h = mix(h ^ key.map_or(0, KeyHash::as_u64));
    h = mix(h ^ session.map_or(0, |s| KeyHash::of(s.as_bytes()).as_u64()));
    h = mix(h ^ u64::from(attempt));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

impl Shared {
    pub(crate) fn new(
        scenario: &Scenario,
        record_headers: Vec<HeaderName>,
        journal_limit: Option<usize>,
    ) -> Self {
        Shared {
            compiled: Compiled::new(scenario),
            started: Instant::now(),
            record_headers,
            journal_limit,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters to a test double; keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The headers of `headers` the journal keeps.
    pub(crate) fn recorded(&self, headers: &HeaderMap) -> HeaderMap {
        let mut kept = HeaderMap::new();
        for name in &self.record_headers {
            for value in headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        kept
    }

    /// Decides the answer to `req`, counts it and journals it.
    pub(crate) fn arrive(self: &Arc<Self>, req: Request) -> Plan {
        let elapsed = req.at.saturating_duration_since(self.started);
        let script_index = self.compiled.select(req.key, req.session.as_deref());
        let script = &self.compiled.scripts[script_index];
        let session: Option<Arc<str>> = req.session.as_deref().map(Arc::from);

        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let key_attempt = {
            let n = state.key_arrivals.entry(req.key).or_default();
            *n += 1;
            *n
        };
        let request_id = script
            .request_ids
            .then(|| request_id(self.compiled.seed, seq));

        let mut success_limit = None;
        let mut latency = Duration::ZERO;
        let (cause, answer) = match req.route {
            Route::Models => (Cause::Script, Answer::Models),
            Route::Unknown => (
                Cause::UnknownRoute,
                Answer::Act(Action::Error(ErrorSpec::new(ErrorKind::NotFound))),
            ),
            Route::Chat => {
                let scope = self.compiled.session_scoped[script_index]
                    .then(|| session.clone())
                    .flatten();
                let attempt = {
                    let n = state
                        .script_attempts
                        .entry((script_index, req.key, scope.clone()))
                        .or_default();
                    *n += 1;
                    *n
                };
                let busy = script.session_busy
                    && session
                        .as_ref()
                        .is_some_and(|s| state.in_flight.get(s).is_some_and(|n| *n > 0));
                if let Some(kind) = req.malformed {
                    (
                        Cause::MalformedRequest,
                        Answer::Act(Action::Error(ErrorSpec::new(kind))),
                    )
                } else if busy {
                    (
                        Cause::SessionBusy,
                        Answer::Act(Action::Error(session_busy_error(script.dialect))),
                    )
                } else {
                    let admission = script.rate_limit.as_ref().map(|limit| {
                        let limiter = state.limiters.entry((script_index, req.key)).or_default();
                        (limit, admit(limit.shape, limiter, elapsed))
                    });
                    match admission {
                        Some((limit, Admission::Rejected { wait, info })) => {
                            let mut hint = RetryAfter::new(wait);
                            if let Some(form) = limit.hint_form {
                                hint = hint.form(form);
                            }
                            let mut spec = ErrorSpec::new(ErrorKind::RateLimited).retry_after(hint);
                            spec.limit = Some(info);
                            (Cause::RateLimit, Answer::Act(Action::Error(spec)))
                        }
                        admitted => {
                            if let Some((limit, Admission::Allowed(info))) = admitted {
                                success_limit = limit.success_headers.then_some(info);
                            }
                            let ctx = Draw {
                                seed: self.compiled.seed,
                                script: script_index,
                                key: req.key,
                                scope: scope.as_deref(),
                                attempt,
                            };
                            let (cause, action, fault_latency) =
                                choose_fault(script, &ctx, elapsed, req.stream);
                            latency = fault_latency.unwrap_or(script.latency);
                            (cause, Answer::Act(action))
                        }
                    }
                }
            }
        };

        let holds_session = cause != Cause::SessionBusy;
        if holds_session && let Some(s) = &session {
            *state.in_flight.entry(s.clone()).or_default() += 1;
        }
        let arrival = Arrival {
            seq,
            at: req.at,
            key: req.key,
            session: req.session,
            attempt: key_attempt,
            method: req.method,
            path: req.path,
            stream: req.stream,
            model: req.model,
            cause,
            outcome: outcome_of(&answer, req.stream),
            status: None,
            responded_at: None,
            finished_at: None,
            hint: None,
            request_id: request_id.clone(),
            headers: req.headers,
            tick: {
                state.last_tick += 1;
                state.last_tick
            },
            finish_tick: None,
        };
        self.journal_push(&mut state, arrival);
        drop(state);

        let guard_session = if holds_session { session } else { None };
        Plan {
            dialect: script.dialect,
            script: script_index,
            answer,
            latency,
            success_limit,
            request_id,
            guard: FinishGuard::new(self.clone(), seq, guard_session),
        }
    }

    fn journal_push(&self, state: &mut State, arrival: Arrival) {
        if self.journal_limit == Some(0) {
            state.first_seq = state.next_seq;
            return;
        }
        state.journal.push_back(arrival);
        if let Some(limit) = self.journal_limit {
            while state.journal.len() > limit {
                state.journal.pop_front();
                state.first_seq += 1;
            }
        }
    }

    /// Records that the response head of `seq` was handed to the connection.
    pub(crate) fn responded(&self, seq: u64, status: StatusCode, hint: Option<Duration>) {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(arrival) = state.arrival_mut(seq) {
            arrival.status = Some(status);
            arrival.responded_at = Some(now);
            arrival.hint = hint;
        }
    }

    /// Records the end of the exchange `seq` and frees its session.
    pub(crate) fn finished(&self, seq: u64, session: Option<Arc<str>>, at: Instant) {
        let mut state = self.lock();
        state.last_tick += 1;
        let tick = state.last_tick;
        if let Some(arrival) = state.arrival_mut(seq) {
            arrival.finished_at = Some(at);
            arrival.finish_tick = Some(tick);
        }
        if let Some(session) = session
            && let Some(n) = state.in_flight.get_mut(&session)
        {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(&session);
            }
        }
    }

    /// A snapshot of the journal.
    pub(crate) fn journal(&self) -> Journal {
        let state = self.lock();
        Journal::new(state.journal.iter().cloned().collect())
    }

    /// Forgets the journal (counters, limits and sessions in flight are kept).
    pub(crate) fn clear_journal(&self) {
        let mut state = self.lock();
        state.first_seq = state.next_seq;
        state.journal.clear();
    }

    /// How many requests arrived so far.
    pub(crate) fn arrivals(&self) -> u64 {
        self.lock().next_seq
    }

    /// How many requests of sessions are in flight.
    pub(crate) fn sessions_in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }
}

struct Draw<'a> {
    seed: u64,
    script: usize,
    key: Option<KeyHash>,
    scope: Option<&'a str>,
    attempt: u32,
}

/// The first fault of `script` whose conditions hold, or the script's success.
fn choose_fault(
    script: &Script,
    ctx: &Draw<'_>,
    elapsed: Duration,
    stream: bool,
) -> (Cause, Action, Option<Duration>) {
    for (i, fault) in script.faults.iter().enumerate() {
        if !fault.when.holds(ctx.attempt, elapsed, stream) {
            continue;
        }
        if fault.action.needs_stream() && !stream {
            continue;
        }
        if let Some(p) = fault.when.p
            && draw(ctx.seed, ctx.script, i, ctx.key, ctx.scope, ctx.attempt) >= p
        {
            continue;
        }
        return (Cause::Fault(i), fault.action.clone(), fault.latency);
    }
    (Cause::Script, Action::Succeed, None)
}

/// The answer to a second request of a busy session: kimi-free-api's -2005, or the dialect's
/// rate-limit error saying the same.
fn session_busy_error(dialect: Dialect) -> ErrorSpec {
    let spec = ErrorSpec::new(ErrorKind::RateLimited);
    match dialect {
        Dialect::KimiFreeApi | Dialect::KimiFreeApiDocumented => spec,
        _ => spec.message(
            "A response for this session is still being streamed; retry once it has ended.",
        ),
    }
}

fn outcome_of(answer: &Answer, stream: bool) -> Outcome {
    match answer {
        Answer::Models => Outcome::Success,
        Answer::Act(action) => match action {
            Action::Succeed => Outcome::Success,
            Action::Error(spec) => Outcome::Error(spec.kind()),
            Action::BreakStream { error, .. } => Outcome::StreamBroken(error.kind()),
            Action::CutStream { .. } if stream => Outcome::StreamCut,
            Action::CutStream { .. } => Outcome::Success,
            Action::Reset => Outcome::Reset,
            Action::StallHeaders | Action::StallBody { .. } => Outcome::Stalled,
            Action::Raw { .. } => Outcome::Raw,
            Action::OversizedBody { .. } => Outcome::Oversized,
            Action::EndlessStream { .. } => Outcome::Endless,
        },
    }
}

/// `req-` and ten hex digits (Kaiko's form), derived from the seed and the arrival's position.
fn request_id(seed: u64, seq: u64) -> String {
    format!("req-{:010x}", mix(seed ^ mix(seq)) & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_the_version_prefix() {
        assert_eq!(
            Route::of(&Method::POST, "/v1/chat/completions"),
            Route::Chat
        );
        assert_eq!(Route::of(&Method::POST, "/chat/completions"), Route::Chat);
        assert_eq!(Route::of(&Method::GET, "/v1/models/"), Route::Models);
        assert_eq!(
            Route::of(&Method::GET, "/v1/chat/completions"),
            Route::Unknown
        );
        assert_eq!(
            Route::of(&Method::POST, "/v1x/chat/completions"),
            Route::Unknown
        );
    }

    #[test]
    fn draws_are_uniformish_and_depend_on_every_input() {
        let n = 20_000;
        let hits = (0..n)
            .filter(|&i| draw(7, 0, 0, None, None, i) < 0.05)
            .count();
        assert!((800..1200).contains(&hits), "{hits} of {n} under 0.05");
        let base = draw(1, 0, 0, None, None, 1);
        assert_ne!(base, draw(2, 0, 0, None, None, 1));
        assert_ne!(base, draw(1, 1, 0, None, None, 1));
        assert_ne!(base, draw(1, 0, 1, None, None, 1));
        assert_ne!(base, draw(1, 0, 0, Some(KeyHash::of(b"k")), None, 1));
        assert_ne!(base, draw(1, 0, 0, None, Some("s"), 1));
        assert_eq!(base, draw(1, 0, 0, None, None, 1));
    }

    #[test]
    fn request_ids_look_like_kaikos() {
        let id = request_id(0, 1);
        assert_eq!(id.len(), 14);
        assert!(id.starts_with("req-"));
        assert_ne!(id, request_id(0, 2));
    }
}
