//! The default store: per-key GCRA state in a sharded map that evicts idle keys by itself.
//!
//! # Memory
//!
//! A key that is not waiting and has learned nothing costs one map slot: its key, its bucket
//! (`tat`, 8 bytes), a send-rate meter (8 bytes, for adaptive pacing) and an empty lazy pointer
//! to the rarely needed rest (16 bytes) — 40 bytes with a [`KeyHash`](towline_core::KeyHash)
//! key, about 46 to 90 bytes per key in the table depending on its load factor (tested below
//! 128 bytes at a million keys). The rest ([`Ext`]: the wait queue, pauses, learned rates, a
//! quota block) is allocated only for keys that had to wait or that the provider taught
//! something.
//!
//! Idle keys are evicted without any call from the user: every admission checks one atomic
//! deadline and, when it has passed, sweeps one shard (round robin), so every shard is swept
//! every couple of seconds under traffic; a shard that doubled since its last sweep is swept on
//! insertion, which bounds growth under a flood of new keys. A key is idle when its bucket is
//! full again, its meter is stale, nobody waits on it, no pause or block is running, and it
//! learned nothing or was silent for `forget_after`. Evicting such a key changes nothing: a new
//! slot behaves the same. Shards shrink their tables when they fall below a quarter full.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::{Ready, ready};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;
use towline_core::{ApiError, Error, ErrorKind, Nanos, RateLimitWindow, ThrottleReason};

use super::{Admission, Ask, Grant, Learned, Lesson, Quota, Signal, Store, StoreStats, Ticket};
use crate::Unit;
use crate::adaptive::{Adaptive, Pacer, Sending};
use crate::gcra::{Gcra, Verdict};

const SHARDS: usize = 64;
/// Every shard is swept about this often while calls flow.
const SWEEP_PERIOD: Duration = Duration::from_secs(2);
/// A learned-rate change smaller than this fraction is not reported as an event.
const REPORT_STEP: f64 = 0.1;

/// The in-memory [`Store`]: lock-free admission in the common case, FIFO queues for waiters,
/// automatic eviction of idle keys. Shared by every clone of the throttle.
///
/// ```
/// use towline_core::{FakeClock, Clock, KeyHash};
/// use towline_throttle::{Admission, Ask, MemoryStore, Quota, Store};
/// use std::future::Future;
///
/// let clock = FakeClock::new();
/// let store = MemoryStore::<KeyHash>::new(clock.now());
/// let key = KeyHash::of(b"sk-1");
/// let ask = Ask::new(clock.now(), 1).with_quota(Some(Quota::new(1.0, 1)));
/// let first = futures_util::FutureExt::now_or_never(store.admit(Some(&key), &ask, None)).unwrap();
/// assert!(matches!(first, Admission::Go(_)));
/// let second = futures_util::FutureExt::now_or_never(store.admit(Some(&key), &ask.reject_only(true), None)).unwrap();
/// assert!(matches!(second, Admission::Reject(_)));
/// assert_eq!(store.stats().live_keys, 1);
/// ```
pub struct MemoryStore<K> {
    origin: Instant,
    shards: Box<[Shard<K>]>,
    unkeyed: Slot,
    hasher: foldhash::fast::RandomState,
    adaptive: Option<Adaptive>,
    unit: Unit,
    next_sweep: AtomicU64,
    cursor: AtomicUsize,
    waiters: Arc<AtomicUsize>,
}

#[repr(align(128))] // one shard per cache line pair: no false sharing between shard locks
struct Shard<K> {
    map: RwLock<HashMap<K, Slot, foldhash::fast::RandomState>>,
    swept_len: AtomicUsize,
}

/// One key's state. Kept small: it exists for every live key.
struct Slot {
    /// GCRA theoretical arrival time, nanoseconds since the store's origin.
    tat: AtomicU64,
    /// Recent sends, for adaptive pacing.
    meter: Meter,
    /// Everything else, allocated when first needed.
    ext: OnceLock<Arc<Ext>>,
}

/// The part of a key's state that only waiting or learning keys need.
struct Ext {
    /// No admission before this instant (a provider's pause or a quota block).
    paused_until: AtomicU64,
    /// Calls in the queue; the admission fast path reads it to keep FIFO order.
    queued: AtomicU32,
    /// The learned interval (nanoseconds per unit), 0 when nothing was learned.
    learned_interval: AtomicU64,
    /// The burst that goes with the learned interval.
    learned_burst: AtomicU32,
    /// The last answer that taught something, for forgetting.
    last_lesson: AtomicU64,
    state: Mutex<ExtState>,
}

