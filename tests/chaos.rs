//! The chaos soak: 10,000 logical calls at concurrency 64 through the full `towline::Stack`
//! over a real hyper-util client, against the mock provider on loopback misbehaving in every
//! way at once, then the invariants checked against the provider's own journal.
//!
//! The script (built below, in the spirit of `Scenario::mixed()`):
//!
//! - eight ordinary keys, each behind a server-side token bucket (200/s, burst 20, hints in
//!   `retry-after-ms`), with 5 % random 429s announcing a 100 ms `retry-after-ms`, 5 % random
//!   500s, 5 % of streams broken after two chunks by an in-band `overloaded` event, an outage
//!   (503 to everyone) from 1.5 s to 2.0 s after the start, and kimi-free-api's session rule
//!   (a second request of a session still being answered is refused);
//! - a ninth ordinary key for which the client configures its own rate (20/s, burst 2), well
//!   under its server-side bucket;
//! - a kimi-free-api key behind a tight bucket (30/s, burst 3) announcing whole seconds;
//! - a key whose quota is gone (Moonshot), a revoked key (Anthropic), a key whose every
//!   request is refused by the content filter (MiMo).
//!
//! Half of the calls belong to one of eight sessions per key; a third ask for a stream, which
//! is read to its end. Every attempt that leaves the client is tagged (`x-chaos-attempt`), and
//! the journal records the tag, so that each arrival is matched to when the client sent it.
//!
//! Invariants (each a separate assertion below):
//!
//! 1. every call is accounted for exactly once: a success (body read to its end) or a typed
//!    error of a class that the call's key can produce;
//! 2. every attempt that left the client arrived at the provider, and nothing else arrived;
//! 3. no arrival before an announced hint: an arrival of a key inside the hint window of an
//!    earlier answer to that key is allowed only if the client had sent it before it had
//!    received that answer (plus 50 ms to read and classify the rest of it);
//! 4. the configured per-key rate held: in any window `w` the rate-configured key arrived at
//!    most `burst + rate × (w + 50 ms)` times (50 ms: loopback delivery jitter between the
//!    throttle's admission and the arrival);
//! 5. no session overlap: at most one request of a session in flight at any instant, and the
//!    provider never had to refuse one as busy;
//! 6. quota, authentication and content-filter errors were sent once per logical call (no
//!    call of those keys arrived twice);
//! 7. the retry budget held: retries ≤ 0.2 × calls + floor × ttl × ⌈(t + 1) / ttl⌉ (the retry
//!    crate's bound, `RetryBudget`), so arrivals ≤ calls + that;
//! 8. at the end nothing is left in the layers: no live session or session waiter, no throttle
//!    waiter, no breaker probe in flight, no session in flight at the provider.
//!
//! Why these settings: the breaker opens for 300 ms (not 5 s) so that the half-second outage
//! costs a second of calls, not five; the retry backoff starts at 25 ms and the deadline is
//! 10 s so that calls finish in a debug build within the test's time budget; the ordinary keys
//! have no client-side rate, so their pace is learned from the provider (adaptive pacing, with
//! its defaults), the path most users take; eight workers start on the kimi-free-api key so
//! that its tight bucket sees more demand than it allows. The run takes about 25 s in a debug
//! build on two cores.
#![cfg(all(feature = "stack", feature = "mock"))]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use towline::breaker::BreakerLayer;
use towline::core::KeyHash;
use towline::event::{Event, Observer};
use towline::mock::{
    Arrival, Cause, Dialect, ErrorSpec, Fault, HintForm, MockProvider, RateLimit, RetryAfter,
    Scenario, Script,
};
use towline::normalize::NormalizeLayer;
use towline::retry::RetryLayer;
use towline::session::SessionLayer;
use towline::throttle::{Quota, ThrottleLayer};
use towline::trace::TraceLayer;
use towline::{Error, ErrorKind, ReplayBody, Stack};

const CALLS: usize = 10_000;
const CONCURRENCY: usize = 64;

