//! The per-session FIFO queues, and the [`Slot`] that a request holds in one.
//!
//! A map from a session's digest to its [`Entry`], split into [`SHARDS`] shards, each a
//! `HashMap` behind its own mutex. An entry exists exactly while some request owns the
//! session's slot: it is inserted by the request that finds the session idle and removed by the
//! last owner when nobody waits behind it. So an idle session leaves nothing behind, and "is the
//! session busy?" is "is there an entry?".
//!
//! Every operation is one short critical section on one shard: an admission is a lookup plus an
//! insert (or a push onto the waiters), a release is a lookup plus a remove (or a pop). Wakers
//! are woken after the shard lock is dropped, so a waker that runs code inline cannot deadlock
//! on the map.
//!
//! The shards are ours rather than a `DashMap`'s so that a release can shrink its shard in the
//! same critical section: a shard that falls below a quarter full gives back its table (as the
//! throttle's store does), so a peak of a million busy sessions does not keep ~120 MB once they
//! are idle. Shrinking to twice the live entries costs a rehash of those entries, at most once
//! per halving, so it is amortized O(1) per release and never flaps.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

/// The ticket of the request that finds a session idle.
const FIRST_TICKET: u64 = 0;

/// Shards of the session map: enough that two threads rarely meet on one lock, few enough that
/// an empty layer stays small (an empty shard is one cache-line pair and no table).
const SHARDS: usize = 64;

/// A shard's table is given back when it holds more than four times its entries plus this
/// slack; the slack keeps small tables (up to 64 buckets) from being freed and re-allocated by
/// one session coming and going.
const SHRINK_SLACK: usize = 64;

type Table = HashMap<u64, Entry, BuildHasherDefault<DigestHasher>>;

#[repr(align(128))] // one shard per cache-line pair: no false sharing between shard locks
struct Shard(Mutex<Table>);

/// The state shared by a [`crate::SessionLayer`] and every service it builds (and their clones).
pub(crate) struct Sessions {
    shards: Box<[Shard]>,
    /// Keys the digests; random per process so that nobody can make two sessions collide.
    /// foldhash (as in the throttle and breaker) rather than std's SipHash: the key is
    /// usually a `KeyHash`, one `u64`, which foldhash digests in a few multiplies; the
    /// quality variant, because the digest is the session's identity in the map.
    digest: foldhash::quality::RandomState,
    pub(crate) max_queue_depth: usize,
    pub(crate) max_wait: Option<Duration>,
}

/// One busy session.
struct Entry {
    /// The ticket of the request that owns the slot (it may not have noticed yet, see
    /// [`Sessions::poll_turn`]).
    holder: u64,
    next_ticket: u64,
    /// Requests waiting for the slot, oldest first; their tickets ascend. Boxed on the first
    /// wait: most sessions never have a waiter, and then the entry is 24 bytes (not 48) and
    /// dropping it is one test (an empty `VecDeque`'s drop is not).
    #[allow(clippy::box_collection)] // the box keeps the idle-queue case to one pointer
    waiters: Option<Box<VecDeque<Waiter>>>,
}

struct Waiter {
    ticket: u64,
    /// Set on the waiter's first poll; `None` until then.
    waker: Option<Waker>,
}

impl Entry {
    fn held() -> Self {
        Entry {
            holder: FIRST_TICKET,
            next_ticket: FIRST_TICKET + 1,
            waiters: None,
        }
    }

    /// How many requests wait.
    fn waiting(&self) -> usize {
        self.waiters.as_ref().map_or(0, |w| w.len())
    }

    /// The oldest waiter leaves the queue (it is handed the slot).
    fn pop_waiter(&mut self) -> Option<Waiter> {
        self.waiters.as_mut()?.pop_front()
    }

    /// The waiter at `index` leaves the queue.
    fn remove_waiter(&mut self, index: usize) -> Option<Waiter> {
        self.waiters.as_mut()?.remove(index)
    }

    fn enqueue(&mut self) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiters.get_or_insert_default().push_back(Waiter {
            ticket,
            waker: None,
        });
        ticket
    }

    fn waiter_index(&self, ticket: u64) -> Option<usize> {
        self.waiters
            .as_ref()?
            .binary_search_by_key(&ticket, |w| w.ticket)
            .ok()
    }
}

