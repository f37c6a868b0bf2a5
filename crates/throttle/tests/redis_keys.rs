//! The Redis store's state in a real redis-server: hashes named by the key's digest (never the
//! key), expiring once idle; what one replica learns (a quota block, a low remaining count)
//! binding the others; a dropped waiter giving its slot back; settings checked when built.

#[path = "support/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::AsyncCommands;
use http::{Request, Response, StatusCode};
use redis_server::RedisServer;
use tokio::time::Instant;
use tower::{ServiceExt, service_fn};
use towline_core::{
    ApiError, ApiKey, Error, ErrorKind, HintSource, KeyHash, RateLimitSnapshot, RateLimitWindow,
    RetryHint, ThrottleReason,
};
use towline_throttle::store::redis::RedisStore;
use towline_throttle::{PerCall, ThrottleLayer};

type Layer = ThrottleLayer<KeyHash, ApiKey, PerCall, RedisStore>;

const SECRET: &str = "sk-raw-secret-key-123";

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.client())
        .prefix(prefix)
        .build()
        .unwrap()
}

fn layer(store: RedisStore, rate: f64, burst: u32) -> Layer {
    ThrottleLayer::builder()
        .rate(rate)
        .burst(burst)
        .max_wait(Duration::from_secs(2))
        .build_with_store(store)
        .unwrap()
}

fn request(key: Option<&str>) -> Request<()> {
    let mut req = Request::builder();
    if let Some(key) = key {
        req = req.header("authorization", format!("Bearer {key}"));
    }
    req.body(()).unwrap()
}

/// Calls through `layer` to an inner service that answers `answer()` and counts its calls.
async fn call(
    layer: &Layer,
    key: Option<&str>,
    calls: &Arc<AtomicUsize>,
    answer: impl Fn() -> Result<Response<()>, Error> + Clone + Send + Sync + 'static,
) -> Result<Response<()>, Error> {
    let calls = Arc::clone(calls);
    let inner = service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(answer())
    });
    tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(inner)
        .oneshot(request(key))
        .await
}

fn ok() -> Result<Response<()>, Error> {
    Ok(Response::new(()))
}

#[tokio::test]
async fn redis_hashes_are_named_by_the_keys_digest_never_the_key() {
    let server = RedisServer::start().await;
    let layer = layer(store(&server, "t:"), 5.0, 2);
    let calls = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        call(&layer, Some(SECRET), &calls, ok).await.unwrap();
    }
    call(&layer, None, &calls, ok).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    let mut conn = server.connection().await;
    let mut keys: Vec<String> = conn.keys("*").await.unwrap();
    keys.sort();
    let digest = KeyHash::of(SECRET.as_bytes());
    assert_eq!(keys, [format!("t:{digest}"), "t:unkeyed".to_owned()]);
    assert_eq!(layer.store().hash_name(Some(&digest)), keys[0]);
    // Nowhere in Redis: not in a name, not in a value.
    let named: Vec<String> = conn.keys("*sk-raw*").await.unwrap();
    assert!(named.is_empty(), "{named:?}");
    for key in &keys {
        let fields: Vec<(String, String)> = conn.hgetall(key).await.unwrap();
        assert!(!fields.is_empty());
        for (field, value) in fields {
            assert!(!field.contains("sk-raw") && !value.contains("sk-raw"));
        }
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
    assert!(!format!("{layer:?}").contains("sk-raw"));
}

