use std::sync::atomic::AtomicUsize;
use std::task::Wake;

use http::StatusCode;
use proptest::prelude::*;
use towline_core::{
    Clock, FakeClock, HintSource, KeyHash, RateLimitSnapshot, RateLimitWindow, RetryHint,
};

use super::*;

const MS: Duration = Duration::from_millis(1);

struct Fixture {
    clock: FakeClock,
    store: MemoryStore<KeyHash>,
}

fn fixture(adaptive: Option<Adaptive>) -> Fixture {
    let clock = FakeClock::new();
    let store = MemoryStore::with_settings(clock.now(), adaptive, Unit::Requests);
    Fixture { clock, store }
}

fn key(n: u64) -> KeyHash {
    KeyHash::from(n)
}

impl Fixture {
    fn ask(&self, quota: Option<Quota>) -> Ask {
        Ask::new(self.clock.now(), 1).with_quota(quota)
    }

    fn admit(
        &self,
        k: Option<&KeyHash>,
        ask: &Ask,
        ticket: Option<MemoryTicket>,
    ) -> Admission<MemoryTicket> {
        self.store.admit(k, ask, ticket).into_inner()
    }

    fn learn(
        &self,
        k: Option<&KeyHash>,
        signal: Signal,
        snapshot: Option<RateLimitSnapshot>,
    ) -> Learned {
        let now = self.clock.now();
        let lesson = Lesson {
            now,
            sent_at: now,
            signal,
            snapshot,
        };
        self.store.learn(k, None, lesson).into_inner()
    }
}

fn is_go(a: &Admission<MemoryTicket>) -> bool {
    matches!(a, Admission::Go(_))
}

fn ticket(a: Admission<MemoryTicket>) -> (Option<Instant>, MemoryTicket) {
    match a {
        Admission::Wait { until, ticket } => (until, ticket),
        other => panic!("expected a wait, got {other:?}"),
    }
}