#[derive(Default)]
struct ExtState {
    queue: VecDeque<Waiter>,
    next_id: u64,
    block: Option<Block>,
    pacer: Option<Pacer>,
    /// The rate the provider's `x-ratelimit-*` headers gave.
    header: Option<Gcra>,
    /// The last learned rate reported as an event.
    reported: Option<f64>,
    /// How long the provider paused the key lately.
    pauses: PauseLog,
}

/// The time a key spent paused by the provider beyond its own pace, over about the last second,
/// so that the rate it sent while free to send can be told from the rate the pauses left it.
///
/// Only the part of a pause longer than one interval at the key's pace counts: a provider's
/// exact hint (the time to its next token) is at most that for a key paced near the limit, and
/// is the provider limiting the key; a hint in whole seconds, or a random refusal's hint, holds
/// the key much longer than any limit needs.
#[derive(Debug, Default, Clone, Copy)]
struct PauseLog {
    start: u64,
    prev: u64,
    cur: u64,
    end: u64,
}

impl PauseLog {
    const WINDOW: u64 = 1_000_000_000;

    fn roll(&mut self, now: u64) {
        let age = now.saturating_sub(self.start);
        if age >= 2 * Self::WINDOW {
            self.start = now;
            self.prev = 0;
            self.cur = 0;
        } else if age >= Self::WINDOW {
            self.start += Self::WINDOW;
            self.prev = self.cur;
            self.cur = 0;
        }
    }

    /// The key is paused from `now` until `until`; it was paced at one unit per `interval`
    /// nanoseconds (0: not paced).
    fn add(&mut self, now: u64, until: u64, interval: u64) {
        let from = now.saturating_add(interval).max(self.end);
        if until <= from {
            return;
        }
        self.roll(now);
        self.cur += until - from;
        self.end = until;
    }

    /// The part of the last second the key was paused beyond its pace, at most 90 %: the
    /// rate sent while free is estimated from at least a tenth of a second.
    fn fraction(&mut self, now: u64) -> f64 {
        self.roll(now);
        let into = now.saturating_sub(self.start) as f64 / Self::WINDOW as f64;
        let ahead = self.end.saturating_sub(now) as f64;
        let paused = self.prev as f64 * (1.0 - into) + self.cur as f64 - ahead;
        (paused / Self::WINDOW as f64).clamp(0.0, 0.9)
    }

    /// How the key sent `sent` units per second over the last second, given its pauses.
    fn sending(&mut self, (sent, steady): (f64, bool), now: u64) -> Sending {
        let free = 1.0 - self.fraction(now);
        Sending {
            rate: sent / free,
            free,
            steady,
        }
    }
}

struct Waiter {
    id: u64,
    cost: u32,
    waker: Option<Waker>,
    notified: bool,
}

struct Block {
    until: u64,
    error: Box<ApiError>,
}

