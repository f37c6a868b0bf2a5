//! A retry budget shared by every clone of a service.
//!
//! # Why budgets and not only max retries?
//!
//! A fixed number of retries per call multiplies load exactly when the provider can least take
//! it: during an outage every call becomes `1 + max_retries` calls. A budget bounds retries as a
//! fraction of recent traffic instead (Finagle's and tower's model): each call deposits
//! `ratio` of a retry, each retry withdraws one, and a small floor of retries per second keeps a
//! quiet client able to retry at all. With the default 20 % + 10/s over 10 s, an outage costs at
//! most 1.2 × the calls plus 100 retries per 10 s, however many calls are in flight.
//!
//! # Exact for every ratio
//!
//! tower's `TpsBudget` stores a retry's cost as `(1 / ratio) as isize`, so a ratio of 0.6
//! costs 1 deposit per retry and behaves as 1.0 (tower #857). Here one retry costs
//! 1,000,000 units and a call deposits `ratio × 1,000,000` units, rounded *down*: every ratio
//! that is a multiple of one millionth (0.01, 0.2, 0.6, 0.333333, ...) is exact, and any other is
//! rounded to the millionth below, never above.
//!
//! # Lock-free
//!
//! Deposits and withdrawals land in one slot per second, `ttl` slots in a ring. Each slot is a
//! single `AtomicU64` packing the second it belongs to (24 bits) with its balance (40 bits), so a
//! slot is recycled and updated by one compare-and-swap: no lock, no generation mutex (tower
//! takes a `Mutex` on every deposit). A deposit costs a clock read, one atomic load and one
//! CAS; a withdrawal subtracts first and then checks the window's sum, refunding if it overdrew,
//! so concurrent withdrawals can never spend the same unit twice. The first operation of each
//! second recycles the slots of the seconds that passed untouched (a few CAS), so a slot never
//! holds a second old enough for its 24-bit tag to be ambiguous; only after a whole `ttl`
//! without any call does the first call reset every slot while others wait for those few
//! stores: the one place where the budget is not strictly lock-free, and it is idle by then.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use towline_core::{Clock, TokioClock};

use crate::ConfigError;

/// Units one retry costs. A call deposits `ratio × SCALE` units.
const SCALE: i64 = 1_000_000;
const VALUE_BITS: u32 = 40;
const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
const VALUE_MAX: i64 = (1 << (VALUE_BITS - 1)) - 1;
const VALUE_MIN: i64 = -(1 << (VALUE_BITS - 1));
const TAG_BITS: u32 = 64 - VALUE_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// The largest floor accepted, in retries per second.
const MAX_FLOOR: u32 = 1_000_000;
/// The longest window accepted.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A retry budget: retries allowed as a fraction of recent calls, plus a floor per second.
///
/// Clones share the same balance (it lives behind an `Arc`), so one budget can bound the
/// retries of every clone of a service, or of several services. Each call the retry layer
/// handles deposits `ratio` of a retry; each retry withdraws one, and a withdrawal is allowed
/// while the deposits minus the withdrawals of the last `ttl` seconds, plus `floor × ttl`, stay
/// non-negative. Deposits and withdrawals older than `ttl` expire, so the budget follows recent
/// traffic, and no deposit is ever spent twice. From the budget's creation up to any second `t`,
///
/// > retries ≤ ratio × calls + floor × ttl × ⌈(t + 1) / ttl⌉
///
/// that is, about `ratio × calls + floor × (t + ttl)`; within the first `ttl` seconds simply
/// `ratio × calls + floor × ttl`.
///
/// ```
/// use std::time::Duration;
/// use towline_retry::RetryBudget;
///
/// // 60 % of calls may be retried, with no floor.
/// let budget = RetryBudget::new(0.6, 0, Duration::from_secs(10)).unwrap();
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// let retries = (0..10).filter(|_| budget.try_withdraw()).count();
/// assert_eq!(retries, 6); // exactly 6 (tower's TpsBudget allows 10)
/// ```
pub struct RetryBudget<C = TokioClock> {
    state: Arc<State<C>>,
}

