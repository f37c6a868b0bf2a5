//! Bytes per key at a million keys, counted by a counting global allocator, and the table
//! shrinking back once the keys go idle. Alone in its test binary: the allocator counts the
//! whole process.

use std::alloc::System;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use towline_core::{Clock, FakeClock, KeyHash};
use towline_throttle::{Admission, Ask, MemoryStore, Quota, Store};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: u64 = 1_000_000;

fn live_bytes(region: &Region<'_, System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize + change.bytes_reallocated
}

#[test]
fn a_million_idle_keys_cost_under_128_bytes_each_and_go_away_by_themselves() {
    let clock = FakeClock::new();
    let quota = Some(Quota::new(10.0, 1));
    let region = Region::new(GLOBAL);
    // Default settings: adaptive pacing on, so every key also carries its send meter.
    let store = MemoryStore::<KeyHash>::new(clock.now());
    for n in 0..KEYS {
        let key = KeyHash::of(&n.to_le_bytes());
        let ask = Ask::new(clock.now(), 1).with_quota(quota);
        assert!(matches!(
            store.admit(Some(&key), &ask, None).into_inner(),
            Admission::Go(_)
        ));
        if n % 1000 == 0 {
            clock.advance(Duration::from_micros(10));
        }
    }
    assert_eq!(store.stats().live_keys, KEYS as usize);
    let per_key = live_bytes(&region) as f64 / KEYS as f64;
    println!(
        "{per_key:.1} bytes per key at {KEYS} keys (tables: {} bytes)",
        store.table_bytes()
    );
    assert!(per_key < 128.0, "{per_key} bytes per key");

    // The keys go idle; one other key's ordinary traffic sweeps every shard in turn.
    clock.advance(Duration::from_secs(3));
    let busy = KeyHash::of(b"busy");
    for _ in 0..200 {
        clock.advance(Duration::from_millis(40));
        let ask = Ask::new(clock.now(), 1);
        let _ = store.admit(Some(&busy), &ask, None).into_inner();
    }
    assert_eq!(store.stats().live_keys, 1);
    let left = live_bytes(&region);
    println!("{left} bytes left after eviction");
    assert!(left < 64 * 1024, "{left} bytes still held");
}
