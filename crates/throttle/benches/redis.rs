//! Admission through the Redis store on loopback beside the in-memory store: latency per call
//! (criterion's mean, and p50/p99/p99.9 printed from individually timed calls) and throughput
//! with 64 admissions in flight, pipelined on the store's one multiplexed connection.
//!
//! Starts its own redis-server (as the tests do). Run with
//! `cargo bench -p towline-throttle --features redis --bench redis`.
//!
//! What a facade bench would call: `RedisStore::builder(client).build()`, then
//! `Store::admit(&store, Some(&key), &Ask::new(now, 1).with_quota(Some(quota)), None).await`
//! (or a `ThrottleLayer` built with `build_with_store(store)`).

#[path = "../tests/support/redis_server.rs"]
mod redis_server;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use redis_server::RedisServer;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use towline_core::KeyHash;
use towline_throttle::store::redis::RedisStore;
use towline_throttle::{Admission, Ask, MemoryStore, Quota, Store};

/// So fast that every call is admitted: the cost measured is the decision, not a wait.
const QUOTA: Quota = Quota::new(1_000_000.0, 1_000_000);
const KEYS: u64 = 1_000;
const IN_FLIGHT: usize = 64;

fn keys() -> Vec<KeyHash> {
    (0..KEYS).map(|n| KeyHash::of(&n.to_le_bytes())).collect()
}

async fn admit<St: Store<KeyHash>>(store: &St, key: &KeyHash) {
    let ask = Ask::new(Instant::now(), 1).with_quota(Some(QUOTA));
    match store.admit(Some(key), &ask, None).await {
        Admission::Go(grant) => {
            black_box(grant);
        }
        _ => panic!("the bench quota refused a call"),
    }
}

/// Times `n` sequential admissions one by one and prints the percentiles.
async fn percentiles<St: Store<KeyHash>>(name: &str, store: &St, n: usize) {
    let keys = keys();
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        admit(store, &keys[i % keys.len()]).await;
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{name}: p50 {:?}  p99 {:?}  p99.9 {:?}  (n = {n})",
        at(0.50),
        at(0.99),
        at(0.999)
    );
}

/// The same for a bare `PING` on the store's connection: the floor any Redis store pays.
async fn ping_percentiles(redis: &RedisStore, n: usize) {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        redis.ping().await.unwrap();
        took.push(start.elapsed());
    }
    took.sort();
    let at = |q: f64| took[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "redis PING (loopback, reference): p50 {:?}  p99 {:?}  p99.9 {:?}  (n = {n})",
        at(0.50),
        at(0.99),
        at(0.999)
    );
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let server = rt.block_on(RedisServer::start());
    let redis: RedisStore = {
        let _runtime = rt.enter();
        RedisStore::builder(server.client())
            .prefix("bench:")
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let memory = MemoryStore::<KeyHash>::with_settings(Instant::now(), None, Default::default());
    rt.block_on(async {
        redis.ping().await.expect("the bench redis answers");
        admit(&redis, &KeyHash::of(b"warm-up")).await; // loads the script
        percentiles("memory admit", &memory, 200_000).await;
        percentiles("redis admit (loopback)", &redis, 20_000).await;
        ping_percentiles(&redis, 20_000).await;
    });
    let keys = keys();

    let mut group = c.benchmark_group("throttle_store_admit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("memory", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = i.wrapping_add(1);
            let ask = Ask::new(Instant::now(), 1).with_quota(Some(QUOTA));
            black_box(
                memory
                    .admit(Some(&keys[i % keys.len()]), &ask, None)
                    .into_inner(),
            )
        })
    });
    group.bench_function("redis_sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters as usize {
                    admit(&redis, &keys[i % keys.len()]).await;
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("redis_pipelined_64_in_flight", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                let workers: Vec<_> = (0..IN_FLIGHT)
                    .map(|w| {
                        let (redis, keys) = (redis.clone(), keys.clone());
                        let share = (iters as usize + IN_FLIGHT - 1 - w) / IN_FLIGHT;
                        tokio::spawn(async move {
                            for i in 0..share {
                                admit(&redis, &keys[(w + i * IN_FLIGHT) % keys.len()]).await;
                            }
                        })
                    })
                    .collect();
                for worker in workers {
                    worker.await.unwrap();
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let metrics = redis.metrics();
    assert_eq!(metrics.fallbacks, 0, "{metrics:?}");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