impl<K> MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// An empty store with default adaptive pacing, metering calls. `origin` is any instant
    /// at or before the first call (`clock.now()`).
    pub fn new(origin: Instant) -> Self {
        Self::with_settings(origin, Some(Adaptive::default()), Unit::Requests)
    }

    /// An empty store; `adaptive: None` turns adaptive pacing off (the provider's pauses,
    /// blocks and headers still apply). `unit` says which of the provider's rate-limit windows
    /// (requests or tokens) the key's rate is learned from.
    pub fn with_settings(origin: Instant, adaptive: Option<Adaptive>, unit: Unit) -> Self {
        let hasher = foldhash::fast::RandomState::default();
        let shards = (0..SHARDS)
            .map(|_| Shard {
                map: RwLock::new(HashMap::with_hasher(hasher.clone())),
                swept_len: AtomicUsize::new(0),
            })
            .collect();
        MemoryStore {
            origin,
            shards,
            unkeyed: Slot::new(),
            hasher,
            adaptive,
            unit,
            next_sweep: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
            waiters: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes the key tables hold (slots and control bytes, not counting allocator overhead or
    /// the lazily allocated parts of waiting and learning keys).
    pub fn table_bytes(&self) -> usize {
        let per_bucket = std::mem::size_of::<(K, Slot)>() + 1;
        self.shards
            .iter()
            .map(|s| read(&s.map).capacity() * per_bucket)
            .sum()
    }

    /// Evicts every idle key now. Never needed for correctness or boundedness (eviction is
    /// automatic); useful in tests and before measuring memory.
    pub fn evict_idle(&self, now: Instant) {
        let now = self.nanos(now);
        for shard in self.shards.iter() {
            self.sweep(shard, &mut write(&shard.map), now);
        }
    }

    /// The learned rate of `key` in units per second, if it has one.
    pub fn learned_rate(&self, key: Option<&K>) -> Option<f64> {
        self.with_existing(key, |slot| {
            let ext = slot.ext.get()?;
            let interval = ext.learned_interval.load(Ordering::Acquire);
            (interval > 0).then(|| 1e9 / interval as f64)
        })
        .flatten()
    }

    /// What a shared store needs of `key`'s local state at `now`: the bucket limits in effect
    /// (the configured quota, or the slower rate the provider's headers taught), how long a
    /// pause this process learned still runs, and the provider's error while a quota block
    /// runs. One map lookup under a read lock; the key's mutex only while a pause runs.
    #[cfg(feature = "redis")]
    pub(crate) fn local_view(
        &self,
        key: Option<&K>,
        quota: Option<Quota>,
        now: Instant,
    ) -> LocalView {
        let now = self.nanos(now);
        self.with_existing(key, |slot| {
            let ext = slot.ext.get().map(Arc::as_ref);
            let limits = Self::limits(quota, ext);
            let paused = ext.map_or(0, |e| e.paused_until.load(Ordering::Acquire));
            if paused <= now {
                return LocalView::of(limits);
            }
            let block = ext.and_then(|e| {
                let state = lock(&e.state);
                let block = state.block.as_ref().filter(|b| now < b.until)?;
                Some(block.error_until(block.until - now))
            });
            LocalView {
                limits,
                pause: Duration::from_nanos(paused - now),
                block,
            }
        })
        .unwrap_or_else(|| LocalView::of(Self::limits(quota, None)))
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        Nanos::since(self.origin, at).0
    }

    fn forget_ns(&self) -> u64 {
        self.adaptive
            .map_or(Adaptive::default().forget_after, |a| a.forget_after)
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &K) -> &Shard<K> {
        let hash = self.hasher.hash_one(key);
        // Middle bits pick the shard: the table inside uses the low bits for the bucket and the
        // top seven as tags, so neither may be constant within a shard.
        &self.shards[(hash >> 32) as usize & (SHARDS - 1)]
    }

    fn with_existing<R>(&self, key: Option<&K>, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        match key {
            None => Some(f(&self.unkeyed)),
            Some(key) => read(&self.shard(key).map).get(key).map(f),
        }
    }

    /// Runs `f` on the key's slot, creating it if needed. The shard lock is held while `f`
    /// runs, so a slot cannot be evicted under it; `f` never blocks.
    fn with_slot<R>(&self, key: Option<&K>, now: u64, f: impl FnOnce(&Slot) -> R) -> R {
        let Some(key) = key else {
            return f(&self.unkeyed);
        };
        let shard = self.shard(key);
        {
            let map = read(&shard.map);
            if let Some(slot) = map.get(key) {
                return f(slot);
            }
        }
        let mut map = write(&shard.map);
        if map.len() >= 2 * shard.swept_len.load(Ordering::Relaxed) + 1024 {
            // Grown to twice its size since the last sweep: sweep now, amortized O(1).
            self.sweep(shard, &mut map, now);
        }
        f(map.entry(key.clone()).or_insert_with(Slot::new))
    }

    fn maybe_sweep(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let step = SWEEP_PERIOD.as_nanos() as u64 / SHARDS as u64;
        if self
            .next_sweep
            .compare_exchange(due, now + step, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % SHARDS;
            let shard = &self.shards[i];
            self.sweep(shard, &mut write(&shard.map), now);
        }
    }

    fn sweep(
        &self,
        shard: &Shard<K>,
        map: &mut HashMap<K, Slot, foldhash::fast::RandomState>,
        now: u64,
    ) {
        let forget = self.forget_ns();
        map.retain(|_, slot| !slot.is_idle(now, forget));
        if map.capacity() > 4 * map.len() + 64 {
            map.shrink_to(2 * map.len());
        }
        shard.swept_len.store(map.len(), Ordering::Relaxed);
    }

    /// The bucket in effect: the configured quota, or the learned one when it is slower.
    fn limits(quota: Option<Quota>, ext: Option<&Ext>) -> Gcra {
        let configured = quota.map_or(Gcra::UNLIMITED, |q| q.gcra());
        let Some(ext) = ext else { return configured };
        let learned = ext.learned_interval.load(Ordering::Acquire);
        if learned > configured.interval {
            let burst = ext.learned_burst.load(Ordering::Acquire).max(1);
            let burst = if configured.interval > 0 {
                burst.min(configured.burst)
            } else {
                burst
            };
            Gcra {
                interval: learned,
                burst,
            }
        } else {
            configured
        }
    }

    /// The lowest `tat` the bucket may be read with: a provider's pause leaves the bucket
    /// empty at its end, so the queue drains one call at a time afterwards whatever the burst.
    /// Computed with the limits in effect at admission, so a rate learned after the pause
    /// still applies.
    #[inline]
    fn floor(limits: Gcra, ext: Option<&Ext>) -> u64 {
        ext.map_or(0, |e| {
            let paused = e.paused_until.load(Ordering::Acquire);
            if paused == 0 {
                0
            } else {
                limits.tat_paused_until(paused)
            }
        })
    }

    fn grant(&self, ext: Option<&Ext>) -> Grant {
        Grant {
            learns_from_success: self.adaptive.is_some()
                && ext.is_some_and(|e| e.learned_interval.load(Ordering::Relaxed) > 0),
        }
    }

    fn admit_now(
        &self,
        slot: &Slot,
        ask: &Ask,
        now: u64,
        ticket: Option<MemoryTicket>,
    ) -> Admission<MemoryTicket> {
        if ticket.is_none() {
            let ext = slot.ext.get().map(Arc::as_ref);
            let free = ext.is_none_or(|e| {
                e.queued.load(Ordering::Acquire) == 0
                    && e.paused_until.load(Ordering::Acquire) <= now
            });
            if free {
                let limits = Self::limits(ask.quota, ext);
                if slot.try_take(limits, Self::floor(limits, ext), now, ask.cost) {
                    if self.adaptive.is_some() {
                        slot.meter.record(now, ask.cost);
                    }
                    return Admission::Go(self.grant(ext));
                }
            }
        }
        let ext = slot.ext.get_or_init(|| Arc::new(Ext::new()));
        self.queue(slot, ext, ask, now, ticket)
    }

    /// The slow path: the key is busy (waiters, a pause, an empty bucket).
    fn queue(
        &self,
        slot: &Slot,
        ext: &Arc<Ext>,
        ask: &Ask,
        now: u64,
        ticket: Option<MemoryTicket>,
    ) -> Admission<MemoryTicket> {
        let mut state = lock(&ext.state);
        if let Some(block) = &state.block {
            if now < block.until {
                let error = block.error_until(block.until - now);
                Self::leave(ext, &mut state, ticket);
                return Admission::Reject(error);
            }
            state.block = None;
        }
        let limits = Self::limits(ask.quota, Some(ext));
        let paused = ext.paused_until.load(Ordering::Acquire);
        let id = ticket.as_ref().map(|t| t.id);
        let position = match id {
            Some(id) => state
                .queue
                .iter()
                .position(|w| w.id == id)
                .unwrap_or(state.queue.len()),
            None => state.queue.len(),
        };
        let earliest = if position == 0 {
            // The head of the queue: decide exactly, and take the bucket if it conforms.
            let floor = Self::floor(limits, Some(ext));
            loop {
                let tat = slot.tat.load(Ordering::Acquire);
                match limits.check(tat.max(floor), now, ask.cost) {
                    Verdict::Conform { tat: next } if paused <= now => {
                        if slot
                            .tat
                            .compare_exchange(tat, next, Ordering::AcqRel, Ordering::Acquire)
                            .is_ok()
                        {
                            if self.adaptive.is_some() {
                                slot.meter.record(now, ask.cost);
                            }
                            Self::leave(ext, &mut state, ticket);
                            drop(state);
                            return Admission::Go(self.grant(Some(ext)));
                        }
                    }
                    Verdict::Conform { .. } => break paused,
                    Verdict::NotBefore(at) => break at.max(paused),
                }
            }
        } else {
            let ahead: u64 = state
                .queue
                .iter()
                .take(position)
                .map(|w| u64::from(w.cost))
                .sum();
            let tat = slot
                .tat
                .load(Ordering::Acquire)
                .max(Self::floor(limits, Some(ext)));
            limits.earliest_after(tat, now, ahead, ask.cost).max(paused)
        };
        let deadline = if ask.reject_only {
            Some(now)
        } else {
            ask.deadline.map(|d| self.nanos(d))
        };
        if let Some(deadline) = deadline.filter(|&d| earliest > d || (position > 0 && now >= d)) {
            let reason = if paused > deadline {
                ThrottleReason::PausedByProvider
            } else if ask.reject_only {
                ThrottleReason::RateExceeded
            } else {
                ThrottleReason::WaitTooLong
            };
            Self::leave(ext, &mut state, ticket);
            let retry_after = Duration::from_nanos(earliest.saturating_sub(now));
            return Admission::Reject(Error::throttled(reason, Some(retry_after)));
        }
        let ticket = match ticket {
            Some(ticket) if position < state.queue.len() => ticket,
            other => {
                // A new caller (or a ticket the queue lost track of) joins at the back.
                if let Some(mut stale) = other {
                    stale.live = false;
                    self.waiters.fetch_sub(1, Ordering::Relaxed);
                }
                let id = state.next_id;
                state.next_id += 1;
                state.queue.push_back(Waiter {
                    id,
                    cost: ask.cost,
                    waker: None,
                    notified: false,
                });
                ext.queued.fetch_add(1, Ordering::AcqRel);
                self.waiters.fetch_add(1, Ordering::Relaxed);
                MemoryTicket {
                    ext: Arc::clone(ext),
                    id,
                    waiters: Arc::clone(&self.waiters),
                    live: true,
                }
            }
        };
        let until = if position == 0 {
            Some(earliest)
        } else {
            deadline
        };
        Admission::Wait {
            until: until.map(|n| Nanos(n).to_instant(self.origin)),
            ticket,
        }
    }

    /// Takes `ticket` (if any) out of the queue; wakes the new head if it was the head.
    fn leave(ext: &Ext, state: &mut ExtState, ticket: Option<MemoryTicket>) {
        if let Some(mut ticket) = ticket {
            ticket.live = false;
            ticket.waiters.fetch_sub(1, Ordering::Relaxed);
            ext.remove(state, ticket.id);
        }
    }

    fn learn_now(&self, key: Option<&K>, quota: Option<Quota>, lesson: Lesson) -> Learned {
        let now = self.nanos(lesson.now);
        let sent_at = self.nanos(lesson.sent_at);
        let snapshot = lesson.snapshot.filter(|s| !s.is_empty());
        let worth_a_slot =
            snapshot.is_some() || !matches!(lesson.signal, Signal::Success | Signal::Other);
        if !worth_a_slot {
            return self
                .with_existing(key, |slot| self.learn_success(slot, quota, now, sent_at))
                .unwrap_or_default();
        }
        self.with_slot(key, now, |slot| {
            let ext = slot.ext.get_or_init(|| Arc::new(Ext::new()));
            self.learn_into(slot, ext, quota, now, sent_at, lesson.signal, snapshot)
        })
    }

    /// A plain success, or an answer that is no rate signal (a 500, a timeout): it passed the
    /// provider's limiter. Only a key with a learned rate cares (it counts it, and grows).
    fn learn_success(&self, slot: &Slot, quota: Option<Quota>, now: u64, sent_at: u64) -> Learned {
        let (Some(ext), Some(adaptive)) = (slot.ext.get(), self.adaptive.as_ref()) else {
            return Learned::default();
        };
        if ext.learned_interval.load(Ordering::Acquire) == 0 {
            return Learned::default();
        }
        let mut state = lock(&ext.state);
        ext.last_lesson.store(now, Ordering::Relaxed);
        let sending = state.pauses.sending(slot.meter.reading(now), now);
        let ceiling = quota.map(|q| q.per_second());
        if let Some(pacer) = state.pacer.as_mut() {
            pacer.grow(adaptive, ceiling, now, sent_at, sending);
        }
        let mut learned = Learned::default();
        self.publish_rate(ext, &mut state, &mut learned);
        learned
    }

    #[allow(clippy::too_many_arguments)]
    fn learn_into(
        &self,
        slot: &Slot,
        ext: &Ext,
        quota: Option<Quota>,
        now: u64,
        sent_at: u64,
        signal: Signal,
        snapshot: Option<towline_core::RateLimitSnapshot>,
    ) -> Learned {
        let mut state = lock(&ext.state);
        let mut learned = Learned::default();
        // The interval the key was paced at when the answer's call left.
        let interval = Self::limits(quota, Some(ext)).interval;
        let last = ext.last_lesson.swap(now, Ordering::Relaxed);
        if now.saturating_sub(last) > self.forget_ns() {
            // Silent for longer than `forget_after`: what it learned is stale.
            state.pacer = None;
            state.header = None;
        }
        let ceiling = quota.map(|q| q.per_second());
        let sending = state.pauses.sending(slot.meter.reading(now), now);
        let mut pause: Option<(u64, ErrorKind)> = None;
        match signal {
            Signal::RateLimited { hint } => {
                self.cut(&mut state, ceiling, now, sent_at, sending);
                let until = now.saturating_add(hint.map_or(0, nanos_of));
                pause = Some((until, ErrorKind::RateLimited));
            }
            Signal::Overloaded => self.cut(&mut state, ceiling, now, sent_at, sending),
            Signal::QuotaExhausted { reset, error } => {
                let until = now.saturating_add(nanos_of(reset));
                state.block = Some(Block { until, error });
                pause = Some((until, ErrorKind::QuotaExhausted));
            }
            Signal::Success | Signal::Other => {
                // Any answer that is no rate signal passed the provider's limiter.
                if let (Some(pacer), Some(adaptive)) =
                    (state.pacer.as_mut(), self.adaptive.as_ref())
                {
                    pacer.grow(adaptive, ceiling, now, sent_at, sending);
                }
            }
        }
        if let Some(snapshot) = snapshot {
            if let Some(reset) = snapshot.exhausted_until() {
                let until = now.saturating_add(nanos_of(reset));
                let cause = match &pause {
                    Some((_, kind)) => *kind,
                    None => ErrorKind::Unknown,
                };
                if pause.is_none_or(|(p, _)| until > p) {
                    pause = Some((until, cause));
                }
            }
            let window = match self.unit {
                Unit::Requests => snapshot.requests,
                Unit::Tokens => snapshot.tokens,
            };
            if let Some(header) = header_rate(&window) {
                state.header = Some(header);
            }
            self.publish_rate(ext, &mut state, &mut learned);
            if let Some(remaining) = window.remaining.filter(|&r| r > 0) {
                // Never hold more than the provider says is left.
                let limits = Self::limits(quota, Some(ext));
                if limits.interval > 0 {
                    slot.tat
                        .fetch_max(limits.tat_holding(now, remaining), Ordering::AcqRel);
                }
            }
        } else {
            self.publish_rate(ext, &mut state, &mut learned);
        }
        if let Some((until, cause)) = pause {
            // Admissions read the bucket as empty at the end of the pause (see `floor`).
            ext.paused_until.fetch_max(until, Ordering::AcqRel);
            state.pauses.add(now, until, interval);
            if until > now {
                learned.paused = Some((Duration::from_nanos(until - now), cause));
            }
        }
        if pause.is_some() || learned.rate.is_some() {
            // Waiters re-check their deadlines against the new pause or rate.
            ext.notify_all(&mut state);
        }
        learned
    }

    fn cut(
        &self,
        state: &mut ExtState,
        ceiling: Option<f64>,
        now: u64,
        sent_at: u64,
        sending: Sending,
    ) {
        let Some(adaptive) = self.adaptive.as_ref() else {
            return;
        };
        match state.pacer.as_mut() {
            Some(pacer) => {
                pacer.cut(adaptive, ceiling, now, sent_at, sending);
            }
            None => state.pacer = Some(Pacer::first(adaptive, ceiling, now, sending)),
        }
    }

    /// Stores the slowest learned rate where admissions read it; reports a real change.
    fn publish_rate(&self, ext: &Ext, state: &mut ExtState, learned: &mut Learned) {
        let pacer = state.pacer.map(|p| Gcra::from_rate(p.rate(), 1));
        let governing = match (pacer, state.header) {
            (Some(p), Some(h)) => Some(if p.interval > h.interval { p } else { h }),
            (p, h) => p.or(h),
        };
        let (interval, burst) = governing.map_or((0, 0), |g| (g.interval, g.burst));
        ext.learned_burst.store(burst, Ordering::Release);
        ext.learned_interval.store(interval, Ordering::Release);
        let Some(rate) = governing.map(Gcra::per_second) else {
            return;
        };
        let changed = state
            .reported
            .is_none_or(|old| ((rate - old) / old).abs() >= REPORT_STEP);
        if changed {
            state.reported = Some(rate);
            learned.rate = Some(rate);
        }
    }
}

/// The rate a provider's window gives exactly: for a bucket that refills continuously (OpenAI:
/// `reset` is the time until it is full again), `(limit - remaining)` units come back in
/// `reset`. Without a limit, the remaining units spread evenly until the reset.
fn header_rate(window: &RateLimitWindow) -> Option<Gcra> {
    let reset = window.reset.filter(|d| !d.is_zero())?.as_secs_f64();
    let remaining = window.remaining?;
    match window.limit {
        Some(limit) if limit > remaining => {
            let burst = u32::try_from(limit).unwrap_or(u32::MAX);
            Some(Gcra::from_rate((limit - remaining) as f64 / reset, burst))
        }
        Some(_) => None,
        None if remaining > 0 => Some(Gcra::from_rate(remaining as f64 / reset, 1)),
        None => None,
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Ticket = MemoryTicket;
    type Admit = Ready<Admission<MemoryTicket>>;
    type Learn = Ready<Learned>;

    #[inline]
    fn admit(&self, key: Option<&K>, ask: &Ask, ticket: Option<MemoryTicket>) -> Self::Admit {
        let now = self.nanos(ask.now);
        self.maybe_sweep(now);
        ready(self.with_slot(key, now, |slot| self.admit_now(slot, ask, now, ticket)))
    }

    fn learn(&self, key: Option<&K>, quota: Option<Quota>, lesson: Lesson) -> Self::Learn {
        ready(self.learn_now(key, quota, lesson))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            live_keys: self.shards.iter().map(|s| read(&s.map).len()).sum(),
            waiters: self.waiters.load(Ordering::Relaxed),
        }
    }
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys are never printed, only counted.
        f.debug_struct("MemoryStore")
            .field(
                "live_keys",
                &self
                    .shards
                    .iter()
                    .map(|s| read(&s.map).len())
                    .sum::<usize>(),
            )
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .field("adaptive", &self.adaptive)
            .field("unit", &self.unit)
            .finish()
    }
}

impl Slot {
    fn new() -> Slot {
        Slot {
            tat: AtomicU64::new(0),
            meter: Meter(AtomicU64::new(0)),
            ext: OnceLock::new(),
        }
    }

    /// The lock-free admission: one load and one compare-and-swap when it conforms.
    #[inline]
    fn try_take(&self, limits: Gcra, floor: u64, now: u64, cost: u32) -> bool {
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            match limits.check(tat.max(floor), now, cost) {
                Verdict::Conform { tat: next } => {
                    match self.tat.compare_exchange_weak(
                        tat,
                        next,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return true,
                        Err(actual) => tat = actual,
                    }
                }
                Verdict::NotBefore(_) => return false,
            }
        }
    }

    fn is_idle(&self, now: u64, forget: u64) -> bool {
        if self.tat.load(Ordering::Acquire) > now || !self.meter.is_stale(now) {
            return false;
        }
        let Some(ext) = self.ext.get() else {
            return true;
        };
        // A pause leaves the bucket empty at its end, refilling for a bucket's depth after it
        // (see `MemoryStore::floor`), which `tat` does not show: keep a paused key until
        // `forget` past the pause, so that evicting it cannot hand out a full bucket early.
        let paused = ext.paused_until.load(Ordering::Acquire);
        // A live ticket holds a clone: somebody still waits on this key.
        Arc::strong_count(ext) == 1
            && ext.queued.load(Ordering::Acquire) == 0
            && (paused == 0 || paused.saturating_add(forget) <= now)
            && (ext.learned_interval.load(Ordering::Acquire) == 0
                || now.saturating_sub(ext.last_lesson.load(Ordering::Relaxed)) >= forget)
    }
}

