//! The journal of every request the mock received, and the questions tests ask of it.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;
use towline_core::{ErrorKind, KeyHash};

/// Anything that names an API key in a journal query: the key itself (`&str`, `String`),
/// hashed on the spot, or its [`KeyHash`].
///
/// ```
/// use towline_core::KeyHash;
/// use towline_mock::AsKeyHash;
///
/// assert_eq!("sk-1".key_hash(), KeyHash::of(b"sk-1"));
/// assert_eq!(KeyHash::of(b"sk-1").key_hash(), "sk-1".key_hash());
/// ```
pub trait AsKeyHash {
    /// The key's digest.
    fn key_hash(&self) -> KeyHash;
}

impl AsKeyHash for KeyHash {
    fn key_hash(&self) -> KeyHash {
        *self
    }
}

impl AsKeyHash for str {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self.as_bytes())
    }
}

impl AsKeyHash for String {
    fn key_hash(&self) -> KeyHash {
        KeyHash::of(self.as_bytes())
    }
}

impl<T: AsKeyHash + ?Sized> AsKeyHash for &T {
    fn key_hash(&self) -> KeyHash {
        (**self).key_hash()
    }
}

/// Why the mock answered a request the way it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// No fault fired: the script's normal answer (a completion, the model list).
    Script,
    /// The script's fault at this index fired.
    Fault(usize),
    /// The script's server-side rate limit rejected the request.
    RateLimit,
    /// The session rule (kimi-free-api -2005): another request of the session was in flight.
    SessionBusy,
    /// The chat-completion body was not JSON.
    MalformedRequest,
    /// No such route.
    UnknownRoute,
}

/// What the mock sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// A successful answer (a completion, a full stream ending in `[DONE]`, the model list).
    Success,
    /// An error response of this class (for kimi-free-api's real form, with HTTP 200).
    Error(ErrorKind),
    /// A stream that delivered content, then an in-band error event of this class.
    StreamBroken(ErrorKind),
    /// A stream whose connection was cut after some content.
    StreamCut,
    /// The connection was closed before any response byte.
    Reset,
    /// Headers or body never (fully) came.
    Stalled,
    /// A raw scripted response.
    Raw,
    /// An oversized error body.
    Oversized,
    /// An endless event stream without events.
    Endless,
}

/// One request as the mock saw it, and what it answered.
///
/// Keys are kept as [`KeyHash`]es, never in the clear; of the request headers only the ones
/// the server was told to record are kept (by default `traceparent`, `tracestate`,
/// `idempotency-key`, `x-session-id`; credentials can never be recorded).
///
/// Built by the server, or by hand to test code that reads journals:
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use towline_mock::Arrival;
///
/// let t0 = Instant::now();
/// let a = Arrival::new(0, t0)
///     .with_key("sk-1")
///     .with_session("s1")
///     .with_status(429)
///     .with_hint(Duration::from_secs(1))
///     .with_finished_at(t0 + Duration::from_millis(3));
/// assert_eq!(a.status.map(|s| s.as_u16()), Some(429));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Arrival {
    /// Position in the journal, from 0, in order of arrival.
    pub seq: u64,
    /// When the request's head was received.
    pub at: Instant,
    /// The API key's digest (bearer token, `x-api-key`, `api-key` or `x-goog-api-key`).
    pub key: Option<KeyHash>,
    /// The `x-session-id` header.
    pub session: Option<String>,
    /// Which arrival of its key this is, from 1 (keyless requests are counted together).
    pub attempt: u32,
    /// The request method.
    pub method: Method,
    /// The request path.
    pub path: String,
    /// Whether the body asked for a stream (`"stream": true`).
    pub stream: bool,
    /// The body's `model`.
    pub model: Option<String>,
    /// Why the mock answered as it did.
    pub cause: Cause,
    /// What it answered.
    pub outcome: Outcome,
    /// The status sent, once the response head was handed to the connection (`None` for a
    /// reset or a stall before headers).
    pub status: Option<StatusCode>,
    /// When the response head was handed to the connection.
    pub responded_at: Option<Instant>,
    /// When the last byte was handed to the connection (for a stream: when it ended), or
    /// when the exchange was abandoned (client gone, connection cut or reset). `None` while
    /// the exchange is still going on.
    pub finished_at: Option<Instant>,
    /// The retry hint announced, as a client reads it (`retry-after-ms`, else `Retry-After`,
    /// else the body), counted from `responded_at`.
    pub hint: Option<Duration>,
    /// The request id the mock sent.
    pub request_id: Option<String>,
    /// The recorded request headers.
    pub headers: HeaderMap,
    /// The server's order of events (arrivals and ends share one counter, from 1), which
    /// orders events that tokio's clock cannot tell apart (paused time); 0 when built by hand.
    pub(crate) tick: u64,
    pub(crate) finish_tick: Option<u64>,
}