struct State<C> {
    clock: C,
    origin: Instant,
    /// Units a call deposits.
    deposit: i64,
    /// Units always available in a window: `floor × ttl × SCALE`.
    reserve: i64,
    /// One slot per second of the window, indexed by `second % ttl`.
    slots: Box<[AtomicU64]>,
    /// `(latest second seen << 1) | resetting`: lets the first operation of a new second
    /// recycle the slots of the seconds nobody touched, so that every slot always holds one of
    /// the last `ttl` seconds and a 24-bit tag is never mistaken for a second 2²⁴ s away.
    latest: AtomicU64,
    ratio: f64,
    floor: u32,
    ttl: Duration,
}

impl RetryBudget<TokioClock> {
    /// The default ratio: 20 % of calls may be retried.
    pub const DEFAULT_RATIO: f64 = 0.2;
    /// The default floor: 10 retries per second.
    pub const DEFAULT_FLOOR: u32 = 10;
    /// The default window: 10 seconds.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

    /// A budget allowing `ratio` (0 to 1) of the calls of the last `ttl` to be retried, plus
    /// `floor` retries per second.
    ///
    /// Fails when `ratio` is not in `[0, 1]`, when `floor` is above 1,000,000, when both are
    /// zero (a budget that never allows a retry; set `max_retries(0)` for that), or when `ttl`
    /// is not a whole number of seconds between 1 s and 1 h.
    pub fn new(ratio: f64, floor: u32, ttl: Duration) -> Result<Self, ConfigError> {
        Self::with_clock(ratio, floor, ttl, TokioClock)
    }
}

impl Default for RetryBudget<TokioClock> {
    /// 20 % of calls + 10 retries per second, over 10 seconds.
    fn default() -> Self {
        Self::new(Self::DEFAULT_RATIO, Self::DEFAULT_FLOOR, Self::DEFAULT_TTL)
            .expect("the defaults are valid")
    }
}

impl<C: Clock> RetryBudget<C> {
    /// Like [`RetryBudget::new`], reading time from `clock` (a `FakeClock` in tests).
    ///
    /// ```
    /// use std::time::Duration;
    /// use towline_core::FakeClock;
    /// use towline_retry::RetryBudget;
    ///
    /// let clock = FakeClock::new();
    /// let budget = RetryBudget::with_clock(1.0, 0, Duration::from_secs(1), clock.clone()).unwrap();
    /// budget.deposit();
    /// clock.advance(Duration::from_secs(2));
    /// assert!(!budget.try_withdraw()); // the deposit expired
    /// ```
    pub fn with_clock(
        ratio: f64,
        floor: u32,
        ttl: Duration,
        clock: C,
    ) -> Result<Self, ConfigError> {
        validate(ratio, floor, ttl)?;
        let seconds = ttl.as_secs();
        let slots = (0..seconds).map(|_| AtomicU64::new(0)).collect();
        let deposit = deposit_units(ratio);
        let reserve = i64::from(floor) * seconds as i64 * SCALE;
        Ok(RetryBudget {
            state: Arc::new(State {
                origin: clock.now(),
                clock,
                deposit,
                reserve,
                slots,
                latest: AtomicU64::new(0),
                ratio,
                floor,
                ttl,
            }),
        })
    }

    /// Records one call. Called once per call, never per attempt.
    #[inline]
    pub fn deposit(&self) {
        let state = &*self.state;
        if state.deposit != 0 {
            state.add(state.epoch(), state.deposit, IfNewer::Skip);
        }
    }

    /// [`deposit`](Self::deposit) at `now`, an instant the caller already read from the same
    /// clock (the retry layer reads the time once per call).
    #[inline]
    pub(crate) fn deposit_at(&self, now: Instant) {
        let state = &*self.state;
        if state.deposit != 0 {
            state.add(state.epoch_at(now), state.deposit, IfNewer::Skip);
        }
    }

    /// Takes one retry from the budget; `false` (and nothing taken) when it is empty.
    pub fn try_withdraw(&self) -> bool {
        self.state.withdraw().is_some()
    }

    /// Takes one retry that is given back if the returned guard is dropped before
    /// [`Reservation::commit`]: a retry cancelled while waiting costs nothing.
    pub(crate) fn reserve(&self) -> Option<Reservation<C>> {
        let slot = self.state.withdraw()?;
        Some(Reservation {
            budget: self.clone(),
            slot,
            committed: false,
        })
    }

