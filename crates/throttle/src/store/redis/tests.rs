//! The scripts against a real redis-server, on a clock the test sets (the scripts' `now`
//! argument), compared with the in-memory store's decisions.

use std::sync::Arc;
use std::time::Duration;

use ::redis::AsyncCommands;
use http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use towline_core::{
    ApiError, Error, ErrorKind, HintSource, KeyHash, RateLimitSnapshot, RateLimitWindow, RetryHint,
    ThrottleReason,
};

use super::remote::{AdmitArgs, LearnArgs, Remote, RemoteSettings, Reply};
use super::*;
use crate::gcra::Gcra;

#[path = "../../../tests/support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

const MS: u64 = 1_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn remote(server: &RedisServer) -> Remote {
    let conn = ::redis::aio::ConnectionManager::new_lazy_with_config(
        server.client(),
        ::redis::aio::ConnectionManagerConfig::new(),
    )
    .unwrap();
    Remote::new(
        conn,
        RemoteSettings {
            prefix: "test:".into(),
            timeout: Duration::from_secs(2),
            policy: OnUnavailable::FailOpen,
            probe_every: Duration::from_secs(1),
            warn_every: Duration::from_secs(10),
        },
    )
}

/// The server's clock in microseconds: simulated time starts here so that the hashes' expiry
/// (server time) stays in the future while the test's clock runs ahead.
async fn server_micros(remote: &Remote) -> u64 {
    let mut conn = remote.connection();
    let (secs, micros): (u64, u64) = ::redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    secs * 1_000_000 + micros
}

#[derive(Debug, Clone)]
enum Op {
    /// A reject-only call of this cost.
    Call(u32),
    /// A 429 with this hint (µs).
    Pause(u64),
    /// The provider says this many units are left.
    Remaining(u64),
    /// A quota error with this reset (µs).
    Block(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1u32..4).prop_map(Op::Call),
        1 => (0u64..800).prop_map(|ms| Op::Pause(ms * MS)),
        1 => (1u64..4).prop_map(Op::Remaining),
        1 => (1u64..600).prop_map(|ms| Op::Block(ms * MS)),
    ]
}

/// What a decision looked like, comparable across stores.
#[derive(Debug, PartialEq)]
enum Decision {
    Go,
    Throttled(ThrottleReason, Option<Duration>),
    Provider(ErrorKind, Option<Duration>),
}

fn decision<T>(admission: Admission<T>) -> Decision {
    match admission {
        Admission::Go(_) => Decision::Go,
        Admission::Wait { .. } => panic!("a reject-only call waited"),
        Admission::Reject(Error::Throttled(t)) => Decision::Throttled(t.reason, t.retry_after),
        Admission::Reject(e) => Decision::Provider(e.kind(), e.retry_after()),
    }
}

fn quota_error(reset_us: u64) -> ApiError {
    ApiError::new(ErrorKind::QuotaExhausted, StatusCode::TOO_MANY_REQUESTS)
        .with_provider_type("insufficient_quota")
        .with_message("You exceeded your current quota")
        .with_retry_hint(RetryHint::new(
            Duration::from_micros(reset_us),
            HintSource::RetryAfter,
        ))
}

#[test]
fn redis_gcra_script_decides_like_the_memory_store() {
    let rt = runtime();
    let server = rt.block_on(RedisServer::start());
    let _runtime = rt.enter();
    let remote = remote(&server);
    let mut runner = TestRunner::new(Config {
        cases: 48,
        ..Config::default()
    });
    let strategy = (
        1u64..400,                                           // interval, ms
        1u32..6,                                             // burst
        proptest::collection::vec((0u64..500, op()), 1..60), // (gap in ms, op)
    );
    let case = std::sync::atomic::AtomicU32::new(0);
    runner
        .run(&strategy, |(interval_ms, burst, ops)| {
            let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(compare(&remote, case, interval_ms * MS, burst, ops))
        })
        .unwrap();
}