/// What [`Sessions::admit`] decided for a request.
pub(crate) enum Admission {
    /// The session was idle: the request owns the slot now.
    Acquired(Slot),
    /// The session is busy: the request waits in line; poll the slot for its turn.
    Queued(Slot),
    /// The session already has `max_queue_depth` requests waiting.
    Full,
}

impl Sessions {
    pub(crate) fn new(max_queue_depth: usize, max_wait: Option<Duration>) -> Self {
        Sessions {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(Table::default())))
                .collect(),
            digest: foldhash::quality::RandomState::default(),
            max_queue_depth,
            max_wait,
        }
    }

    /// The 64-bit digest a session is filed under.
    ///
    /// Two distinct keys share a digest with probability 2^-64 per pair; they would then be
    /// served one at a time together, which is slower but never unsafe.
    #[inline]
    pub(crate) fn digest<K: Hash>(&self, key: &K) -> u64 {
        self.digest.hash_one(key)
    }

    /// Takes the slot of session `key` if it is idle, else a place at the back of its queue.
    pub(crate) fn admit(self: &Arc<Self>, key: u64) -> Admission {
        let mut map = self.lock(key);
        let queued = match map.entry(key) {
            MapEntry::Vacant(vacant) => {
                vacant.insert(Entry::held());
                None
            }
            MapEntry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                if entry.waiting() >= self.max_queue_depth {
                    return Admission::Full;
                }
                Some(entry.enqueue())
            }
        };
        drop(map);
        // The `Arc` is cloned after the shard lock is released.
        match queued {
            None => Admission::Acquired(Slot::new(self.clone(), key, FIRST_TICKET)),
            Some(ticket) => Admission::Queued(Slot::new(self.clone(), key, ticket)),
        }
    }

    /// Whether `ticket` owns the slot of session `key` now; if not, `waker` is woken when it
    /// does.
    fn poll_turn(&self, key: u64, ticket: u64, waker: &Waker) -> bool {
        let mut map = self.lock(key);
        let Some(entry) = map.get_mut(&key) else {
            unreachable!("a queued request keeps its session's entry alive");
        };
        if entry.holder == ticket {
            return true;
        }
        let replaced = entry.waiter_index(ticket).and_then(|i| {
            let known = &mut entry.waiters.as_mut()?[i].waker;
            match known {
                Some(known) if known.will_wake(waker) => None,
                _ => known.replace(waker.clone()),
            }
        });
        drop(map);
        // A waker may run arbitrary code when dropped: never under the shard lock.
        drop(replaced);
        false
    }

    /// Gives up `ticket`'s place in the queue of session `key`, unless the slot was handed to it
    /// in the meantime: returns whether it owns the slot.
    fn withdraw(&self, key: u64, ticket: u64) -> bool {
        let mut map = self.lock(key);
        let Some(entry) = map.get_mut(&key) else {
            unreachable!("a queued request keeps its session's entry alive");
        };
        if entry.holder == ticket {
            return true;
        }
        let left = entry
            .waiter_index(ticket)
            .and_then(|i| entry.remove_waiter(i));
        drop(map);
        drop(left);
        false
    }

    /// `ticket` leaves session `key`: an owner hands the slot to the oldest waiter (or removes
    /// the idle entry); a waiter leaves the queue.
    fn leave(&self, key: u64, ticket: u64) {
        let mut map = self.lock(key);
        let (next, left) = match map.entry(key) {
            MapEntry::Occupied(mut occupied) => {
                let entry = occupied.get_mut();
                if entry.holder == ticket {
                    match entry.pop_waiter() {
                        Some(next) => {
                            entry.holder = next.ticket;
                            (next.waker, None)
                        }
                        None => {
                            occupied.remove();
                            shrink_if_sparse(&mut map);
                            (None, None)
                        }
                    }
                } else {
                    let left = entry
                        .waiter_index(ticket)
                        .and_then(|i| entry.remove_waiter(i));
                    (None, left)
                }
            }
            MapEntry::Vacant(_) => (None, None),
        };
        drop(map);
        // Woken and dropped outside the shard lock: a waker may run arbitrary code.
        drop(left);
        if let Some(waker) = next {
            waker.wake();
        }
    }

    /// Counts busy sessions and waiting requests. Visits every shard: for tests and monitoring,
    /// not for the request path.
    pub(crate) fn snapshot(&self) -> SessionSnapshot {
        let mut snapshot = SessionSnapshot::default();
        for shard in self.shards.iter() {
            let map = lock(&shard.0);
            snapshot.sessions += map.len();
            snapshot.waiting += map.values().map(Entry::waiting).sum::<usize>();
        }
        snapshot
    }

    /// The entries the shards' tables can hold without growing, all together: what the map
    /// keeps allocated. For tests.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).capacity()).sum()
    }

    /// Locks the shard of `key`. Middle bits of the digest pick it: the table inside uses the
    /// low bits for the bucket and the top seven as tags, so neither may be constant within a
    /// shard.
    #[inline]
    fn lock(&self, key: u64) -> MutexGuard<'_, Table> {
        lock(&self.shards[(key >> 32) as usize % SHARDS].0)
    }
}