const ORDINARY: [&str; 8] = [
    "sk-chaos-0",
    "sk-chaos-1",
    "sk-chaos-2",
    "sk-chaos-3",
    "sk-chaos-4",
    "sk-chaos-5",
    "sk-chaos-6",
    "sk-chaos-7",
];
const PACED: &str = "sk-chaos-paced";
const PACED_RATE: f64 = 60.0;
const PACED_BURST: u32 = 3;
const KIMI: &str = "sk-chaos-kimi";
/// The kimi-free-api key's server-side bucket: tighter than what its eight dedicated workers
/// ask for, so the client runs into it, must obey its computed hints and learn its pace.
const KIMI_RATE: f64 = 40.0;
/// How many workers start on the kimi-free-api key's calls.
const KIMI_WORKERS: usize = 8;
const QUOTA: &str = "sk-chaos-quota";
const REVOKED: &str = "sk-chaos-revoked";
const FILTERED: &str = "sk-chaos-filtered";

/// The retry budget: the default ratio and floor, over the default window.
const BUDGET_RATIO: f64 = 0.2;
const BUDGET_FLOOR: u64 = 10;
const BUDGET_TTL_S: u64 = 10;
const MAX_RETRIES: u32 = 3;

/// How long after receiving an answer's head the client may still send requests that do not
/// know its hint: the time to read the rest of that answer, classify it and teach the throttle.
const LEARN_GRACE: Duration = Duration::from_millis(50);
/// Delivery jitter between the throttle's admission and the provider's arrival.
const DELIVERY_JITTER: Duration = Duration::from_millis(50);

/// The keys, in the order calls use them (call `i` uses key `i mod len`).
fn keys() -> Vec<&'static str> {
    let mut keys = ORDINARY.to_vec();
    keys.extend([PACED, KIMI, QUOTA, REVOKED, FILTERED]);
    keys
}

fn scenario() -> Scenario {
    let ms = Duration::from_millis;
    let ordinary = Script::new(Dialect::OpenAi)
        .latency(ms(1))
        .session_busy(true)
        .rate_limit(RateLimit::token_bucket(200.0, 20).hint_form(HintForm::Millis))
        .faults([
            Fault::outage(ms(1500), ms(2000)),
            Fault::rate_limited(RetryAfter::millis(100).form(HintForm::Millis)).probability(0.05),
            Fault::server_error().probability(0.05),
            Fault::break_stream(2, ErrorSpec::new(ErrorKind::Overloaded)).probability(0.05),
        ]);
    // The ordinary keys (and the paced one) get the default script, each key its own bucket.
    Scenario::new()
        .seed(12)
        .default_script(ordinary)
        .key(
            KIMI,
            Script::new(Dialect::KimiFreeApi)
                .latency(ms(1))
                .session_busy(true)
                .rate_limit(RateLimit::token_bucket(KIMI_RATE, 4).hint_form(HintForm::Millis))
                .fault(Fault::server_error().probability(0.05)),
        )
        .key(
            QUOTA,
            Script::new(Dialect::Moonshot).fault(Fault::quota_exhausted()),
        )
        .key(
            REVOKED,
            Script::new(Dialect::Anthropic).fault(Fault::auth_failure()),
        )
        .key(
            FILTERED,
            Script::new(Dialect::Mimo).fault(Fault::content_filtered()),
        )
}

/// When each attempt left the client and when its answer's head came back, by attempt tag.
#[derive(Default)]
struct Wire {
    next: AtomicU64,
    sent: Mutex<HashMap<u64, (Instant, Option<Instant>)>>,
}

impl Wire {
    fn sent_at(&self, tag: u64) -> Option<Instant> {
        self.sent.lock().unwrap().get(&tag).map(|t| t.0)
    }

    fn received_at(&self, tag: u64) -> Option<Instant> {
        self.sent.lock().unwrap().get(&tag).and_then(|t| t.1)
    }

    fn attempts(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }
}