async fn compare(
    remote: &Remote,
    case: u32,
    interval_us: u64,
    burst: u32,
    ops: Vec<(u64, Op)>,
) -> Result<(), TestCaseError> {
    let quota = Quota::new(1e6 / interval_us as f64, burst);
    let gcra = Gcra::from_rate(quota.per_second(), burst);
    prop_assert_eq!(
        gcra.interval,
        interval_us * 1_000,
        "the quota is whole microseconds"
    );

    let origin = Instant::now();
    let memory = MemoryStore::<KeyHash>::with_settings(origin, None, Unit::Requests);
    let key = KeyHash::from(u64::from(case));
    let hash = format!("test:gcra:{case}");
    let base = server_micros(remote).await;
    let mut t = 1_000_000u64; // µs since the origin
    let mut blocked_until = 0;
    for (step, (gap_ms, op)) in ops.into_iter().enumerate() {
        t += gap_ms * MS;
        let at = origin + Duration::from_micros(t);
        let now_us = Some(base + t);
        match op {
            Op::Call(cost) => {
                let ask = Ask::new(at, cost).with_quota(Some(quota)).reject_only(true);
                let expected = decision(memory.admit(Some(&key), &ask, None).into_inner());
                let args = AdmitArgs {
                    interval_us,
                    burst,
                    cost,
                    max_wait_us: 0,
                    claim: false,
                    local_pause_us: 0,
                    now_us,
                };
                let reply = remote.admit(&hash, &args).await.unwrap();
                let got = match reply {
                    Reply::Go => Decision::Go,
                    Reply::Refused { wait, by_pause } => Decision::Throttled(
                        if by_pause {
                            ThrottleReason::PausedByProvider
                        } else {
                            ThrottleReason::RateExceeded
                        },
                        Some(wait),
                    ),
                    Reply::Blocked { left, error } => {
                        let e = decode_block(&error, left);
                        Decision::Provider(e.kind(), e.retry_after())
                    }
                    Reply::Reserved { .. } => panic!("a reject-only call reserved"),
                };
                prop_assert_eq!(got, expected, "step {} at {} µs", step, t);
            }
            Op::Pause(hint_us) => {
                let err = Error::from(
                    ApiError::new(ErrorKind::RateLimited, StatusCode::TOO_MANY_REQUESTS)
                        .with_retry_hint(RetryHint::new(
                            Duration::from_micros(hint_us),
                            HintSource::RetryAfter,
                        )),
                );
                let _ = memory
                    .learn(Some(&key), Some(quota), Lesson::from_error(&err, at, at))
                    .into_inner();
                let args = LearnArgs {
                    pause_us: Some(hint_us),
                    interval_us,
                    burst,
                    now_us,
                    ..LearnArgs::default()
                };
                remote.learn(&hash, &args).await.unwrap();
            }
            Op::Remaining(left) => {
                let snapshot = RateLimitSnapshot {
                    requests: RateLimitWindow {
                        remaining: Some(left),
                        ..RateLimitWindow::default()
                    },
                    tokens: RateLimitWindow::default(),
                };
                let lesson = Lesson::success(Some(snapshot), at, at);
                let _ = memory.learn(Some(&key), Some(quota), lesson).into_inner();
                let args = LearnArgs {
                    interval_us,
                    burst,
                    remaining: Some(left),
                    now_us,
                    ..LearnArgs::default()
                };
                remote.learn(&hash, &args).await.unwrap();
            }
            // Deliberately different: a shorter block does not shorten a running one in Redis
            // (answers reach replicas in any order; the longest wins), while the in-memory store
            // keeps the latest. Only the cases both define alike are compared.
            Op::Block(reset_us) if t + reset_us < blocked_until => {}
            Op::Block(reset_us) => {
                blocked_until = t + reset_us;
                let error = quota_error(reset_us);
                let err = Error::from(error.clone());
                let _ = memory
                    .learn(Some(&key), Some(quota), Lesson::from_error(&err, at, at))
                    .into_inner();
                let args = LearnArgs {
                    pause_us: Some(reset_us),
                    block_us: Some(reset_us),
                    error: encode_block(&error),
                    interval_us,
                    burst,
                    now_us,
                    ..LearnArgs::default()
                };
                remote.learn(&hash, &args).await.unwrap();
            }
        }
    }
    Ok(())
}

