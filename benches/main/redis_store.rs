//! Throttle admission through the Redis store (one Lua round trip on loopback, to a
//! `redis-server` this bench starts) beside the in-memory store. The peer is the floor every
//! Redis-backed limiter pays: a bare `PING` on the same connection. Also: 64 admissions in
//! flight, pipelined on the store's one multiplexed connection, and p50/p99 of single calls.
//!
//! Needs `redis-server` (`scripts/ensure-deps` installs it); without it this group is skipped
//! with a message, and `scripts/bench-compare` (which installs it first) fails.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use towline::KeyHash;
use towline::throttle::store::redis::RedisStore;
use towline::throttle::{Admission, Ask, MemoryStore, Quota, Store};

use crate::support::redis_server::RedisServer;
use crate::support::{self, Compare, report};

/// So fast that every call is admitted: the cost measured is the decision, not a wait.
const QUOTA: Quota = Quota::new(1_000_000.0, 1_000_000);
const KEYS: u64 = 1_000;
const IN_FLIGHT: usize = 64;
const TIMED_CALLS: usize = 20_000;

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

pub(crate) fn bench_all(c: &mut Criterion) {
    if !support::wants("throttle_redis") {
        return;
    }
    let server = match RedisServer::start() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("throttle_redis SKIPPED: {why}");
            return;
        }
    };
    let runtime = support::runtime();
    let redis: RedisStore = {
        let _context = runtime.enter();
        RedisStore::builder(server.client())
            .prefix("bench:")
            .timeout(Duration::from_secs(1))
            .build()
            .expect("a valid Redis store")
    };
    let memory = MemoryStore::<KeyHash>::new(Instant::now());
    let keys = keys();
    runtime.block_on(async {
        redis.ping().await.expect("the bench's redis answers");
        admit(&redis, &keys[0]).await; // loads the script
    });
    percentiles(&runtime, &redis, &memory, &keys);

    let mut group = Compare::new(c, "throttle_redis");
    group.sample_size(20);
    group.case_custom("towline_redis", |iters| {
        runtime.block_on(async {
            let start = Instant::now();
            for i in 0..iters as usize {
                admit(&redis, &keys[i % keys.len()]).await;
            }
            start.elapsed()
        })
    });
    group.case_custom("redis_ping", |iters| {
        runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                redis.ping().await.expect("PONG");
            }
            start.elapsed()
        })
    });
    group.case_custom("towline_redis_64_in_flight", |iters| {
        runtime.block_on(in_flight(&redis, &keys, iters))
    });
    let mut at = 0;
    group.case(
        "towline_memory",
        || (),
        |()| {
            at = (at + 1) % keys.len();
            support::now(admit(&memory, &keys[at]));
        },
    );
    drop(group);
    let metrics = redis.metrics();
    assert_eq!(
        metrics.fallbacks, 0,
        "every admission went to Redis: {metrics:?}"
    );
}

async fn in_flight(redis: &RedisStore, keys: &[KeyHash], iters: u64) -> Duration {
    let start = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let (redis, keys) = (redis.clone(), keys.to_vec());
            let share = (iters as usize).div_ceil(IN_FLIGHT);
            tokio::spawn(async move {
                for i in 0..share {
                    admit(&redis, &keys[(w + i * IN_FLIGHT) % keys.len()]).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker finished");
    }
    start.elapsed()
}

/// p50 and p99 of single admissions, and of a bare `PING`.
fn percentiles(
    runtime: &Runtime,
    redis: &RedisStore,
    memory: &MemoryStore<KeyHash>,
    keys: &[KeyHash],
) {
    let (mut redis_took, mut ping_took, mut memory_took) = (vec![], vec![], vec![]);
    runtime.block_on(async {
        for i in 0..TIMED_CALLS {
            let key = &keys[i % keys.len()];
            let start = Instant::now();
            admit(redis, key).await;
            redis_took.push(start.elapsed().as_nanos() as u64);
            let start = Instant::now();
            redis.ping().await.expect("PONG");
            ping_took.push(start.elapsed().as_nanos() as u64);
            let start = Instant::now();
            admit(memory, key).await;
            memory_took.push(start.elapsed().as_nanos() as u64);
        }
    });
    for (who, took) in [
        ("towline_redis", &mut redis_took),
        ("redis_ping", &mut ping_took),
        ("towline_memory", &mut memory_took),
    ] {
        took.sort_unstable();
        for p in [50.0, 99.0] {
            report::figure(
                &format!("throttle_redis/{who}/p{p}"),
                support::percentile(took, p) as f64,
                "ns",
            );
        }
    }
}