impl Ext {
    fn new() -> Ext {
        Ext {
            paused_until: AtomicU64::new(0),
            queued: AtomicU32::new(0),
            learned_interval: AtomicU64::new(0),
            learned_burst: AtomicU32::new(0),
            last_lesson: AtomicU64::new(0),
            state: Mutex::new(ExtState::default()),
        }
    }

    fn remove(&self, state: &mut ExtState, id: u64) {
        let Some(position) = state.queue.iter().position(|w| w.id == id) else {
            return;
        };
        state.queue.remove(position);
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if position == 0
            && let Some(head) = state.queue.front_mut()
        {
            head.notify();
        }
    }

    fn notify_all(&self, state: &mut ExtState) {
        for waiter in state.queue.iter_mut() {
            waiter.notify();
        }
    }
}

impl Waiter {
    fn notify(&mut self) {
        match self.waker.take() {
            Some(waker) => waker.wake(),
            None => self.notified = true,
        }
    }
}

impl Block {
    /// The provider's error, with its hint set to the time left.
    fn error_until(&self, left: u64) -> Error {
        let mut error = (*self.error).clone();
        if let Some(hint) = error.retry_hint() {
            error = error.with_retry_hint(towline_core::RetryHint::new(
                Duration::from_nanos(left),
                hint.source,
            ));
        }
        Error::from(error)
    }
}