    /// How many retries could be withdrawn right now.
    pub fn available(&self) -> u64 {
        let state = &*self.state;
        (state.balance(state.epoch()).max(0) / SCALE) as u64
    }

    /// The fraction of calls that may be retried, as configured.
    pub fn ratio(&self) -> f64 {
        self.state.ratio
    }

    /// Retries per second always allowed.
    pub fn floor(&self) -> u32 {
        self.state.floor
    }

    /// How long a deposit or withdrawal counts.
    pub fn ttl(&self) -> Duration {
        self.state.ttl
    }
}

impl<C> Clone for RetryBudget<C> {
    fn clone(&self) -> Self {
        RetryBudget {
            state: self.state.clone(),
        }
    }
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.state.ratio)
            .field("floor", &self.state.floor)
            .field("ttl", &self.state.ttl)
            .field("available", &self.available())
            .finish()
    }
}

fn validate(ratio: f64, floor: u32, ttl: Duration) -> Result<(), ConfigError> {
    if !(0.0..=1.0).contains(&ratio) {
        return Err(ConfigError::new(
            "budget_ratio",
            format!("{ratio} is not a fraction between 0 and 1"),
        ));
    }
    if floor > MAX_FLOOR {
        return Err(ConfigError::new(
            "budget_floor",
            format!("{floor} retries per second is above the maximum of {MAX_FLOOR}"),
        ));
    }
    if deposit_units(ratio) == 0 && floor == 0 {
        return Err(ConfigError::new(
            "budget_ratio",
            "with budget_floor 0 the budget never allows a retry; use max_retries(0) to disable retries",
        ));
    }
    if ttl.is_zero() || ttl > MAX_TTL || ttl.subsec_nanos() != 0 {
        return Err(ConfigError::new(
            "budget_ttl",
            format!("{ttl:?} is not a whole number of seconds between 1 s and 1 h"),
        ));
    }
    Ok(())
}

/// `ratio × SCALE`, rounded down, so that the budget never allows more than configured. The
/// small epsilon absorbs binary floating point error (`0.6 × 1e6 = 599999.9999...`).
fn deposit_units(ratio: f64) -> i64 {
    (ratio * SCALE as f64 + 1e-3).floor() as i64
}

/// What to do with an update whose slot already moved to a later second (the caller read the
/// clock, was preempted, and another thread recycled the slot meanwhile).
#[derive(Clone, Copy)]
enum IfNewer {
    /// Drop it (deposits: one lost deposit only makes the budget stricter).
    Skip,
    /// Apply it to the later second (withdrawals must always be recorded).
    Apply,
}

/// Where a withdrawal was recorded, to refund it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    index: usize,
    tag: u64,
}

impl<C: Clock> State<C> {
    /// Seconds since the budget was created.
    /// The current second, after recycling the slots of seconds that passed untouched.
    #[inline]
    fn epoch(&self) -> u64 {
        self.epoch_at(self.clock.now())
    }

    #[inline]
    fn epoch_at(&self, now: Instant) -> u64 {
        let epoch = now.saturating_duration_since(self.origin).as_secs();
        if self.latest.load(Ordering::Acquire) >> 1 < epoch {
            self.advance(epoch);
        }
        epoch
    }

    /// Moves `latest` to `epoch` (once per second at most, so off the hot path).
    ///
    /// Keeps the invariant that every slot holds one of the `ttl` seconds up to `latest`:
    /// after a short gap, the skipped seconds' slots are recycled one CAS each (a concurrent
    /// update of the same second wins, as it should); after a gap of a whole window or more,
    /// every slot is stale and is reset while other threads wait for the few stores it takes.
    /// That happens only on the first call after `ttl` seconds without any call.
    #[cold]
    fn advance(&self, epoch: u64) {
        let window = self.slots.len() as u64;
        let mut spins = 0u32;
        loop {
            let word = self.latest.load(Ordering::Acquire);
            let latest = word >> 1;
            if word & 1 == 1 {
                // Another thread is resetting the slots.
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
                continue;
            }
            if latest >= epoch {
                return;
            }
            if epoch - latest < window {
                if self
                    .latest
                    .compare_exchange(word, epoch << 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    for skipped in latest + 1..=epoch {
                        self.add(skipped, 0, IfNewer::Skip);
                    }
                    return;
                }
            } else if self
                .latest
                .compare_exchange(word, (epoch << 1) | 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                for second in epoch + 1 - window..=epoch {
                    self.slots[self.index(second)].store(pack(second, 0), Ordering::Release);
                }
                self.latest.store(epoch << 1, Ordering::Release);
                return;
            }
        }
    }