#[tokio::test]
async fn redis_idle_keys_expire_from_redis_by_themselves() {
    let server = RedisServer::start().await;
    let layer = layer(store(&server, "t:"), 10.0, 1);
    let calls = Arc::new(AtomicUsize::new(0));
    call(&layer, Some(SECRET), &calls, ok).await.unwrap();
    let hash = layer
        .store()
        .hash_name(Some(&KeyHash::of(SECRET.as_bytes())));
    let mut conn = server.connection().await;
    let start = Instant::now();
    // The bucket is full again 100 ms after the call; the hash goes a second later.
    while conn.exists::<_, bool>(&hash).await.unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{hash} never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn redis_quota_block_learned_by_one_replica_fails_the_others_without_a_call() {
    let server = RedisServer::start().await;
    let (a, b) = (
        layer(store(&server, "t:"), 50.0, 5),
        layer(store(&server, "t:"), 50.0, 5),
    );
    let (a_calls, b_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let quota = || {
        Err(Error::from(
            ApiError::new(ErrorKind::QuotaExhausted, StatusCode::TOO_MANY_REQUESTS)
                .with_provider_type("insufficient_quota")
                .with_message("You exceeded your current quota")
                .with_retry_hint(RetryHint::new(
                    Duration::from_secs(60),
                    HintSource::RetryAfter,
                )),
        ))
    };
    let err = call(&a, Some(SECRET), &a_calls, quota).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);

    // Replica B never heard from the provider, yet answers with its error, locally.
    let err = call(&b, Some(SECRET), &b_calls, ok).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QuotaExhausted);
    let api = err.api().expect("the provider's error");
    assert_eq!(api.provider_type(), Some("insufficient_quota"));
    let left = err.retry_after().unwrap();
    assert!(
        left > Duration::from_secs(59) && left <= Duration::from_secs(60),
        "{left:?}"
    );
    assert_eq!(b_calls.load(Ordering::SeqCst), 0);
    // Other keys are not held.
    call(&b, Some("sk-other"), &b_calls, ok).await.unwrap();
    assert_eq!(b_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn redis_a_low_remaining_count_caps_every_replica() {
    let server = RedisServer::start().await;
    let reject_only = |store| {
        ThrottleLayer::builder()
            .rate(1.0)
            .burst(5)
            .reject_only()
            .build_with_store(store)
            .unwrap()
    };
    let (a, b): (Layer, Layer) = (
        reject_only(store(&server, "t:")),
        reject_only(store(&server, "t:")),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    // A's answer says one request is left in the provider's window.
    let one_left = || {
        let mut resp = Response::new(());
        resp.extensions_mut().insert(RateLimitSnapshot {
            requests: RateLimitWindow {
                limit: None,
                remaining: Some(1),
                reset: None,
            },
            tokens: RateLimitWindow::default(),
        });
        Ok(resp)
    };
    call(&a, Some(SECRET), &calls, one_left).await.unwrap();
    // Without the cap, B would find four of five left; it finds one.
    call(&b, Some(SECRET), &calls, ok).await.unwrap();
    let err = call(&b, Some(SECRET), &calls, ok).await.unwrap_err();
    assert!(
        matches!(err, Error::Throttled(t) if t.reason == ThrottleReason::RateExceeded),
        "{err:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn redis_a_dropped_waiter_gives_its_slot_back() {
    let server = RedisServer::start().await;
    let layer = layer(store(&server, "t:"), 2.0, 1);
    let calls = Arc::new(AtomicUsize::new(0));
    call(&layer, Some(SECRET), &calls, ok).await.unwrap();
    // The next call reserves the slot 500 ms ahead; it is dropped after 50 ms.
    let waiter = call(&layer, Some(SECRET), &calls, ok);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), waiter)
            .await
            .is_err()
    );
    let start = Instant::now();
    // The refund runs in the background: give it a moment, then the slot is free again.
    while layer.stats().waiters > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    call(&layer, Some(SECRET), &calls, ok).await.unwrap();
    let waited = start.elapsed();
    // It took the dropped call's slot (about 450 ms away), not the one after (950 ms).
    assert!(waited < Duration::from_millis(700), "{waited:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn redis_store_settings_are_checked_when_built() {
    let client = || ::redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let setting = |b: towline_throttle::store::redis::RedisStoreBuilder| {
        b.build().map(drop).unwrap_err().setting()
    };
    assert_eq!(setting(RedisStore::builder(client()).prefix("")), "prefix");
    assert_eq!(
        setting(RedisStore::builder(client()).timeout(Duration::ZERO)),
        "timeout"
    );
    assert_eq!(
        setting(RedisStore::builder(client()).probe_every(Duration::ZERO)),
        "probe_every"
    );
    assert_eq!(
        setting(RedisStore::builder(client()).warn_every(Duration::ZERO)),
        "warn_every"
    );
    for share in [0.0, -0.5, 1.5, f64::NAN] {
        assert_eq!(
            setting(RedisStore::builder(client()).fallback_share(share)),
            "fallback_share"
        );
    }
}