fn rejection(a: Admission<MemoryTicket>) -> Error {
    match a {
        Admission::Reject(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Counts wake-ups.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

fn rate_limited(hint: Duration) -> Signal {
    Signal::RateLimited { hint: Some(hint) }
}

#[test]
fn calls_without_a_key_share_one_bucket_apart_from_keyed_ones() {
    let f = fixture(None);
    let ask = f.ask(Some(Quota::new(1.0, 1))).reject_only(true);
    assert!(is_go(&f.admit(None, &ask, None)));
    assert!(!is_go(&f.admit(None, &ask, None)));
    assert!(is_go(&f.admit(Some(&key(1)), &ask, None)));
    assert!(is_go(&f.admit(Some(&key(2)), &ask, None)));
    assert_eq!(f.store.stats().live_keys, 2);
}

#[test]
fn waiters_are_served_in_arrival_order_one_per_interval() {
    let f = fixture(None);
    let k = key(7);
    let ask = f.ask(Some(Quota::new(10.0, 1)));
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    let (until1, t1) = ticket(f.admit(Some(&k), &ask, None));
    let (until2, t2) = ticket(f.admit(Some(&k), &ask, None));
    assert_eq!(
        until1,
        Some(f.clock.now() + 100 * MS),
        "the head knows its exact time"
    );
    assert_eq!(
        until2, None,
        "the second waits for its turn, not for a timer"
    );
    assert_eq!(f.store.stats().waiters, 2);

    // At 100 ms the second waiter cannot overtake the first.
    f.clock.advance(100 * MS);
    let (_, t2) = ticket(f.admit(Some(&k), &ask.at(f.clock.now()), Some(t2)));
    // A newcomer cannot overtake either, although the bucket has a token.
    let (_, t3) = ticket(f.admit(Some(&k), &ask.at(f.clock.now()), None));
    let (counter, waker) = counting_waker();
    t2.register(&waker);
    assert!(is_go(&f.admit(Some(&k), &ask.at(f.clock.now()), Some(t1))));
    assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the new head is woken");
    let (until, t2) = ticket(f.admit(Some(&k), &ask.at(f.clock.now()), Some(t2)));
    assert_eq!(until, Some(f.clock.now() + 100 * MS));
    f.clock.advance(100 * MS);
    assert!(is_go(&f.admit(Some(&k), &ask.at(f.clock.now()), Some(t2))));
    f.clock.advance(100 * MS);
    assert!(is_go(&f.admit(Some(&k), &ask.at(f.clock.now()), Some(t3))));
    assert_eq!(f.store.stats().waiters, 0);
}

#[test]
fn a_dropped_waiter_gives_back_its_place_and_consumes_nothing() {
    let f = fixture(None);
    let k = key(3);
    let ask = f.ask(Some(Quota::new(10.0, 1)));
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    let (_, head) = ticket(f.admit(Some(&k), &ask, None));
    let (_, second) = ticket(f.admit(Some(&k), &ask, None));
    let (counter, waker) = counting_waker();
    second.register(&waker);
    drop(head);
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "the next in line is told"
    );
    assert_eq!(f.store.stats().waiters, 1);
    // The second is now head and gets the slot the first would have had.
    let (until, second) = ticket(f.admit(Some(&k), &ask, Some(second)));
    assert_eq!(until, Some(f.clock.now() + 100 * MS));
    drop(second);
    assert_eq!(f.store.stats().waiters, 0);
    // Nothing was consumed: at 100 ms exactly one token is back.
    f.clock.advance(100 * MS);
    let now = ask.at(f.clock.now()).reject_only(true);
    assert!(is_go(&f.admit(Some(&k), &now, None)));
    assert!(!is_go(&f.admit(Some(&k), &now, None)));
}

#[test]
fn a_wait_beyond_the_deadline_fails_at_once_with_when_to_retry() {
    let f = fixture(None);
    let k = key(1);
    let ask = f
        .ask(Some(Quota::new(2.0, 1)))
        .with_deadline(Some(f.clock.now() + 700 * MS));
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    let (_, _first) = ticket(f.admit(Some(&k), &ask, None)); // at 500 ms
    let err = rejection(f.admit(Some(&k), &ask, None)); // would be 1000 ms
    match err {
        Error::Throttled(t) => {
            assert_eq!(t.reason, ThrottleReason::WaitTooLong);
            assert_eq!(t.retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("{other:?}"),
    }
    let reject_only = f.ask(Some(Quota::new(2.0, 1))).reject_only(true);
    match rejection(f.admit(Some(&key(2)), &reject_only, None).then_again(
        &f,
        &key(2),
        &reject_only,
    )) {
        Error::Throttled(t) => assert_eq!(t.reason, ThrottleReason::RateExceeded),
        other => panic!("{other:?}"),
    }
}

trait ThenAgain {
    fn then_again(self, f: &Fixture, k: &KeyHash, ask: &Ask) -> Admission<MemoryTicket>;
}

impl ThenAgain for Admission<MemoryTicket> {
    fn then_again(self, f: &Fixture, k: &KeyHash, ask: &Ask) -> Admission<MemoryTicket> {
        assert!(is_go(&self));
        f.admit(Some(k), ask, None)
    }
}

#[test]
fn a_hint_pauses_only_its_key_and_the_queue_leaves_one_at_a_time() {
    let f = fixture(None);
    let (k, other) = (key(1), key(2));
    let ask = f.ask(Some(Quota::new(10.0, 5)));
    let learned = f.learn(Some(&k), rate_limited(Duration::from_secs(2)), None);
    assert_eq!(
        learned.paused,
        Some((Duration::from_secs(2), ErrorKind::RateLimited))
    );
    assert!(
        is_go(&f.admit(Some(&other), &ask, None)),
        "other keys are not paused"
    );
    let (until, t1) = ticket(f.admit(Some(&k), &ask, None));
    assert_eq!(until, Some(f.clock.now() + Duration::from_secs(2)));
    let (_, t2) = ticket(f.admit(Some(&k), &ask, None));
    f.clock.advance(Duration::from_secs(2));
    let ask = ask.at(f.clock.now());
    assert!(is_go(&f.admit(Some(&k), &ask, Some(t1))));
    // Although the burst is 5, the pause emptied the bucket: the next waits an interval.
    let (until, _t2) = ticket(f.admit(Some(&k), &ask, Some(t2)));
    assert_eq!(until, Some(f.clock.now() + 100 * MS));
}

#[test]
fn a_pause_longer_than_the_deadline_says_so() {
    let f = fixture(None);
    let k = key(1);
    f.learn(Some(&k), rate_limited(Duration::from_secs(60)), None);
    let ask = f
        .ask(None)
        .with_deadline(Some(f.clock.now() + Duration::from_secs(5)));
    match rejection(f.admit(Some(&k), &ask, None)) {
        Error::Throttled(t) => {
            assert_eq!(t.reason, ThrottleReason::PausedByProvider);
            assert_eq!(t.retry_after, Some(Duration::from_secs(60)));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pause_wakes_every_waiter_to_recheck_its_deadline() {
    let f = fixture(None);
    let k = key(1);
    let ask = f
        .ask(Some(Quota::new(1.0, 1)))
        .with_deadline(Some(f.clock.now() + Duration::from_secs(10)));
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    let (_, t1) = ticket(f.admit(Some(&k), &ask, None));
    let (_, t2) = ticket(f.admit(Some(&k), &ask, None));
    let (counter, waker) = counting_waker();
    t1.register(&waker);
    t2.register(&waker);
    f.learn(Some(&k), rate_limited(Duration::from_secs(30)), None);
    assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    assert!(
        matches!(rejection(f.admit(Some(&k), &ask, Some(t1))), Error::Throttled(t) if t.reason == ThrottleReason::PausedByProvider)
    );
    assert!(matches!(
        rejection(f.admit(Some(&k), &ask, Some(t2))),
        Error::Throttled(_)
    ));
    assert_eq!(f.store.stats().waiters, 0);
}

#[test]
fn a_quota_block_fails_calls_locally_with_the_providers_error() {
    let f = fixture(None);
    let k = key(9);
    let api = ApiError::new(ErrorKind::QuotaExhausted, StatusCode::TOO_MANY_REQUESTS)
        .with_provider_type("insufficient_quota")
        .with_retry_hint(RetryHint::new(
            Duration::from_secs(600),
            HintSource::RetryAfter,
        ));
    let learned = f.learn(
        Some(&k),
        Signal::QuotaExhausted {
            reset: Duration::from_secs(600),
            error: Box::new(api),
        },
        None,
    );
    assert_eq!(
        learned.paused,
        Some((Duration::from_secs(600), ErrorKind::QuotaExhausted))
    );
    f.clock.advance(Duration::from_secs(100));
    let err = rejection(f.admit(Some(&k), &f.ask(None), None));
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    assert_eq!(
        err.api().and_then(ApiError::provider_type),
        Some("insufficient_quota")
    );
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs(500)),
        "the hint counts down"
    );
    assert!(is_go(&f.admit(Some(&key(10)), &f.ask(None), None)));
    f.clock.advance(Duration::from_secs(500));
    assert!(
        is_go(&f.admit(Some(&k), &f.ask(None), None)),
        "the block ends at the reset"
    );
}

fn window(limit: Option<u64>, remaining: u64, reset: Duration) -> RateLimitSnapshot {
    RateLimitSnapshot {
        requests: RateLimitWindow {
            limit,
            remaining: Some(remaining),
            reset: Some(reset),
        },
        tokens: RateLimitWindow::default(),
    }
}

#[test]
fn remaining_zero_holds_the_key_until_the_reset() {
    let f = fixture(None);
    let k = key(4);
    let learned = f.learn(
        Some(&k),
        Signal::Success,
        Some(window(None, 0, Duration::from_secs(3))),
    );
    assert_eq!(
        learned.paused,
        Some((Duration::from_secs(3), ErrorKind::Unknown))
    );
    let (until, t) = ticket(f.admit(Some(&k), &f.ask(None), None));
    assert_eq!(until, Some(f.clock.now() + Duration::from_secs(3)));
    f.clock.advance(Duration::from_secs(3));
    assert!(is_go(&f.admit(Some(&k), &f.ask(None), Some(t))));
}

#[test]
fn headers_give_the_rate_exactly_and_cap_the_bucket() {
    let f = fixture(None);
    let k = key(5);
    // OpenAI style: 60 a minute, 58 left, full again in 2 s: one per second.
    let learned = f.learn(
        Some(&k),
        Signal::Success,
        Some(window(Some(60), 58, Duration::from_secs(2))),
    );
    assert_eq!(learned.rate, Some(1.0));
    assert_eq!(f.store.learned_rate(Some(&k)), Some(1.0));
    // Low remaining slows the key: 3 left means at most 3 at once, then one a second.
    f.learn(
        Some(&k),
        Signal::Success,
        Some(window(Some(60), 3, Duration::from_secs(57))),
    );
    let ask = f.ask(None).reject_only(true);
    for _ in 0..3 {
        assert!(is_go(&f.admit(Some(&k), &ask, None)));
    }
    assert!(!is_go(&f.admit(Some(&k), &ask, None)));
}

#[test]
fn a_rate_limited_answer_cuts_the_rate_actually_sent() {
    let f = fixture(Some(Adaptive::default()));
    let k = key(6);
    let ask = f.ask(None);
    // Twenty calls in the last second, unpaced.
    for _ in 0..20 {
        assert!(is_go(&f.admit(Some(&k), &ask, None)));
        f.clock.advance(50 * MS);
    }
    let learned = f.learn(Some(&k), Signal::RateLimited { hint: None }, None);
    let rate = learned.rate.expect("a cut is reported");
    assert!((rate - 0.85 * 20.0).abs() < 1.5, "{rate}");
    // The key is now paced at that rate, one at a time.
    let ask = f.ask(None).reject_only(true);
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    assert!(!is_go(&f.admit(Some(&k), &ask, None)));
}

#[test]
fn idle_keys_are_evicted_by_ordinary_traffic_and_the_table_shrinks() {
    let f = fixture(Some(Adaptive::default()));
    let ask = f.ask(Some(Quota::new(100.0, 1)));
    for n in 0..50_000 {
        assert!(is_go(&f.admit(Some(&key(n)), &ask, None)));
    }
    assert_eq!(f.store.stats().live_keys, 50_000);
    let full = f.store.table_bytes();
    // A key that was paused stays until its pause ends.
    f.learn(Some(&key(0)), rate_limited(Duration::from_secs(30)), None);
    f.clock.advance(Duration::from_secs(3));
    // One key's traffic for a couple of seconds sweeps every shard.
    for _ in 0..(2 * SHARDS) {
        f.clock.advance(40 * MS);
        f.admit(Some(&key(u64::MAX)), &f.ask(None), None);
    }
    let stats = f.store.stats();
    assert_eq!(stats.live_keys, 2, "{stats:?}");
    assert!(
        f.store.table_bytes() * 20 < full,
        "{} vs {full}",
        f.store.table_bytes()
    );
}

#[test]
fn learned_keys_are_forgotten_after_forget_after() {
    let f = fixture(Some(
        Adaptive::default().forget_after(Duration::from_secs(10)),
    ));
    let k = key(1);
    f.learn(Some(&k), Signal::RateLimited { hint: None }, None);
    assert!(f.store.learned_rate(Some(&k)).is_some());
    f.clock.advance(Duration::from_secs(5));
    f.store.evict_idle(f.clock.now());
    assert_eq!(f.store.stats().live_keys, 1, "still remembered");
    f.clock.advance(Duration::from_secs(6));
    f.store.evict_idle(f.clock.now());
    assert_eq!(f.store.stats().live_keys, 0);
    assert_eq!(f.store.learned_rate(Some(&k)), None);
}

#[test]
fn evicting_a_key_just_after_its_pause_keeps_the_bucket_empty() {
    // After a pause the bucket refills from empty (one call at a time); an idle sweep in
    // between must not forget that and hand out the whole burst.
    let f = fixture(None);
    let k = key(1);
    let quota = Some(Quota::new(1.0, 4));
    f.learn(Some(&k), rate_limited(Duration::from_secs(1)), None);
    f.clock.advance(Duration::from_millis(1100));
    f.store.evict_idle(f.clock.now());
    let ask = f.ask(quota).reject_only(true);
    let admitted = (0..4)
        .filter(|_| is_go(&f.admit(Some(&k), &ask, None)))
        .count();
    assert_eq!(admitted, 1);
}

#[test]
fn a_key_with_live_waiters_is_never_evicted() {
    let f = fixture(None);
    let k = key(1);
    let ask = f.ask(Some(Quota::new(0.01, 1)));
    assert!(is_go(&f.admit(Some(&k), &ask, None)));
    let (_, t) = ticket(f.admit(Some(&k), &ask, None));
    f.clock.advance(Duration::from_secs(1000));
    f.store.evict_idle(f.clock.now());
    assert_eq!(f.store.stats().live_keys, 1);
    assert!(is_go(&f.admit(Some(&k), &ask.at(f.clock.now()), Some(t))));
}

#[test]
fn the_meter_counts_the_last_second() {
    let m = Meter(AtomicU64::new(0));
    let sec = 1_000_000_000;
    for i in 0..10 {
        m.record(10 * sec + i * sec / 10, 1);
    }
    assert_eq!(m.rate(11 * sec - 1), 10.0);
    // Half a second later, half of the previous window still counts.
    assert!((m.rate(11 * sec + sec / 2) - 5.0).abs() < 1e-9);
    assert!(!m.is_stale(11 * sec + 9 * sec / 10));
    assert!(m.is_stale(12 * sec));
    assert_eq!(m.rate(12 * sec), 0.0);
}

#[test]
fn the_meter_spreads_a_young_keys_calls_over_the_time_since_it_started() {
    let sec = 1_000_000_000;
    // Twenty calls within 2 ms after a silence: twenty in the first tick (125 ms), not in a
    // whole second.
    let m = Meter(AtomicU64::new(0));
    for i in 0..20 {
        m.record(10 * sec + i * 100_000, 1);
    }
    assert_eq!(m.reading(10 * sec + 5_000_000), (160.0, true));
    // Half a second on, the same calls spread over half a second.
    assert_eq!(m.reading(10 * sec + sec / 2 - 1), (40.0, true));
    // One call is no rate to extrapolate, and no steady sending either.
    let one = Meter(AtomicU64::new(0));
    one.record(10 * sec, 1);
    assert_eq!(one.reading(10 * sec + 1), (1.0, false));
    // A key that sent the second before is steady, however few its calls.
    one.record(11 * sec + sec / 2, 1);
    assert!(one.reading(11 * sec + sec / 2).1);
}

#[test]
fn only_pauses_beyond_the_keys_pace_count_as_time_it_could_not_send() {
    let sec = 1_000_000_000;
    let mut log = PauseLog::default();
    // Paused for half a second while paced at 10 a second: 0.4 s beyond the pace.
    log.add(10 * sec, 10 * sec + sec / 2, sec / 10);
    let mid = log.sending((8.0, true), 10 * sec + sec / 5);
    assert!(
        (mid.free - 0.9).abs() < 1e-9,
        "only the elapsed part: {mid:?}"
    );
    let end = log.sending((8.0, true), 10 * sec + sec / 2);
    assert!((end.free - 0.6).abs() < 1e-9, "{end:?}");
    assert!((end.rate - 8.0 / 0.6).abs() < 1e-9);
    // An exact hint (one interval at the pace) is the provider limiting the key: not counted.
    let mut exact = PauseLog::default();
    exact.add(10 * sec, 10 * sec + sec / 10, sec / 10);
    assert_eq!(exact.sending((8.0, true), 10 * sec + sec / 5).free, 1.0);
    // Overlapping pauses count once, and a second later they are forgotten.
    log.add(10 * sec + sec / 4, 10 * sec + sec / 2, 0);
    assert!((log.sending((8.0, true), 10 * sec + sec / 2).free - 0.6).abs() < 1e-9);
    assert_eq!(log.sending((8.0, true), 12 * sec + sec / 2).free, 1.0);
}

#[test]
fn an_isolated_refusal_of_a_steady_key_only_pauses_it_when_refusals_are_background() {
    let f = fixture(Some(Adaptive::default()));
    let k = key(7);
    let ask = f.ask(None);
    let send = |n: u32, every: Duration| {
        for _ in 0..n {
            assert!(is_go(&f.admit(Some(&k), &ask.at(f.clock.now()), None)));
            f.clock.advance(every);
        }
    };
    // Two seconds at 20 a second, then one refusal: a first cut, and a pause.
    send(40, 50 * MS);
    let learned = f.learn(Some(&k), rate_limited(100 * MS), None);
    assert!(learned.paused.is_some());
    assert!((f.store.learned_rate(Some(&k)).unwrap() - 17.0).abs() < 0.5);
    // Another refusal soon after, while the key sends less: refused whatever it sends, so the
    // cut is undone and the key keeps its pace (still paused for the hint).
    f.clock.advance(150 * MS);
    send(2, 60 * MS);
    let learned = f.learn(Some(&k), rate_limited(100 * MS), None);
    assert!(learned.paused.is_some(), "the hint is obeyed all the same");
    let rate = f.store.learned_rate(Some(&k)).unwrap();
    assert!(rate >= 19.5, "{rate}");
}

proptest! {
    /// Conformance through the store, waits included: for any arrival pattern (callers that
    /// wait, callers that refuse to, callers that give up their place), the units admitted in
    /// any window of length `w` are at most `burst + rate × w`.
    #[test]
    fn admitted_units_conform_in_every_window(
        per_second in 1.0f64..100.0,
        burst in 1u32..8,
        arrivals in proptest::collection::vec((0u64..200, 1u32..3, 0u8..3), 1..120),
    ) {
        let f = fixture(None);
        let k = key(1);
        let quota = Some(Quota::new(per_second, burst));
        let mut waiting: VecDeque<(u32, Option<Instant>, MemoryTicket)> = VecDeque::new();
        let mut admitted: Vec<(Instant, u32)> = Vec::new();
        let record = |a: Admission<MemoryTicket>, cost: u32, at: Instant, waiting: &mut VecDeque<_>, admitted: &mut Vec<(Instant, u32)>| match a {
            Admission::Go(_) => admitted.push((at, cost.min(burst))),
            Admission::Wait { until, ticket } => waiting.push_back((cost, until, ticket)),
            Admission::Reject(_) => {}
        };
        for (gap_ms, cost, mode) in arrivals {
            f.clock.advance(Duration::from_millis(gap_ms));
            let now = f.clock.now();
            // Waiters whose time has come ask again, in order.
            for _ in 0..waiting.len() {
                let (cost, until, t) = waiting.pop_front().unwrap();
                if until.is_none_or(|u| u <= now) {
                    let ask = Ask::new(now, cost).with_quota(quota);
                    let a = f.admit(Some(&k), &ask, Some(t));
                    record(a, cost, now, &mut waiting, &mut admitted);
                } else {
                    waiting.push_back((cost, until, t));
                }
            }
            let ask = Ask::new(now, cost).with_quota(quota).reject_only(mode == 1);
            let a = f.admit(Some(&k), &ask, None);
            if mode == 2 {
                // Gives up its place at once.
                if let Admission::Go(_) = a { admitted.push((now, cost.min(burst))); }
            } else {
                record(a, cost, now, &mut waiting, &mut admitted);
            }
        }
        let rate = Gcra::from_rate(per_second, burst).per_second();
        for (i, &(start, _)) in admitted.iter().enumerate() {
            let mut used = 0u64;
            for &(at, cost) in &admitted[i..] {
                used += u64::from(cost);
                let w = (at - start).as_secs_f64();
                prop_assert!(used as f64 <= f64::from(burst) + rate * w + 1e-6);
            }
        }
    }
}

#[test]
fn overloaded_slows_the_key_without_pausing_it() {
    let f = fixture(Some(Adaptive::default()));
    let k = key(1);
    for _ in 0..10 {
        assert!(is_go(&f.admit(Some(&k), &f.ask(None), None)));
        f.clock.advance(100 * MS);
    }
    let learned = f.learn(Some(&k), Signal::Overloaded, None);
    assert_eq!(learned.paused, None);
    let rate = learned.rate.expect("slowed");
    assert!(rate < 10.0, "{rate}");
    assert!(is_go(&f.admit(Some(&k), &f.ask(None), None)), "no pause");
}

#[test]
fn a_token_meter_learns_from_the_tokens_window() {
    let clock = FakeClock::new();
    let store = MemoryStore::<KeyHash>::with_settings(clock.now(), None, Unit::Tokens);
    let snapshot = RateLimitSnapshot {
        requests: RateLimitWindow {
            limit: Some(10),
            remaining: Some(9),
            reset: Some(Duration::from_secs(6)),
        },
        tokens: RateLimitWindow {
            limit: Some(60_000),
            remaining: Some(50_000),
            reset: Some(Duration::from_secs(10)),
        },
    };
    let now = clock.now();
    let k = key(1);
    let learned = store
        .learn(Some(&k), None, Lesson::success(Some(snapshot), now, now))
        .into_inner();
    assert_eq!(learned.rate, Some(1000.0));
    assert_eq!(store.learned_rate(Some(&k)), Some(1000.0));
}