impl Arrival {
    /// A `POST /v1/chat/completions` arrival at `at`, with nothing else known: no key, no
    /// session, attempt 1, a success not yet answered.
    pub fn new(seq: u64, at: Instant) -> Self {
        Arrival {
            seq,
            at,
            key: None,
            session: None,
            attempt: 1,
            method: Method::POST,
            path: "/v1/chat/completions".to_owned(),
            stream: false,
            model: None,
            cause: Cause::Script,
            outcome: Outcome::Success,
            status: None,
            responded_at: None,
            finished_at: None,
            hint: None,
            request_id: None,
            headers: HeaderMap::new(),
            tick: 0,
            finish_tick: None,
        }
    }

    /// Sets the key (hashed).
    pub fn with_key(mut self, key: impl AsKeyHash) -> Self {
        self.key = Some(key.key_hash());
        self
    }

    /// Sets the session.
    pub fn with_session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// Sets the attempt number.
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Sets the status sent; `responded_at` becomes `at` if it was unset.
    ///
    /// # Panics
    ///
    /// If `status` is not within 100..=999.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(StatusCode::from_u16(status).expect("an HTTP status"));
        self.responded_at.get_or_insert(self.at);
        self
    }

    /// Sets the outcome.
    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets when the response head was sent.
    pub fn with_responded_at(mut self, at: Instant) -> Self {
        self.responded_at = Some(at);
        self
    }

    /// Sets when the last byte was sent.
    pub fn with_finished_at(mut self, at: Instant) -> Self {
        self.finished_at = Some(at);
        self
    }

    /// Sets the announced retry hint.
    pub fn with_hint(mut self, hint: Duration) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The class of the error sent, if the answer was an error response or a broken stream's
    /// error event.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self.outcome {
            Outcome::Error(kind) | Outcome::StreamBroken(kind) => Some(kind),
            _ => None,
        }
    }

    /// The earliest instant the key may come back, if this answer announced a hint.
    pub fn retry_allowed_at(&self) -> Option<Instant> {
        let hint = self.hint?;
        Some(self.responded_at.unwrap_or(self.at) + hint)
    }
}

/// A snapshot of the arrivals, with the queries end-to-end tests need.
///
/// Get one from [`MockServer::journal`](crate::MockServer::journal), or build one by hand:
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use towline_mock::{Arrival, Journal};
///
/// let t0 = Instant::now();
/// let ms = Duration::from_millis;
/// let journal: Journal = vec![
///     Arrival::new(0, t0).with_key("sk-1").with_status(429).with_hint(ms(100)),
///     Arrival::new(1, t0 + ms(50)).with_key("sk-1").with_status(200), // too early
///     Arrival::new(2, t0 + ms(150)).with_key("sk-1").with_status(200),
/// ]
/// .into_iter()
/// .collect();
///
/// assert_eq!(journal.total(), 3);
/// let early: Vec<u64> = journal.early_arrivals("sk-1", Duration::ZERO).iter().map(|a| a.seq).collect();
/// assert_eq!(early, [1]);
/// assert_eq!(journal.max_in_window("sk-1", ms(100)), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Journal {
    arrivals: Vec<Arrival>,
}

impl FromIterator<Arrival> for Journal {
    fn from_iter<I: IntoIterator<Item = Arrival>>(iter: I) -> Self {
        Journal::new(iter.into_iter().collect())
    }
}

impl From<Vec<Arrival>> for Journal {
    fn from(arrivals: Vec<Arrival>) -> Self {
        Journal::new(arrivals)
    }
}

impl IntoIterator for Journal {
    type Item = Arrival;
    type IntoIter = std::vec::IntoIter<Arrival>;

    fn into_iter(self) -> Self::IntoIter {
        self.arrivals.into_iter()
    }
}

impl Journal {
    /// A journal of `arrivals` (sorted by arrival time).
    pub fn new(mut arrivals: Vec<Arrival>) -> Self {
        arrivals.sort_by_key(|a| (a.at, a.seq));
        Journal { arrivals }
    }

    /// Every arrival, in order of arrival.
    pub fn arrivals(&self) -> &[Arrival] {
        &self.arrivals
    }

    /// How many requests arrived.
    pub fn total(&self) -> usize {
        self.arrivals.len()
    }

    /// Whether nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }

    /// The arrivals with API key `key`.
    pub fn for_key(&self, key: impl AsKeyHash) -> impl Iterator<Item = &Arrival> + '_ {
        let key = key.key_hash();
        self.arrivals.iter().filter(move |a| a.key == Some(key))
    }

    /// The arrivals of session `session`.
    pub fn for_session<'a>(&'a self, session: &'a str) -> impl Iterator<Item = &'a Arrival> + 'a {
        self.arrivals
            .iter()
            .filter(move |a| a.session.as_deref() == Some(session))
    }

    /// How many requests arrived with API key `key`.
    pub fn attempts(&self, key: impl AsKeyHash) -> usize {
        self.for_key(key).count()
    }

    /// How many responses were sent with each status (requests without a response, reset or
    /// stalled before headers, are not counted).
    pub fn count_by_status(&self) -> BTreeMap<u16, usize> {
        let mut counts = BTreeMap::new();
        for status in self.arrivals.iter().filter_map(|a| a.status) {
            *counts.entry(status.as_u16()).or_default() += 1;
        }
        counts
    }

    /// How many responses were sent with `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.arrivals
            .iter()
            .filter(|a| a.status.is_some_and(|s| s.as_u16() == status))
            .count()
    }

    /// How many errors of each class were sent (error responses and broken streams' events).
    pub fn count_by_error(&self) -> BTreeMap<ErrorKind, usize> {
        let mut counts = BTreeMap::new();
        for kind in self.arrivals.iter().filter_map(Arrival::error_kind) {
            *counts.entry(kind).or_default() += 1;
        }
        counts
    }

    /// The most requests of session `session` that were in flight at once, an arrival being
    /// in flight from `at` until `finished_at` (excluded; forever if unfinished). Events at the
    /// same instant (paused time) are ordered as the server saw them.
    pub fn max_concurrent(&self, session: &str) -> usize {
        max_overlap(self.for_session(session))
    }

    /// [`max_concurrent`](Journal::max_concurrent) for every session.
    pub fn max_concurrent_per_session(&self) -> BTreeMap<String, usize> {
        let mut by_session: BTreeMap<&str, Vec<&Arrival>> = BTreeMap::new();
        for a in &self.arrivals {
            if let Some(s) = &a.session {
                by_session.entry(s).or_default().push(a);
            }
        }
        by_session
            .into_iter()
            .map(|(s, arrivals)| (s.to_owned(), max_overlap(arrivals)))
            .collect()
    }

    /// The highest [`max_concurrent`](Journal::max_concurrent) of any session (0 if no
    /// request had a session).
    pub fn max_session_concurrency(&self) -> usize {
        self.max_concurrent_per_session()
            .into_values()
            .max()
            .unwrap_or(0)
    }

    /// The most requests with API key `key` that arrived within any window of length
    /// `window` (`[t, t + window)`).
    pub fn max_in_window(&self, key: impl AsKeyHash, window: Duration) -> usize {
        max_in_window(self.for_key(key).map(|a| a.at), window)
    }

    /// The most requests of any one key within any window of length `window`, by key.
    pub fn max_in_window_per_key(&self, window: Duration) -> BTreeMap<KeyHash, usize> {
        let mut by_key: BTreeMap<KeyHash, Vec<Instant>> = BTreeMap::new();
        for a in &self.arrivals {
            if let Some(key) = a.key {
                by_key.entry(key).or_default().push(a.at);
            }
        }
        by_key
            .into_iter()
            .map(|(key, times)| (key, max_in_window(times, window)))
            .collect()
    }

    /// The arrivals with API key `key` that came while an earlier answer to that key had asked
    /// it to wait: after the answer was sent plus `grace`, and before its hint had passed.
    ///
    /// `grace` excuses requests that were already on their way when the hint was sent (with
    /// concurrency, a client cannot know of a hint before it has read it); a few milliseconds
    /// suit loopback tests on a loaded machine.
    pub fn early_arrivals(&self, key: impl AsKeyHash, grace: Duration) -> Vec<&Arrival> {
        early_arrivals(self.for_key(key).collect(), grace)
    }

    /// [`early_arrivals`](Journal::early_arrivals) for every key.
    pub fn early_arrivals_any_key(&self, grace: Duration) -> Vec<&Arrival> {
        let mut by_key: BTreeMap<KeyHash, Vec<&Arrival>> = BTreeMap::new();
        for a in &self.arrivals {
            if let Some(key) = a.key {
                by_key.entry(key).or_default().push(a);
            }
        }
        let mut early: Vec<&Arrival> = by_key
            .into_values()
            .flat_map(|arrivals| early_arrivals(arrivals, grace))
            .collect();
        early.sort_by_key(|a| (a.at, a.seq));
        early
    }
}

