//! Redis going away under load, against the towline mock provider over real HTTP: killed
//! mid-run (calls keep flowing on the local buckets, none is lost, the fallbacks are counted;
//! restarted on the same port, the shared limit comes back), slow (a paused Redis costs a call
//! no more than the timeout), and the fail-closed policy (prompt `StoreUnavailable`).

#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use ::redis::aio::ConnectionManagerConfig;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis_server::RedisServer;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::{ApiKey, Error, KeyHash, ThrottleReason};
use towline_mock::{Dialect, Journal, MockProvider, MockServer, Script};
use towline_normalize::{Normalize, NormalizeLayer};
use towline_throttle::store::redis::{OnUnavailable, RedisStore};
use towline_throttle::{PerCall, Throttle, ThrottleLayer};

type Layer = ThrottleLayer<KeyHash, ApiKey, PerCall, RedisStore>;
type Stack =
    Throttle<Normalize<Client<HttpConnector, Full<Bytes>>>, KeyHash, ApiKey, PerCall, RedisStore>;

const KEY: &str = "sk-outage";
const RATE: f64 = 20.0;
const BURST: u32 = 2;
const TIMEOUT: Duration = Duration::from_millis(50);
const MAX_WAIT: Duration = Duration::from_millis(500);
/// How late an admitted call may reach the mock on a loaded machine (widens each window).
const LATE: Duration = Duration::from_millis(60);
/// Scheduling slack for "promptly" on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(250);

fn replica(redis: &RedisServer, policy: OnUnavailable) -> (Layer, Stack) {
    let store = RedisStore::builder(redis.client())
        .prefix("outage:")
        .timeout(TIMEOUT)
        .on_unavailable(policy)
        .probe_every(Duration::from_millis(100))
        // Reconnect quickly once Redis is back (the default backs off up to a second).
        .connection(
            ConnectionManagerConfig::new()
                .set_min_delay(Duration::from_millis(20))
                .set_max_delay(Duration::from_millis(200))
                .set_number_of_retries(2)
                .set_connection_timeout(Some(Duration::from_millis(200))),
        )
        .build()
        .unwrap();
    let layer = ThrottleLayer::builder()
        .rate(RATE)
        .burst(BURST)
        .max_wait(MAX_WAIT)
        .build_with_store(store)
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let stack = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(NormalizeLayer::new())
        .service(client);
    (layer, stack)
}