#[test]
fn redis_reservations_space_waiting_calls_and_a_later_pause_voids_them() {
    let rt = runtime();
    rt.block_on(async {
        let server = RedisServer::start().await;
        let remote = remote(&server);
        let base = server_micros(&remote).await;
        let hash = "test:reserve";
        let ask = |t: u64, claim: bool| AdmitArgs {
            interval_us: 100 * MS,
            burst: 2,
            cost: 1,
            max_wait_us: 350 * MS as i64,
            claim,
            local_pause_us: 0,
            now_us: Some(base + t),
        };
        // A full bucket of two, then one slot per 100 ms, up to 350 ms ahead.
        assert_eq!(remote.admit(hash, &ask(0, false)).await.unwrap(), Reply::Go);
        assert_eq!(remote.admit(hash, &ask(0, false)).await.unwrap(), Reply::Go);
        let mut slots = Vec::new();
        for _ in 0..3 {
            match remote.admit(hash, &ask(0, false)).await.unwrap() {
                Reply::Reserved { wait, tat } => slots.push((wait, tat)),
                other => panic!("not reserved: {other:?}"),
            }
        }
        let waits: Vec<u64> = slots.iter().map(|(w, _)| w.as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 300]);
        let Reply::Refused { wait, by_pause } = remote.admit(hash, &ask(0, false)).await.unwrap()
        else {
            panic!("a wait of 400 ms > 350 ms was not refused")
        };
        assert_eq!((wait, by_pause), (Duration::from_millis(400), false));

        // The first reservation's time comes: it stands.
        assert_eq!(
            remote.admit(hash, &ask(100 * MS, true)).await.unwrap(),
            Reply::Go
        );
        // A 429 arrives with a 1 s hint: the next reserved call finds the pause and is refused
        // (the pause outlasts its maximum wait).
        let pause = LearnArgs {
            pause_us: Some(1_000 * MS),
            interval_us: 100 * MS,
            burst: 2,
            now_us: Some(base + 150 * MS),
            ..LearnArgs::default()
        };
        remote.learn(hash, &pause).await.unwrap();
        let Reply::Refused { wait, by_pause } =
            remote.admit(hash, &ask(200 * MS, true)).await.unwrap()
        else {
            panic!("a reserved call went during a pause")
        };
        assert!(by_pause);
        assert_eq!(wait, Duration::from_millis(950));
        // With a longer maximum wait, it reserves again right at the pause's end.
        let patient = AdmitArgs {
            max_wait_us: -1,
            ..ask(300 * MS, true)
        };
        let Reply::Reserved { wait, .. } = remote.admit(hash, &patient).await.unwrap() else {
            panic!("not reserved after the pause")
        };
        assert_eq!(wait, Duration::from_millis(850));
    });
}

#[test]
fn redis_refund_gives_back_only_the_last_reservation() {
    let rt = runtime();
    rt.block_on(async {
        let server = RedisServer::start().await;
        let remote = remote(&server);
        let base = server_micros(&remote).await;
        let hash = "test:refund";
        let ask = AdmitArgs {
            interval_us: 100 * MS,
            burst: 1,
            cost: 1,
            max_wait_us: -1,
            claim: false,
            local_pause_us: 0,
            now_us: Some(base),
        };
        let reserve = || async {
            match remote.admit(hash, &ask).await.unwrap() {
                Reply::Reserved { wait, tat } => (wait, tat),
                Reply::Go => (Duration::ZERO, 0),
                other => panic!("{other:?}"),
            }
        };
        let _first = reserve().await;
        let (w1, tat1) = reserve().await;
        let (w2, tat2) = reserve().await;
        assert_eq!(
            (w1, w2),
            (Duration::from_millis(100), Duration::from_millis(200))
        );
        // The middle one cannot be given back exactly: it is not.
        remote.refund(hash, tat1, ask.weight_us()).await.unwrap();
        // The last one can: the next caller takes its slot.
        remote.refund(hash, tat2, ask.weight_us()).await.unwrap();
        let (w3, _) = reserve().await;
        assert_eq!(w3, Duration::from_millis(200));
    });
}

#[test]
fn redis_hashes_expire_when_their_state_stops_mattering() {
    let rt = runtime();
    rt.block_on(async {
        let server = RedisServer::start().await;
        let remote = remote(&server);
        let hash = "test:ttl";
        let ask = AdmitArgs {
            interval_us: 500 * MS,
            burst: 4,
            cost: 1,
            max_wait_us: -1,
            claim: false,
            local_pause_us: 0,
            now_us: None,
        };
        assert_eq!(remote.admit(hash, &ask).await.unwrap(), Reply::Go);
        let mut conn = server.connection().await;
        let ttl: i64 = conn.pttl(hash).await.unwrap();
        // Full again 500 ms after one call, plus the one-second margin.
        assert!((1_000..=1_600).contains(&ttl), "{ttl} ms");
        // A 30 s pause keeps the hash until its empty bucket has refilled (30 s + 1.5 s), plus
        // the margin.
        let pause = LearnArgs {
            pause_us: Some(30_000 * MS),
            interval_us: 500 * MS,
            burst: 4,
            ..LearnArgs::default()
        };
        remote.learn(hash, &pause).await.unwrap();
        let ttl: i64 = conn.pttl(hash).await.unwrap();
        assert!((32_000..=32_600).contains(&ttl), "{ttl} ms");
    });
}