/// A key's local state as a shared store reads it (see [`MemoryStore::local_view`]).
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) struct LocalView {
    /// The bucket in effect.
    pub(crate) limits: Gcra,
    /// How long a pause learned here still runs (zero when none).
    pub(crate) pause: Duration,
    /// The provider's error while a quota block learned here runs.
    pub(crate) block: Option<Error>,
}

#[cfg(feature = "redis")]
impl LocalView {
    fn of(limits: Gcra) -> LocalView {
        LocalView {
            limits,
            pause: Duration::ZERO,
            block: None,
        }
    }
}

/// A call's place in its key's queue, from the [`MemoryStore`]. Dropping it gives the place
/// back: the calls behind move up and nothing of the bucket is consumed.
pub struct MemoryTicket {
    ext: Arc<Ext>,
    id: u64,
    waiters: Arc<AtomicUsize>,
    live: bool,
}

impl Ticket for MemoryTicket {
    fn register(&self, waker: &Waker) {
        let mut state = lock(&self.ext.state);
        if let Some(waiter) = state.queue.iter_mut().find(|w| w.id == self.id) {
            if std::mem::take(&mut waiter.notified) {
                waker.wake_by_ref();
            } else {
                match &mut waiter.waker {
                    Some(old) if old.will_wake(waker) => {}
                    slot => *slot = Some(waker.clone()),
                }
            }
        }
    }
}