/// The most intervals `[at, finished_at)` covering one instant.
fn max_overlap<'a>(arrivals: impl IntoIterator<Item = &'a Arrival>) -> usize {
    // (time, order, +1 | -1); an unfinished exchange never ends. At the same instant, the
    // server's own order of events decides; without it (a journal built by hand) ends come
    // before starts: a turn that starts exactly when the previous one ended does not overlap.
    let mut events: Vec<(Instant, u64, i8)> = Vec::new();
    for a in arrivals {
        let start_order = if a.tick == 0 { u64::MAX } else { a.tick };
        events.push((a.at, start_order, 1));
        if let Some(end) = a.finished_at {
            events.push((end.max(a.at), a.finish_tick.unwrap_or(0), -1));
        }
    }
    events.sort();
    let (mut current, mut max) = (0i64, 0i64);
    for (_, _, delta) in events {
        current += i64::from(delta);
        max = max.max(current);
    }
    usize::try_from(max).unwrap_or(0)
}

fn max_in_window(times: impl IntoIterator<Item = Instant>, window: Duration) -> usize {
    let mut times: Vec<Instant> = times.into_iter().collect();
    times.sort();
    let mut max = 0;
    let mut end = 0;
    for (start, &t) in times.iter().enumerate() {
        end = end.max(start);
        while end < times.len() && times[end] < t + window {
            end += 1;
        }
        max = max.max(end - start);
    }
    max
}

fn early_arrivals(mut arrivals: Vec<&Arrival>, grace: Duration) -> Vec<&Arrival> {
    arrivals.sort_by_key(|a| (a.at, a.seq));
    let times: Vec<Instant> = arrivals.iter().map(|a| a.at).collect();
    let mut early = vec![false; arrivals.len()];
    for hinted in &arrivals {
        let Some(allowed) = hinted.retry_allowed_at() else {
            continue;
        };
        let sent = hinted.responded_at.unwrap_or(hinted.at);
        let from = times.partition_point(|&t| t <= sent + grace);
        let until = times.partition_point(|&t| t < allowed);
        for flag in early.iter_mut().take(until).skip(from) {
            *flag = true;
        }
    }
    arrivals
        .into_iter()
        .zip(early)
        .filter_map(|(a, early)| early.then_some(a))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn window_counts_are_half_open() {
        let t0 = Instant::now();
        let times = [0, 100, 200, 300].map(|n| t0 + ms(n));
        assert_eq!(max_in_window(times, ms(100)), 1);
        assert_eq!(max_in_window(times, ms(101)), 2);
        assert_eq!(max_in_window(times, ms(1000)), 4);
        assert_eq!(max_in_window([], ms(1)), 0);
    }

    #[test]
    fn back_to_back_turns_do_not_overlap_but_unfinished_ones_do() {
        let t0 = Instant::now();
        let a = Arrival::new(0, t0).with_finished_at(t0 + ms(10));
        let b = Arrival::new(1, t0 + ms(10)).with_finished_at(t0 + ms(20));
        assert_eq!(max_overlap([&a, &b]), 1);
        let c = Arrival::new(2, t0 + ms(5));
        assert_eq!(max_overlap([&a, &b, &c]), 2);
    }

    proptest! {
        // The sweep agrees with a brute force count at every start instant.
        #[test]
        fn overlap_matches_brute_force(spans in prop::collection::vec((0u64..100, 0u64..30), 0..30)) {
            let t0 = Instant::now();
            let arrivals: Vec<Arrival> = spans.iter().enumerate()
                .map(|(i, &(start, len))| Arrival::new(i as u64, t0 + ms(start)).with_finished_at(t0 + ms(start + len)))
                .collect();
            let brute = arrivals.iter().map(|probe| {
                arrivals.iter().filter(|a| a.at <= probe.at && probe.at < a.finished_at.unwrap()).count()
            }).max().unwrap_or(0);
            prop_assert_eq!(max_overlap(&arrivals), brute);
        }

        #[test]
        fn window_matches_brute_force(starts in prop::collection::vec(0u64..1000, 0..40), w in 1u64..300) {
            let t0 = Instant::now();
            let times: Vec<Instant> = starts.iter().map(|&s| t0 + ms(s)).collect();
            let brute = times.iter().map(|&t| times.iter().filter(|&&u| t <= u && u < t + ms(w)).count()).max().unwrap_or(0);
            prop_assert_eq!(max_in_window(times.clone(), ms(w)), brute);
        }
    }
}