fn chat(base: &str) -> Request<Full<Bytes>> {
    Request::post(format!("{base}/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap()
}

/// One call: its result and how long it took.
async fn send(mut stack: Stack, base: String) -> (Result<(), Error>, Duration) {
    let start = Instant::now();
    let result = async {
        let resp = stack.ready().await?.call(chat(&base)).await?;
        resp.into_body().collect().await.map_err(Error::transport)?;
        Ok(())
    }
    .await;
    (result, start.elapsed())
}

#[derive(Debug, Default)]
struct Phase {
    sent: usize,
    ok: usize,
    throttled: usize,
    slowest: Duration,
}

/// Every stack sends a call every `every` for `length`; waits for all of them.
async fn drive(stacks: &[Stack], base: &str, every: Duration, length: Duration) -> Phase {
    let start = Instant::now();
    let mut calls = Vec::new();
    let mut tick = start;
    while tick < start + length {
        tokio::time::sleep_until(tick).await;
        for stack in stacks {
            calls.push(tokio::spawn(send(stack.clone(), base.to_owned())));
        }
        tick += every;
    }
    let mut phase = Phase::default();
    for call in calls {
        let (result, took) = call.await.expect("a call panicked");
        phase.sent += 1;
        phase.slowest = phase.slowest.max(took);
        match result {
            Ok(()) => phase.ok += 1,
            Err(Error::Throttled(t)) => {
                assert_eq!(t.reason, ThrottleReason::WaitTooLong, "{t:?}");
                phase.throttled += 1;
            }
            Err(other) => panic!("a call was lost to {other:?}"),
        }
    }
    phase
}

async fn mock() -> MockServer {
    MockProvider::builder()
        .default_script(Script::new(Dialect::OpenAi))
        .start()
        .await
        .expect("the mock starts")
}

fn since(journal: &Journal, from: Instant) -> Journal {
    journal
        .arrivals()
        .iter()
        .filter(|a| a.at >= from)
        .cloned()
        .collect()
}

fn assert_shared_limit(journal: &Journal, what: &str) {
    for window in [200, 500, 1_000].map(Duration::from_millis) {
        let seen = journal.max_in_window(KEY, window);
        let bound = (f64::from(BURST) + RATE * (window + LATE).as_secs_f64()).floor() as usize;
        assert!(
            seen <= bound,
            "{what}: {seen} arrivals in {window:?} > {bound}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_fails_open_loses_nothing_and_the_shared_limit_resumes() {
    let mut redis = RedisServer::start().await;
    let provider = mock().await;
    let base = provider.base_url();
    let (a, stack_a) = replica(&redis, OnUnavailable::FailOpen);
    let (b, stack_b) = replica(&redis, OnUnavailable::FailOpen);
    let stacks = [stack_a, stack_b];
    // Each stack asks for twice the key's limit: four times it together.
    let every = Duration::from_millis(25);

    let up = drive(&stacks, &base, every, Duration::from_millis(600)).await;
    assert_shared_limit(&provider.journal(), "Redis up");
    assert_eq!((a.store().fallbacks(), b.store().fallbacks()), (0, 0));

    redis.kill();
    let down = drive(&stacks, &base, every, Duration::from_millis(600)).await;
    // Calls kept flowing on the local buckets, each waiting no longer than before plus the
    // one timeout of the call that found Redis gone.
    assert!(down.ok >= 10, "{down:?}");
    assert!(down.slowest <= MAX_WAIT + TIMEOUT + SLACK, "{down:?}");
    for store in [a.store(), b.store()] {
        let metrics = store.metrics();
        assert!(metrics.fallbacks > 0 && metrics.failures > 0, "{metrics:?}");
        assert!(!metrics.available, "{metrics:?}");
    }

    redis.restart().await;
    let back = Instant::now();
    let mut recovering = Vec::new();
    while !(a.store().is_available() && b.store().is_available()) {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "Redis never came back"
        );
        recovering.push(drive(&stacks, &base, every, Duration::from_millis(100)).await);
    }
    let (fell_back_a, fell_back_b) = (a.store().fallbacks(), b.store().fallbacks());
    let shared_again = Instant::now();
    let after = drive(&stacks, &base, every, Duration::from_secs(1)).await;

    // The shared limit is back: no more fallbacks, the key's hash is in Redis again, and the
    // two stacks together keep to one key's limit.
    assert_eq!(
        (a.store().fallbacks(), b.store().fallbacks()),
        (fell_back_a, fell_back_b)
    );
    let journal = provider.journal();
    assert_shared_limit(&since(&journal, shared_again), "Redis back");
    let mut conn = redis.connection().await;
    let hash = a.store().hash_name(Some(&KeyHash::of(KEY.as_bytes())));
    assert!(
        ::redis::AsyncCommands::exists::<_, bool>(&mut conn, &hash)
            .await
            .unwrap()
    );

    // Nothing lost: every call either reached the provider once or was refused by the
    // throttle, and everything that reached the provider was admitted.
    let phases = [&up, &down, &after].into_iter().chain(&recovering);
    let (mut sent, mut ok, mut throttled) = (0, 0, 0);
    for phase in phases {
        assert_eq!(phase.sent, phase.ok + phase.throttled);
        (sent, ok, throttled) = (
            sent + phase.sent,
            ok + phase.ok,
            throttled + phase.throttled,
        );
    }
    assert_eq!(
        journal.attempts(KEY),
        ok,
        "{sent} sent, {throttled} throttled"
    );
    assert!(after.ok >= 15, "{after:?}");
    assert_eq!(a.stats().waiters + b.stats().waiters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fail_closed_refuses_promptly_with_store_unavailable_and_recovers() {
    let mut redis = RedisServer::start().await;
    let provider = mock().await;
    let base = provider.base_url();
    let (layer, stack) = replica(&redis, OnUnavailable::FailClosed);
    send(stack.clone(), base.clone()).await.0.unwrap();

    redis.kill();
    for _ in 0..5 {
        let (result, took) = send(stack.clone(), base.clone()).await;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, Error::Throttled(t) if t.reason == ThrottleReason::StoreUnavailable),
            "{err:?}"
        );
        assert!(took <= TIMEOUT + SLACK, "refused after {took:?}");
    }
    assert_eq!(
        provider.journal().attempts(KEY),
        1,
        "a refused call reached the provider"
    );
    assert_eq!(layer.store().metrics().refusals, 5);

    redis.restart().await;
    let back = Instant::now();
    loop {
        if send(stack.clone(), base.clone()).await.0.is_ok() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "Redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    send(stack.clone(), base.clone()).await.0.unwrap();
    assert!(layer.store().is_available());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_stops_answering_costs_a_call_the_timeout_and_no_more() {
    let redis = RedisServer::start().await;
    let provider = mock().await;
    let base = provider.base_url();
    let (open, open_stack) = replica(&redis, OnUnavailable::FailOpen);
    let (closed, closed_stack) = replica(&redis, OnUnavailable::FailClosed);
    send(open_stack.clone(), base.clone()).await.0.unwrap();
    send(closed_stack.clone(), base.clone()).await.0.unwrap();

    // Redis holds every command for a second: it is up, but slow.
    let mut admin = redis.connection().await;
    let _: () = ::redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1000)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();

    let (result, took) = send(open_stack.clone(), base.clone()).await;
    result.unwrap();
    assert!(took >= TIMEOUT && took <= TIMEOUT + SLACK, "{took:?}");
    let metrics = open.store().metrics();
    assert_eq!((metrics.timeouts, metrics.fallbacks), (1, 1), "{metrics:?}");

    let (result, took) = send(closed_stack.clone(), base.clone()).await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, Error::Throttled(t) if t.reason == ThrottleReason::StoreUnavailable),
        "{err:?}"
    );
    assert!(took >= TIMEOUT && took <= TIMEOUT + SLACK, "{took:?}");
    assert_eq!(closed.store().metrics().timeouts, 1);
    assert_eq!(provider.journal().attempts(KEY), 3);
}