impl Drop for MemoryTicket {
    fn drop(&mut self) {
        if self.live {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            let mut state = lock(&self.ext.state);
            self.ext.remove(&mut state, self.id);
        }
    }
}

impl fmt::Debug for MemoryTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryTicket")
            .field("id", &self.id)
            .finish()
    }
}

/// Units sent recently, for "the rate actually sent": two one-second windows packed in one
/// atomic as `[start tick: 16 bits | previous window: 24 bits | current window: 24 bits]`,
/// ticks of 125 ms. The estimate slides: the previous window counts for the part of it that
/// still lies within the last second (Cloudflare's sliding-window counter). A key that started
/// sending less than a second ago (after a silence) has its units spread over the ticks since
/// it started, not over a whole second: twenty calls in its first 10 ms are 160 a second, not
/// 20.
struct Meter(AtomicU64);

const TICK_NS: u64 = 125_000_000;
const WINDOW_TICKS: u16 = 8;
const COUNT_MAX: u64 = (1 << 24) - 1;
/// Units a young key must have sent for its rate to be spread over its time so far.
const YOUNG_COUNT: u64 = 2;
/// Units sent in the current window that make one refusal among them an isolated one.
const ISOLATING_COUNT: u64 = 8;

impl Meter {
    fn unpack(v: u64) -> (u16, u64, u64) {
        ((v >> 48) as u16, (v >> 24) & COUNT_MAX, v & COUNT_MAX)
    }