fn tag(arrival: &Arrival) -> u64 {
    arrival.headers["x-chaos-attempt"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// What the layers decided, counted from their events.
#[derive(Default)]
struct Decisions {
    retries: AtomicUsize,
    key_pauses: AtomicUsize,
    throttle_waits: AtomicUsize,
    breaker_rejections: AtomicUsize,
    breaker_transitions: AtomicUsize,
    session_waits: AtomicUsize,
}

impl Decisions {
    fn observe(&self, event: &Event) {
        let counter = match event {
            Event::RetryScheduled { .. } => &self.retries,
            Event::KeyPaused { .. } => &self.key_pauses,
            Event::ThrottleWaited { .. } => &self.throttle_waits,
            Event::BreakerRejected { .. } => &self.breaker_rejections,
            Event::BreakerTransition { .. } => &self.breaker_transitions,
            Event::SessionWaited { .. } => &self.session_waits,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn request(url: &str, i: usize, key: &str) -> Request<Full<Bytes>> {
    let stream = i.is_multiple_of(3);
    let body = format!(
        r#"{{"model":"mock-model","messages":[{{"role":"user","content":"chaos {i}"}}],"stream":{stream}}}"#
    );
    let mut request = Request::post(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("x-call-id", i.to_string())
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    if i.is_multiple_of(2) {
        let session = format!("{key}/s{}", (i / keys().len()) % 8);
        request
            .headers_mut()
            .insert("x-session-id", HeaderValue::try_from(session).unwrap());
    }
    request
}

/// How a logical call ended: a success, or the class of its error.
type Outcome = Result<(), ErrorKind>;

/// One logical call: the response, its body read to the end.
async fn call<S, B>(svc: S, request: Request<Full<Bytes>>) -> Outcome
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>, Error = Error>,
    B: http_body::Body,
    B::Error: Into<Error>,
{
    let response = svc.oneshot(request).await.map_err(|e| e.kind())?;
    let mut body = std::pin::pin!(response.into_body());
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| e.into().kind())?;
    }
    Ok(())
}

/// The classes a call of `key` may end with. Any call may be cut short by a layer's own
/// decision (the breaker during the outage, the session queue, the throttle's maximum wait,
/// the retry budget or deadline).
fn allowed(key: &str, kind: ErrorKind) -> bool {
    let local = kind.is_local();
    match key {
        QUOTA => local || kind == ErrorKind::QuotaExhausted,
        REVOKED => local || kind == ErrorKind::Authentication,
        FILTERED => local || kind == ErrorKind::ContentFiltered,
        _ => {
            local
                || matches!(
                    kind,
                    ErrorKind::RateLimited
                        | ErrorKind::Server
                        | ErrorKind::Overloaded
                        | ErrorKind::StreamInterrupted
                )
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_soak_full_stack_against_the_mixed_script() {
    let mock = MockProvider::builder()
        .scenario(scenario())
        .record_header("x-chaos-attempt")
        .record_header("x-call-id")
        .start()
        .await
        .unwrap();
    let url = mock.url("/chat/completions");

    // The client: hyper-util, each attempt tagged and timed on its way out and back.
    let wire = Arc::new(Wire::default());
    let hyper = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build_http::<ReplayBody<Full<Bytes>>>();
    let client = {
        let wire = wire.clone();
        service_fn(move |mut req: Request<ReplayBody<Full<Bytes>>>| {
            let tag = wire.next.fetch_add(1, Ordering::SeqCst);
            req.headers_mut()
                .insert("x-chaos-attempt", HeaderValue::from(tag));
            wire.sent
                .lock()
                .unwrap()
                .insert(tag, (Instant::now(), None));
            let answer = hyper.request(req);
            let wire = wire.clone();
            async move {
                let answer = answer.await;
                if let Some(times) = wire.sent.lock().unwrap().get_mut(&tag) {
                    times.1 = Some(Instant::now());
                }
                answer
            }
        })
    };

    // The stack, every layer on.
    let session = SessionLayer::new();
    let throttle = ThrottleLayer::builder()
        .key_quota(
            KeyHash::of(PACED.as_bytes()),
            Quota::new(PACED_RATE, PACED_BURST),
        )
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let breaker = BreakerLayer::builder()
        .open_duration(Duration::from_millis(300))
        .max_open_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    let (sessions, breakers) = (session.monitor(), breaker.handle());
    let svc = Stack::new()
        .trace(TraceLayer::builder().metrics(false).build().unwrap())
        .session(session)
        .retry(
            RetryLayer::builder()
                .max_retries(MAX_RETRIES)
                .budget_ratio(BUDGET_RATIO)
                .backoff_base(Duration::from_millis(25))
                .backoff_max(Duration::from_millis(500))
                .deadline(Duration::from_secs(10))
                .seed(12)
                .build()
                .unwrap(),
        )
        .throttle(throttle.clone())
        .breaker(breaker)
        .attempt_timeout(Duration::from_secs(5))
        .unwrap()
        .normalize(
            NormalizeLayer::builder()
                .inspect_ok_json(true)
                .build()
                .unwrap(),
        )
        .service(client);

    // The load: 64 workers take the next call until 10,000 are done.
    let decisions = Arc::new(Decisions::default());
    let observer = {
        let decisions = decisions.clone();
        Observer::new(move |e| decisions.observe(e))
    };
    let outcomes: Arc<Mutex<Vec<Option<Outcome>>>> = Arc::new(Mutex::new(vec![None; CALLS]));
    // Eight workers start on the kimi-free-api key's calls, so that its tight bucket sees
    // more demand than it allows; the others take the rest. A worker whose queue is empty
    // helps with the other one.
    let keys = keys();
    let (kimi_calls, other_calls): (VecDeque<usize>, VecDeque<usize>) =
        (0..CALLS).partition(|i| keys[i % keys.len()] == KIMI);
    let queues = Arc::new([Mutex::new(kimi_calls), Mutex::new(other_calls)]);
    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|w| {
            let (svc, url, keys) = (svc.clone(), url.clone(), keys.clone());
            let (observer, outcomes, queues) = (observer.clone(), outcomes.clone(), queues.clone());
            let mine = usize::from(w >= KIMI_WORKERS);
            tokio::spawn(async move {
                loop {
                    let next = |q: usize| queues[q].lock().unwrap().pop_front();
                    let Some(i) = next(mine).or_else(|| next(1 - mine)) else {
                        break;
                    };
                    let mut req = request(&url, i, keys[i % keys.len()]);
                    req.extensions_mut().insert(observer.clone());
                    let outcome = call(svc.clone(), req).await;
                    let previous = outcomes.lock().unwrap()[i].replace(outcome);
                    assert!(previous.is_none(), "call {i} ended twice");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    drop(svc);

    // 1. Every call accounted for exactly once, as a success or a typed error its key can
    // produce.
    let outcomes = outcomes.lock().unwrap().clone();
    let mut succeeded = 0;
    let mut failed: BTreeMap<ErrorKind, usize> = BTreeMap::new();
    let mut ordinary_calls = 0;
    let mut ordinary_ok = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        let key = keys[i % keys.len()];
        let outcome = outcome.unwrap_or_else(|| panic!("call {i} was never accounted for"));
        let ordinary = ORDINARY.contains(&key) || key == PACED;
        ordinary_calls += usize::from(ordinary);
        match outcome {
            Ok(()) => {
                assert!(
                    ![QUOTA, REVOKED, FILTERED].contains(&key),
                    "call {i} of {key} cannot succeed"
                );
                succeeded += 1;
                ordinary_ok += usize::from(ordinary);
            }
            Err(kind) => {
                assert!(allowed(key, kind), "call {i} of {key} ended with {kind}");
                *failed.entry(kind).or_default() += 1;
            }
        }
    }
    assert_eq!(succeeded + failed.values().sum::<usize>(), CALLS);
    // The stack makes the ordinary keys dependable despite 15 % injected failures.
    assert!(
        ordinary_ok * 100 >= ordinary_calls * 80,
        "only {ordinary_ok} of {ordinary_calls} ordinary calls succeeded: {failed:?}"
    );

    // 2. Every attempt that left the client arrived, and nothing else did.
    let journal = mock.journal();
    let arrivals = journal.arrivals();
    assert_eq!(
        arrivals.len() as u64,
        wire.attempts(),
        "attempts sent = arrivals"
    );
    let mut tags: Vec<u64> = arrivals.iter().map(tag).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags.len(), arrivals.len(), "each attempt arrived once");

    // 3. No arrival before an announced hint, unless it was sent before the client could know.
    let mut by_key: BTreeMap<KeyHash, Vec<&Arrival>> = BTreeMap::new();
    for a in arrivals {
        by_key.entry(a.key.unwrap()).or_default().push(a);
    }
    let (mut hinted, mut in_flight_when_hinted, mut early) = (0, 0, Vec::new());
    for list in by_key.values() {
        for h in list
            .iter()
            .filter(|h| h.hint.is_some() && h.responded_at.is_some())
        {
            hinted += 1;
            let (sent, allowed_at) = (h.responded_at.unwrap(), h.retry_allowed_at().unwrap());
            let known = wire
                .received_at(tag(h))
                .expect("a hinted answer was received")
                + LEARN_GRACE;
            for a in list.iter().filter(|a| a.at > sent && a.at < allowed_at) {
                if wire.sent_at(tag(a)).unwrap() <= known {
                    in_flight_when_hinted += 1;
                } else {
                    early.push((h.seq, a.seq, allowed_at - a.at));
                }
            }
        }
    }
    assert!(hinted > 100, "the script announced hints ({hinted})");
    // The journal's own count with a 5 ms grace, for the record: each of these was shown above
    // to have left the client before it could know of the hint.
    let journal_early = journal
        .early_arrivals_any_key(Duration::from_millis(5))
        .len();
    assert!(
        early.is_empty(),
        "arrivals before the hint (hinted seq, early seq, how early): {early:?}"
    );

    // 4. The configured rate held for the key that has one.
    for window in [
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(5),
    ] {
        let most = journal.max_in_window(PACED, window);
        let bound = f64::from(PACED_BURST) + PACED_RATE * (window + DELIVERY_JITTER).as_secs_f64();
        assert!(
            most as f64 <= bound,
            "{most} arrivals of the paced key within {window:?} (bound {bound})"
        );
    }

    // 5. No session overlap, and the provider never had to refuse a busy session.
    assert_eq!(
        journal.max_session_concurrency(),
        1,
        "one request per session at a time"
    );
    let busy = arrivals
        .iter()
        .filter(|a| a.cause == Cause::SessionBusy)
        .count();
    assert_eq!(busy, 0, "the provider refused a busy session");

    // 6. Quota, authentication and content-filter errors were sent once per logical call.
    for key in [QUOTA, REVOKED, FILTERED] {
        let mut per_call: BTreeMap<&str, usize> = BTreeMap::new();
        for a in journal.for_key(key) {
            *per_call
                .entry(a.headers["x-call-id"].to_str().unwrap())
                .or_default() += 1;
        }
        assert!(!per_call.is_empty(), "{key} was called");
        let resent: Vec<_> = per_call.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            resent.is_empty(),
            "{key}: calls sent more than once: {resent:?}"
        );
    }

    // 7. The retry budget held.
    let t = elapsed.as_secs();
    let floor_allowance = BUDGET_FLOOR * BUDGET_TTL_S * (t + 1).div_ceil(BUDGET_TTL_S);
    let retry_bound = BUDGET_RATIO * CALLS as f64 + floor_allowance as f64;
    let retries = decisions.retries.load(Ordering::SeqCst);
    assert!(
        retries as f64 <= retry_bound,
        "{retries} retries > {retry_bound}"
    );
    assert!(
        arrivals.len() as f64 <= CALLS as f64 + retry_bound,
        "{} arrivals > {CALLS} + {retry_bound}",
        arrivals.len()
    );

    // 8. Nothing left behind.
    assert!(sessions.snapshot().is_idle(), "{:?}", sessions.snapshot());
    assert_eq!(throttle.stats().waiters, 0, "a throttle waiter is left");
    assert_eq!(breakers.probes_in_flight(), 0, "a breaker probe is left");
    assert_eq!(
        mock.sessions_in_flight(),
        0,
        "a session is still in flight at the provider"
    );

    let mut causes: BTreeMap<String, usize> = BTreeMap::new();
    for a in arrivals {
        *causes.entry(format!("{:?}", a.cause)).or_default() += 1;
    }
    let injected: usize = arrivals
        .iter()
        .filter(|a| matches!(a.cause, Cause::Fault(_) | Cause::RateLimit))
        .count();
    let bucket_refusals = arrivals
        .iter()
        .filter(|a| a.cause == Cause::RateLimit)
        .count();
    assert!(
        bucket_refusals > 0,
        "the server-side buckets were never hit"
    );
    let count = |c: &AtomicUsize| c.load(Ordering::SeqCst);
    eprintln!(
        "chaos: {CALLS} calls in {elapsed:.1?} at concurrency {CONCURRENCY}: \
         {succeeded} succeeded ({ordinary_ok} of the {ordinary_calls} calls of ordinary keys), \
         failed {failed:?}; {} attempts ({retries} retries, bound \
         {retry_bound}); {injected} faults injected (by cause {causes:?}, by status {:?}); \
         {hinted} hints announced, {in_flight_when_hinted} arrivals already in flight when one \
         was ({journal_early} past a 5 ms grace); {} key pauses, {} throttle waits, {} session \
         waits, {} breaker rejections, {} breaker transitions",
        arrivals.len(),
        journal.count_by_status(),
        count(&decisions.key_pauses),
        count(&decisions.throttle_waits),
        count(&decisions.session_waits),
        count(&decisions.breaker_rejections),
        count(&decisions.breaker_transitions),
    );
    mock.shutdown().await;
}