    fn index(&self, epoch: u64) -> usize {
        (epoch % self.slots.len() as u64) as usize
    }

    /// Adds `delta` to the slot of `epoch`, recycling the slot if it holds an expired second.
    fn add(&self, epoch: u64, delta: i64, if_newer: IfNewer) -> Option<Slot> {
        let index = self.index(epoch);
        let slot = &self.slots[index];
        let tag = epoch & TAG_MASK;
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (slot_tag, value) = unpack(word);
            let age = tag_distance(tag, slot_tag);
            let (new_tag, new_value) = if age == 0 {
                (tag, value.saturating_add(delta))
            } else if age > 0 {
                // The slot holds a second at least `ttl` old: it has expired.
                (tag, delta)
            } else {
                match if_newer {
                    IfNewer::Skip => return None,
                    IfNewer::Apply => (slot_tag, value.saturating_add(delta)),
                }
            };
            let new = pack(new_tag, new_value);
            match slot.compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Some(Slot {
                        index,
                        tag: new_tag,
                    });
                }
                Err(current) => word = current,
            }
        }
    }

    /// Takes one retry: subtract first, then check, so that two concurrent withdrawals can
    /// never both spend the last unit.
    fn withdraw(&self) -> Option<Slot> {
        let epoch = self.epoch();
        let slot = self.add(epoch, -SCALE, IfNewer::Apply)?;
        if self.balance(epoch) >= 0 {
            Some(slot)
        } else {
            self.refund(slot);
            None
        }
    }

    /// Gives back a withdrawal, unless its second has expired (then it no longer counts).
    fn refund(&self, at: Slot) {
        let slot = &self.slots[at.index];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (tag, value) = unpack(word);
            if tag != at.tag {
                return;
            }
            let new = pack(tag, value.saturating_add(SCALE));
            match slot.compare_exchange_weak(word, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// The reserve plus every slot of the `ttl` seconds ending at `epoch`, in units.
    fn balance(&self, epoch: u64) -> i64 {
        let tag = epoch & TAG_MASK;
        let window = self.slots.len() as i64;
        self.slots
            .iter()
            .map(|slot| unpack(slot.load(Ordering::Acquire)))
            // A slot from a later second (another thread's clock read) counts too.
            .filter(|&(slot_tag, _)| tag_distance(tag, slot_tag).abs() < window)
            .fold(self.reserve, |sum, (_, value)| sum.saturating_add(value))
    }
}

/// A withdrawn retry that is refunded when dropped uncommitted.
pub(crate) struct Reservation<C: Clock = TokioClock> {
    budget: RetryBudget<C>,
    slot: Slot,
    committed: bool,
}

impl<C: Clock> Reservation<C> {
    /// The retry is being sent: keep the withdrawal.
    pub(crate) fn commit(mut self) {
        self.committed = true;
    }
}

impl<C: Clock> Drop for Reservation<C> {
    fn drop(&mut self) {
        if !self.committed {
            self.budget.state.refund(self.slot);
        }
    }
}

impl<C: Clock> fmt::Debug for Reservation<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("committed", &self.committed)
            .finish()
    }
}

fn pack(tag: u64, value: i64) -> u64 {
    let value = value.clamp(VALUE_MIN, VALUE_MAX);
    ((tag & TAG_MASK) << VALUE_BITS) | (value as u64 & VALUE_MASK)
}

fn unpack(word: u64) -> (u64, i64) {
    let tag = word >> VALUE_BITS;
    // Sign-extend the low 40 bits.
    let value = ((word << TAG_BITS) as i64) >> TAG_BITS;
    (tag, value)
}

