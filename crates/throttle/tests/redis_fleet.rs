//! A fleet against the towline mock provider over real HTTP on loopback: independent throttle
//! stacks (each its own `ThrottleLayer`, `RedisStore` and hyper-util client, as separate
//! replicas would have) sharing one real redis-server. Real time: Redis's `TIME` is the clock.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use redis_server::RedisServer;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use towline_core::{ApiKey, Error, ErrorKind, KeyHash, ThrottleReason};
use towline_mock::{Dialect, Fault, MockProvider, MockServer, RetryAfter, Script};
use towline_normalize::{Normalize, NormalizeLayer};
use towline_throttle::store::redis::RedisStore;
use towline_throttle::{PerCall, Throttle, ThrottleLayer};

type Layer = ThrottleLayer<KeyHash, ApiKey, PerCall, RedisStore>;
type Stack =
    Throttle<Normalize<Client<HttpConnector, Full<Bytes>>>, KeyHash, ApiKey, PerCall, RedisStore>;

/// How late an admitted call may reach the mock (scheduling and loopback HTTP on a loaded
/// machine). It only widens each window by this much; at these rates it adds nothing.
const LATE: Duration = Duration::from_millis(60);

/// One replica: its own store (and local bucket), layer and HTTP client.
fn replica(redis: &RedisServer, rate: f64, burst: u32, max_wait: Duration) -> (Layer, Stack) {
    let store = RedisStore::builder(redis.client())
        .prefix("fleet:")
        .build()
        .unwrap();
    let layer = ThrottleLayer::builder()
        .rate(rate)
        .burst(burst)
        .max_wait(max_wait)
        .build_with_store(store)
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let stack = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(NormalizeLayer::new())
        .service(client);
    (layer, stack)
}

fn chat(base: &str, key: &str) -> Request<Full<Bytes>> {
    Request::post(format!("{base}/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Full::from(
            r#"{"model":"mock-model","messages":[{"role":"user","content":"hi"}]}"#,
        ))
        .unwrap()
}

async fn send(mut stack: Stack, base: String, key: &'static str) -> Result<(), Error> {
    let resp = stack.ready().await?.call(chat(&base, key)).await?;
    resp.into_body().collect().await.map_err(Error::transport)?;
    Ok(())
}

/// The most calls a bucket of `burst` at `rate` lets arrive in any window of `window`.
fn allowed(rate: f64, burst: u32, window: Duration) -> usize {
    (f64::from(burst) + rate * (window + LATE).as_secs_f64()).floor() as usize
}

async fn mock(builder: towline_mock::MockProviderBuilder) -> MockServer {
    builder.start().await.expect("the mock starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_four_stacks_driving_one_key_at_four_times_its_limit_share_it() {
    const RATE: f64 = 10.0;
    const BURST: u32 = 2;
    const PER_STACK: usize = 25; // each stack alone sends at the limit: 10 a second for 2.5 s
    let redis = RedisServer::start().await;
    let provider = mock(MockProvider::builder().default_script(Script::new(Dialect::OpenAi))).await;
    let replicas: Vec<_> = (0..4)
        .map(|_| replica(&redis, RATE, BURST, Duration::from_millis(300)))
        .collect();

    let start = Instant::now();
    let mut calls = Vec::new();
    for i in 0..PER_STACK {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / RATE)).await;
        for (_, stack) in &replicas {
            calls.push(tokio::spawn(send(
                stack.clone(),
                provider.base_url(),
                "sk-fleet",
            )));
        }
    }
    let mut admitted = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(Error::Throttled(t)) => assert_eq!(t.reason, ThrottleReason::WaitTooLong),
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    let ran = start.elapsed();

    let journal = provider.journal();
    // Every admitted call arrived once; no refused call arrived.
    assert_eq!(journal.attempts("sk-fleet"), admitted);
    for window in [100, 250, 500, 1_000, 2_000].map(Duration::from_millis) {
        let seen = journal.max_in_window("sk-fleet", window);
        let bound = allowed(RATE, BURST, window);
        assert!(seen <= bound, "{seen} arrivals in {window:?} > {bound}");
    }
    // The fleet used its shared limit, and only that: four times the limit was asked for.
    let limit = allowed(RATE, BURST, ran);
    assert!(
        admitted <= limit,
        "{admitted} admitted in {ran:?} > {limit}"
    );
    assert!(
        admitted >= 20,
        "only {admitted} of {} admitted",
        4 * PER_STACK
    );
    for (layer, _) in &replicas {
        let metrics = layer.store().metrics();
        assert_eq!(metrics.fallbacks, 0, "{metrics:?}");
        assert!(metrics.round_trips > 0);
        assert_eq!(layer.stats().waiters, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_429_learned_by_one_stack_pauses_every_stack() {
    let redis = RedisServer::start().await;
    let provider = mock(MockProvider::builder().key(
        "sk-shared",
        Script::new(Dialect::Moonshot).fault(Fault::rate_limited(RetryAfter::secs(1)).first(1)),
    ))
    .await;
    let replicas: Vec<_> = (0..4)
        .map(|_| replica(&redis, 50.0, 4, Duration::from_secs(5)))
        .collect();

    // Stack 0 meets the provider's 429 (Retry-After: 1).
    let err = send(replicas[0].1.clone(), provider.base_url(), "sk-shared")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);

    // At once, the three stacks that never saw the 429 send three calls each (stack 0 stays
    // silent, so only what it wrote to Redis can hold them): none may reach the provider
    // before the hint has passed.
    let sent = Instant::now();
    let calls: Vec<_> = replicas[1..]
        .iter()
        .flat_map(|(_, stack)| {
            (0..3).map(|_| tokio::spawn(send(stack.clone(), provider.base_url(), "sk-shared")))
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }

    let journal = provider.journal();
    assert_eq!(journal.count_status(429), 1);
    assert_eq!(journal.attempts("sk-shared"), 10);
    let early = journal.early_arrivals("sk-shared", Duration::from_millis(1));
    assert!(
        early.is_empty(),
        "{} arrivals before the hint: {early:?}",
        early.len()
    );
    let hinted = &journal.arrivals()[0];
    let allowed_at = hinted.retry_allowed_at().expect("the 429 carried a hint");
    let first_after = journal.arrivals()[1].at;
    assert!(
        first_after >= allowed_at,
        "{:?} early",
        allowed_at - first_after
    );
    assert!(
        sent.elapsed() < Duration::from_secs(3),
        "{:?}",
        sent.elapsed()
    );
    for (layer, _) in &replicas {
        assert_eq!(layer.store().metrics().fallbacks, 0);
    }
}