/// Locks a shard. A panic while a shard was locked cannot leave an entry half-updated (every
/// critical section is a handful of infallible steps), so a poisoned lock is used as is.
#[inline]
fn lock(shard: &Mutex<Table>) -> MutexGuard<'_, Table> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Gives back a shard's table once it is less than a quarter full (keeping room for twice its
/// entries), so that memory follows the busy sessions down after a peak.
#[inline]
fn shrink_if_sparse(map: &mut Table) {
    if map.capacity() > 4 * map.len() + SHRINK_SLACK {
        map.shrink_to(2 * map.len());
    }
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Digests only identify sessions; the config is what helps when debugging.
        f.debug_struct("Sessions")
            .field("max_queue_depth", &self.max_queue_depth)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

/// A request's claim on a session: a place in its queue, then its slot. Dropping it leaves:
/// an owner passes the slot on, a waiter leaves the queue (and if the slot had just been handed
/// to it, passes it on too).
pub(crate) struct Slot {
    /// `None` once the claim has been given up by [`Slot::withdraw`].
    sessions: Option<Arc<Sessions>>,
    key: u64,
    ticket: u64,
}

impl Slot {
    fn new(sessions: Arc<Sessions>, key: u64, ticket: u64) -> Self {
        Slot {
            sessions: Some(sessions),
            key,
            ticket,
        }
    }

    /// Whether this request owns the slot now; if not, `waker` is woken when it does.
    pub(crate) fn poll_turn(&self, waker: &Waker) -> bool {
        match &self.sessions {
            Some(sessions) => sessions.poll_turn(self.key, self.ticket, waker),
            None => false,
        }
    }

    /// Leaves the queue, unless the slot has just been handed over: returns the slot then.
    pub(crate) fn withdraw(mut self) -> Option<Slot> {
        let sessions = self.sessions.take()?;
        if sessions.withdraw(self.key, self.ticket) {
            self.sessions = Some(sessions);
            Some(self)
        } else {
            None
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(sessions) = self.sessions.take() {
            sessions.leave(self.key, self.ticket);
        }
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// How many sessions are busy and how many requests wait, at one moment.
///
/// ```
/// use towline_session::SessionLayer;
///
/// let layer = SessionLayer::new();
/// let snapshot = layer.monitor().snapshot();
/// assert_eq!(snapshot.sessions, 0);
/// assert!(snapshot.is_idle());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSnapshot {
    /// Sessions whose slot is owned by a request (waiting for the inner service, or whose
    /// response body is still being read). Idle sessions are not stored, so they do not count.
    pub sessions: usize,
    /// Requests waiting behind an earlier turn of their session.
    pub waiting: usize,
}

impl SessionSnapshot {
    /// No session busy and nobody waiting: the layer holds no state at all.
    pub fn is_idle(&self) -> bool {
        self.sessions == 0 && self.waiting == 0
    }
}

/// A handle on the sessions of a [`crate::SessionLayer`], to count what is live: for tests,
/// health checks and soak reports. Cheap to clone; it keeps the state alive but never blocks it.
///
/// ```
/// use towline_session::SessionLayer;
///
/// let layer = SessionLayer::new();
/// let monitor = layer.monitor();
/// // ... build the stack with `layer`, run traffic, drop everything ...
/// assert_eq!(monitor.live_sessions(), 0);
/// assert_eq!(monitor.waiting(), 0);
/// ```
#[derive(Clone)]
pub struct SessionMonitor {
    pub(crate) sessions: Arc<Sessions>,
}

impl SessionMonitor {
    /// Busy sessions and waiting requests now.
    pub fn snapshot(&self) -> SessionSnapshot {
        self.sessions.snapshot()
    }

    /// Sessions whose slot is owned by a request now.
    pub fn live_sessions(&self) -> usize {
        self.snapshot().sessions
    }

    /// Requests waiting for their session's slot now.
    pub fn waiting(&self) -> usize {
        self.snapshot().waiting
    }
}

impl fmt::Debug for SessionMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionMonitor")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// Hashes the map's `u64` keys as themselves: they are already uniformly distributed keyed
/// digests, so hashing them again would only cost time.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write_u64(&mut self, digest: u64) {
        self.0 = digest;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here; fold anything else rather than ignore it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (counter.clone(), Waker::from(counter))
    }

    fn sessions(depth: usize) -> Arc<Sessions> {
        Arc::new(Sessions::new(depth, None))
    }

    fn acquired(a: Admission) -> Slot {
        match a {
            Admission::Acquired(slot) => slot,
            _ => panic!("expected the slot"),
        }
    }

    fn queued(a: Admission) -> Slot {
        match a {
            Admission::Queued(slot) => slot,
            _ => panic!("expected a place in the queue"),
        }
    }

    #[test]
    fn release_hands_the_slot_to_the_oldest_waiter_and_wakes_it() {
        let s = sessions(8);
        let first = acquired(s.admit(1));
        let second = queued(s.admit(1));
        let third = queued(s.admit(1));
        let (count2, w2) = waker();
        let (count3, w3) = waker();
        assert!(!second.poll_turn(&w2));
        assert!(!third.poll_turn(&w3));

        drop(first);
        assert_eq!(count2.0.load(Ordering::SeqCst), 1);
        assert_eq!(count3.0.load(Ordering::SeqCst), 0);
        assert!(second.poll_turn(&w2));
        assert!(!third.poll_turn(&w3));

        drop(second);
        assert!(third.poll_turn(&w3));
        drop(third);
        assert!(s.snapshot().is_idle());
    }

    #[test]
    fn a_waiter_handed_the_slot_but_dropped_passes_it_on() {
        let s = sessions(8);
        let first = acquired(s.admit(7));
        let second = queued(s.admit(7));
        let third = queued(s.admit(7));
        drop(first); // `second` owns the slot now, without having noticed.
        drop(second);
        let (_, w) = waker();
        assert!(third.poll_turn(&w));
        drop(third);
        assert!(s.snapshot().is_idle());
    }

    #[test]
    fn withdraw_keeps_a_slot_that_was_just_handed_over() {
        let s = sessions(8);
        let first = acquired(s.admit(3));
        let second = queued(s.admit(3));
        let third = queued(s.admit(3));
        assert!(third.withdraw().is_none(), "still queued: leaves the line");
        assert_eq!(s.snapshot().waiting, 1);
        drop(first);
        let second = second.withdraw().expect("the slot was handed over");
        assert_eq!(
            s.snapshot(),
            SessionSnapshot {
                sessions: 1,
                waiting: 0
            }
        );
        drop(second);
        assert!(s.snapshot().is_idle());
    }

    #[test]
    fn depth_counts_waiters_only() {
        let s = sessions(1);
        let _owner = acquired(s.admit(9));
        let _waiter = queued(s.admit(9));
        assert!(matches!(s.admit(9), Admission::Full));
        // Other sessions are unaffected.
        let _other = acquired(s.admit(10));
    }

    #[test]
    fn zero_depth_refuses_any_wait() {
        let s = sessions(0);
        let owner = acquired(s.admit(1));
        assert!(matches!(s.admit(1), Admission::Full));
        drop(owner);
        let _again = acquired(s.admit(1));
    }

    #[test]
    fn a_busy_session_stays_small() {
        // 100k live sessions: every byte of an entry counts 100k times.
        assert!(
            std::mem::size_of::<Entry>() <= 48,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }

    #[test]
    fn a_peak_of_busy_sessions_gives_its_table_back_once_idle() {
        const PEAK: u64 = 100_000;
        let s = sessions(4);
        let busy: Vec<Slot> = (0..PEAK).map(|n| acquired(s.admit(s.digest(&n)))).collect();
        assert!(s.capacity() >= PEAK as usize, "{}", s.capacity());
        drop(busy);
        assert!(s.snapshot().is_idle());
        // At most the slack per shard stays: a few thousand entries' room, not the peak's.
        assert!(
            s.capacity() <= SHARDS * SHRINK_SLACK,
            "{} entries' room kept after the peak",
            s.capacity()
        );
    }

    #[test]
    fn one_session_coming_and_going_keeps_its_small_table() {
        let s = sessions(4);
        drop(acquired(s.admit(s.digest(&"conv"))));
        let kept = s.capacity();
        assert!(kept > 0);
        for _ in 0..100 {
            drop(acquired(s.admit(s.digest(&"conv"))));
            assert_eq!(s.capacity(), kept, "no free and re-allocate per call");
        }
    }

    #[test]
    fn shrinking_keeps_the_busy_sessions_and_their_queues() {
        let s = sessions(4);
        let mut busy: Vec<Slot> = (0..10_000u64)
            .map(|n| acquired(s.admit(s.digest(&n))))
            .collect();
        let waiter = queued(s.admit(s.digest(&7u64)));
        // Release all but sessions 0 to 9 (7 among them): the shards shrink under them.
        let kept: Vec<Slot> = busy.drain(..10).collect();
        drop(busy);
        assert_eq!(
            s.snapshot(),
            SessionSnapshot {
                sessions: 10,
                waiting: 1
            }
        );
        assert!(s.capacity() <= SHARDS * SHRINK_SLACK, "{}", s.capacity());
        let (count, w) = waker();
        assert!(!waiter.poll_turn(&w));
        drop(kept);
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "7's waiter was handed the slot"
        );
        assert!(waiter.poll_turn(&w));
        drop(waiter);
        assert!(s.snapshot().is_idle());
    }

    #[test]
    fn digests_are_stable_within_a_layer() {
        let s = sessions(1);
        assert_eq!(s.digest(&"conv-1"), s.digest(&"conv-1"));
        assert_ne!(s.digest(&"conv-1"), s.digest(&"conv-2"));
    }

    /// A waker that reads the map when woken or dropped: deadlocks if that happens under a
    /// shard lock.
    struct Reentrant(Arc<Sessions>);

    impl Wake for Reentrant {
        fn wake(self: Arc<Self>) {
            let _ = self.0.snapshot();
        }
    }

    impl Drop for Reentrant {
        fn drop(&mut self) {
            let _ = self.0.snapshot();
        }
    }

    fn on_a_thread(name: &str, f: impl FnOnce() + Send + 'static) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            done.send(()).unwrap();
        });
        finished
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{name}: deadlocked on the map"));
    }

    #[test]
    fn wakers_are_woken_and_dropped_outside_the_shard_lock() {
        on_a_thread("replaced waker", || {
            let s = sessions(4);
            let _owner = acquired(s.admit(1));
            let waiter = queued(s.admit(1));
            assert!(!waiter.poll_turn(&Waker::from(Arc::new(Reentrant(s.clone())))));
            let (_, other) = waker();
            assert!(!waiter.poll_turn(&other));
        });
        on_a_thread("withdrawn waiter", || {
            let s = sessions(4);
            let _owner = acquired(s.admit(1));
            let waiter = queued(s.admit(1));
            assert!(!waiter.poll_turn(&Waker::from(Arc::new(Reentrant(s.clone())))));
            assert!(waiter.withdraw().is_none());
        });
        on_a_thread("dropped waiter", || {
            let s = sessions(4);
            let _owner = acquired(s.admit(1));
            let waiter = queued(s.admit(1));
            assert!(!waiter.poll_turn(&Waker::from(Arc::new(Reentrant(s.clone())))));
            drop(waiter);
        });
        on_a_thread("handed over", || {
            let s = sessions(4);
            let owner = acquired(s.admit(1));
            let waiter = queued(s.admit(1));
            assert!(!waiter.poll_turn(&Waker::from(Arc::new(Reentrant(s.clone())))));
            drop(owner);
            drop(waiter);
            assert!(s.snapshot().is_idle());
        });
    }
}