/// `now - then` for 24-bit wrapping second tags, as a signed distance (positive: `then` is
/// older).
fn tag_distance(now: u64, then: u64) -> i64 {
    let diff = now.wrapping_sub(then) & TAG_MASK;
    if diff >= 1 << (TAG_BITS - 1) {
        diff as i64 - (1 << TAG_BITS)
    } else {
        diff as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use towline_core::FakeClock;

    const SEC: Duration = Duration::from_secs(1);

    fn budget(ratio: f64, floor: u32, ttl_secs: u64) -> (RetryBudget<FakeClock>, FakeClock) {
        let clock = FakeClock::new();
        let b = RetryBudget::with_clock(ratio, floor, Duration::from_secs(ttl_secs), clock.clone())
            .unwrap();
        (b, clock)
    }

    fn drain(b: &RetryBudget<FakeClock>) -> u64 {
        let mut n = 0;
        while b.try_withdraw() {
            n += 1;
        }
        n
    }

    #[test]
    fn packing_round_trips_signed_values() {
        for value in [0, 1, -1, SCALE, -SCALE, VALUE_MAX, VALUE_MIN] {
            for tag in [0, 1, 12345, TAG_MASK] {
                assert_eq!(unpack(pack(tag, value)), (tag, value));
            }
        }
        assert_eq!(unpack(pack(3, i64::MAX)).1, VALUE_MAX, "saturates");
        assert_eq!(tag_distance(5, 3), 2);
        assert_eq!(tag_distance(3, 5), -2);
        assert_eq!(tag_distance(1, TAG_MASK), 2, "wraps");
    }

    #[test]
    fn ratios_that_truncate_in_tower_are_exact_here() {
        for (ratio, expected) in [(0.01, 10), (0.2, 200), (0.6, 600), (1.0, 1000), (0.7, 700)] {
            let (b, _) = budget(ratio, 0, 10);
            for _ in 0..1000 {
                b.deposit();
            }
            assert_eq!(b.available(), expected, "ratio {ratio}");
            assert_eq!(drain(&b), expected, "ratio {ratio}");
        }
    }

    #[test]
    fn floor_allows_retries_without_traffic_and_refills_after_ttl() {
        let (b, clock) = budget(0.2, 10, 10);
        assert_eq!(drain(&b), 100, "10/s over 10 s");
        clock.advance(5 * SEC);
        assert_eq!(drain(&b), 0, "withdrawals still count within the window");
        clock.advance(5 * SEC);
        assert_eq!(drain(&b), 100, "expired withdrawals free the floor again");
    }

    #[test]
    fn deposits_expire_after_the_ttl() {
        let (b, clock) = budget(1.0, 0, 2);
        b.deposit();
        clock.advance(SEC);
        b.deposit();
        clock.advance(SEC);
        assert_eq!(b.available(), 1, "the first second's deposit expired");
        clock.advance(SEC);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn a_long_idle_period_leaves_no_stale_balance() {
        let (b, clock) = budget(1.0, 0, 10);
        for _ in 0..50 {
            b.deposit();
        }
        // Far beyond the window and past a wrap of the 24-bit second tag.
        clock.advance(Duration::from_secs((1 << TAG_BITS) + 3));
        assert_eq!(b.available(), 0);
        b.deposit();
        assert_eq!(b.available(), 1);
    }

    #[test]
    fn reservation_is_refunded_when_dropped_and_kept_when_committed() {
        let (b, _) = budget(1.0, 0, 10);
        b.deposit();
        b.deposit();
        let r = b.reserve().expect("two deposits");
        assert_eq!(b.available(), 1);
        drop(r);
        assert_eq!(b.available(), 2, "dropped: refunded");
        b.reserve().unwrap().commit();
        assert_eq!(b.available(), 1, "committed: spent");
    }

    #[test]
    fn refund_after_expiry_does_not_mint_budget() {
        let (b, clock) = budget(1.0, 0, 1);
        b.deposit();
        let r = b.reserve().unwrap();
        clock.advance(2 * SEC);
        drop(r);
        assert_eq!(b.available(), 0);
    }

    #[test]
    fn clones_share_the_balance() {
        let (b, _) = budget(0.5, 0, 10);
        let c = b.clone();
        b.deposit();
        c.deposit();
        assert!(c.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn rejects_nonsense() {
        let cases = [
            (1.5, 0, 10 * SEC, "budget_ratio"),
            (-0.1, 0, 10 * SEC, "budget_ratio"),
            (f64::NAN, 0, 10 * SEC, "budget_ratio"),
            (0.0, 0, 10 * SEC, "budget_ratio"),
            (0.2, MAX_FLOOR + 1, 10 * SEC, "budget_floor"),
            (0.2, 10, Duration::ZERO, "budget_ttl"),
            (0.2, 10, Duration::from_millis(1500), "budget_ttl"),
            (0.2, 10, Duration::from_secs(3601), "budget_ttl"),
        ];
        for (ratio, floor, ttl, setting) in cases {
            let err = RetryBudget::new(ratio, floor, ttl).unwrap_err();
            assert_eq!(err.setting(), setting, "{ratio} {floor} {ttl:?}");
        }
        assert!(RetryBudget::new(0.0, 1, SEC).is_ok(), "floor only");
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let (b, _) = budget(0.2, 0, 10);
        for _ in 0..1000 {
            b.deposit();
        }
        let taken: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || {
                        let mut n = 0;
                        for _ in 0..1000 {
                            if b.try_withdraw() {
                                n += 1;
                            }
                            b.deposit();
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // 1,000 + 4,000 deposits at 20 % allow at most 1,000 retries.
        assert!(taken <= 1000, "{taken}");
        assert_eq!(taken + b.available(), 1000, "nothing lost either");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Call,
        Retry,
        Advance(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                6 => Just(Op::Call),
                4 => Just(Op::Retry),
                1 => (1u64..2500).prop_map(Op::Advance),
            ],
            1..400,
        )
    }

    fn ratio() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(0.01),
            Just(0.2),
            Just(0.6),
            Just(1.0),
            (1u32..=1_000_000).prop_map(|m| f64::from(m) / 1e6),
        ]
    }

    proptest! {
        /// Without time passing, the budget allows exactly floor·ttl + ⌊ratio·calls⌋ retries:
        /// never more (the bound), never fewer (no truncation of the ratio).
        #[test]
        fn retries_are_exactly_ratio_times_calls_plus_floor(
            ratio in ratio(),
            floor in 0u32..20,
            ttl in 1u64..30,
            calls in 0u64..3000,
        ) {
            let (b, _) = budget(ratio, floor.max(u32::from(ratio == 0.0)), ttl);
            for _ in 0..calls {
                b.deposit();
            }
            let expected = (deposit_units(ratio) * calls as i64 + i64::from(floor) * ttl as i64 * SCALE) / SCALE;
            prop_assert_eq!(drain(&b), expected as u64);
            prop_assert!(expected as f64 <= ratio * calls as f64 + f64::from(floor * ttl as u32) + 1e-6);
        }

        /// From the start up to every second t:
        /// retries ≤ ratio·calls + floor·ttl·⌈(t+1)/ttl⌉.
        #[test]
        fn retries_up_to_every_second_stay_within_the_bound(
            ratio in ratio(),
            floor in 0u32..5,
            ttl in 1u64..12,
            ops in ops(),
        ) {
            let floor = floor.max(u32::from(deposit_units(ratio) == 0));
            let (b, clock) = budget(ratio, floor, ttl);
            // (second, calls, retries) for every op.
            let mut log: Vec<(u64, u64, u64)> = Vec::new();
            for op in ops {
                let second = clock.elapsed().as_secs();
                match op {
                    Op::Call => { b.deposit(); log.push((second, 1, 0)); }
                    Op::Retry => { if b.try_withdraw() { log.push((second, 0, 1)); } }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
                }
            }
            let last = clock.elapsed().as_secs();
            for t in 0..=last {
                let (calls, retries) = log
                    .iter()
                    .filter(|(s, _, _)| *s <= t)
                    .fold((0, 0), |(c, r), (_, dc, dr)| (c + dc, r + dr));
                let periods = (t + 1).div_ceil(ttl) as f64;
                let bound = ratio * calls as f64 + f64::from(floor) * ttl as f64 * periods;
                prop_assert!(retries as f64 <= bound + 1e-9,
                    "up to {}s: {} retries for {} calls (bound {})", t, retries, calls, bound);
            }
        }
    }
}