#[test]
fn redis_quota_error_survives_the_hash() {
    let original = quota_error(5_000_000)
        .with_provider_code("insufficient_quota")
        .with_request_id("req-1");
    let back = decode_block(&encode_block(&original), Duration::from_secs(2));
    assert_eq!(back.kind(), ErrorKind::QuotaExhausted);
    assert_eq!(back.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(back.provider_type(), Some("insufficient_quota"));
    assert_eq!(back.provider_code(), Some("insufficient_quota"));
    assert_eq!(back.message(), Some("You exceeded your current quota"));
    assert_eq!(
        back.retry_hint(),
        Some(RetryHint::new(
            Duration::from_secs(2),
            HintSource::RetryAfter
        ))
    );
    // The request id named one request; it is not repeated to the others.
    assert_eq!(back.request_id(), None);
    // Garbage in the hash still blocks, with a generic quota error.
    let fallback = decode_block("not json", Duration::from_secs(1));
    assert_eq!(fallback.kind(), ErrorKind::QuotaExhausted);
}

#[test]
fn redis_round_trips_are_bounded_and_a_down_redis_is_probed_not_hammered() {
    let rt = runtime();
    rt.block_on(async {
        let mut server = RedisServer::start().await;
        let remote = Arc::new(Remote::new(
            ::redis::aio::ConnectionManager::new_lazy_with_config(
                server.client(),
                ::redis::aio::ConnectionManagerConfig::new(),
            )
            .unwrap(),
            RemoteSettings {
                prefix: "test:".into(),
                timeout: Duration::from_millis(50),
                policy: OnUnavailable::FailOpen,
                probe_every: Duration::from_millis(200),
                warn_every: Duration::from_secs(10),
            },
        ));
        let args = AdmitArgs {
            interval_us: MS,
            burst: 1,
            cost: 1,
            max_wait_us: -1,
            claim: false,
            local_pause_us: 0,
            now_us: None,
        };
        assert!(remote.admit("test:down", &args).await.is_ok());
        assert!(remote.may_call(Instant::now()));
        server.kill();
        let start = Instant::now();
        assert!(remote.admit("test:down", &args).await.is_err());
        assert!(
            start.elapsed() < Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
        assert!(!remote.is_up());
        // Left alone until the probe time; then exactly one call probes.
        assert!(!remote.may_call(Instant::now()));
        tokio::time::sleep(Duration::from_millis(220)).await;
        let now = Instant::now();
        assert!(remote.may_call(now));
        assert!(!remote.may_call(now));
        let metrics = remote.metrics();
        assert_eq!((metrics.round_trips, metrics.failures), (1, 1));
        assert!(!metrics.available);
    });
}

/// Counts `WARN` events and remembers their `calls` field.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<u64>>);

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Calls(Option<u64>);
        impl tracing::field::Visit for Calls {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "calls" {
                    self.0 = Some(value);
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut calls = Calls(None);
            event.record(&mut calls);
            self.0.lock().unwrap().push(calls.0.unwrap_or(0));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn redis_unavailability_warnings_are_rate_limited_and_count_the_calls() {
    let rt = runtime();
    let _runtime = rt.enter();
    let conn = ::redis::aio::ConnectionManager::new_lazy_with_config(
        ::redis::Client::open("redis://127.0.0.1:1/").unwrap(),
        ::redis::aio::ConnectionManagerConfig::new(),
    )
    .unwrap();
    let remote = Remote::new(
        conn,
        RemoteSettings {
            prefix: "test:".into(),
            timeout: Duration::from_millis(50),
            policy: OnUnavailable::FailOpen,
            probe_every: Duration::from_secs(1),
            warn_every: Duration::from_millis(100),
        },
    );
    let warnings = Arc::new(Warnings::default());
    tracing::subscriber::with_default(Arc::clone(&warnings), || {
        for _ in 0..100 {
            remote.unavailable();
        }
        assert_eq!(
            *warnings.0.lock().unwrap(),
            [1],
            "one warning for the first"
        );
        rt.block_on(tokio::time::sleep(Duration::from_millis(120)));
        remote.unavailable();
    });
    // The next one, a period later, counts the 99 that were not warned about, and itself.
    assert_eq!(*warnings.0.lock().unwrap(), [1, 100]);
    assert_eq!(remote.metrics().fallbacks, 101);
}