    fn pack(start: u16, prev: u64, cur: u64) -> u64 {
        (u64::from(start) << 48) | (prev.min(COUNT_MAX) << 24) | cur.min(COUNT_MAX)
    }

    fn tick(now: u64) -> u16 {
        // Wraps every 2.3 hours; a key idle that long has been evicted or forgotten.
        (now / TICK_NS) as u16
    }

    fn record(&self, now: u64, cost: u32) {
        let tick = Self::tick(now);
        let cost = u64::from(cost);
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (start, prev, cur) = Self::unpack(current);
            let age = tick.wrapping_sub(start);
            let next = if current == 0 || age >= 2 * WINDOW_TICKS {
                Self::pack(tick, 0, cost)
            } else if age >= WINDOW_TICKS {
                Self::pack(start.wrapping_add(WINDOW_TICKS), cur, cost)
            } else {
                Self::pack(start, prev, cur + cost)
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Units per second over the last second, and whether one refusal now would be isolated:
    /// the key was already sending the second before, or has sent a few units in this one.
    fn reading(&self, now: u64) -> (f64, bool) {
        let v = self.0.load(Ordering::Relaxed);
        let (start, prev, cur) = Self::unpack(v);
        let age = Self::tick(now).wrapping_sub(start);
        let steady = v != 0
            && if age < WINDOW_TICKS {
                prev > 0
            } else {
                age < 2 * WINDOW_TICKS && cur > 0
            };
        (self.rate(now), steady || cur >= ISOLATING_COUNT)
    }

    /// Units per second over the last second.
    fn rate(&self, now: u64) -> f64 {
        let v = self.0.load(Ordering::Relaxed);
        if v == 0 {
            return 0.0;
        }
        let (start, prev, cur) = Self::unpack(v);
        let mut age = Self::tick(now).wrapping_sub(start);
        let (prev, cur) = if age >= 2 * WINDOW_TICKS {
            return 0.0;
        } else if age >= WINDOW_TICKS {
            age -= WINDOW_TICKS;
            (cur, 0)
        } else {
            (prev, cur)
        };
        if prev == 0 && cur >= YOUNG_COUNT {
            // The first window after a silence: the key has been sending for less than a
            // second (its start tick included), so its units are spread over that time only
            // (once there are enough of them for a rate to mean something).
            return cur as f64 * f64::from(WINDOW_TICKS) / f64::from(age + 1);
        }
        let weight = f64::from(WINDOW_TICKS - age) / f64::from(WINDOW_TICKS);
        prev as f64 * weight + cur as f64
    }

    fn is_stale(&self, now: u64) -> bool {
        let v = self.0.load(Ordering::Relaxed);
        v == 0 || Self::tick(now).wrapping_sub(Self::unpack(v).0) >= 2 * WINDOW_TICKS
    }
}

fn nanos_of(d: Duration) -> u64 {
    Nanos::from(d).0
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
