//! The generic cell rate algorithm (GCRA) on plain numbers, shared by every store.
//!
//! A key's whole bucket is one number, its *theoretical arrival time* (`tat`): the instant at
//! which the bucket would be full again if nothing more were sent. A call of cost `c` arriving
//! at `now` is admitted when, after adding `c` emission intervals, the bucket is no more than
//! `burst` intervals ahead of `now`. This is governor's formulation; it costs one load and one
//! compare-and-swap in memory, and a handful of arithmetic steps in a Redis script.
//!
//! Times are nanoseconds since a store's origin. An interval of zero means "no rate": every
//! call conforms and only the provider's pauses hold the key.

/// The bucket parameters in effect for one admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds one unit of cost takes to replenish (`1 / rate`); 0 means unlimited.
    pub(crate) interval: u64,
    /// How many units the bucket holds.
    pub(crate) burst: u32,
}

/// What the bucket says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Admit now; store this as the new `tat`.
    Conform { tat: u64 },
    /// Not before this instant (nanoseconds since the origin).
    NotBefore(u64),
}

impl Gcra {
    /// No rate at all.
    pub(crate) const UNLIMITED: Gcra = Gcra {
        interval: 0,
        burst: 1,
    };

    /// A bucket of `burst` units refilling at `per_second` units per second. A `const fn`, so
    /// that a [`Quota`](crate::Quota) computes its bucket once, when it is made.
    pub(crate) const fn from_rate(per_second: f64, burst: u32) -> Gcra {
        let interval = (1e9 / per_second).round();
        // A rate so low that the interval overflows is clamped: 584 years per unit. At least
        // one nanosecond (also for NaN, which no validated quota holds).
        let interval = if interval >= u64::MAX as f64 {
            u64::MAX
        } else if interval >= 1.0 {
            interval as u64
        } else {
            1
        };
        Gcra {
            interval,
            burst: if burst == 0 { 1 } else { burst },
        }
    }

    /// Units per second, `f64::INFINITY` when unlimited.
    pub(crate) fn per_second(self) -> f64 {
        if self.interval == 0 {
            f64::INFINITY
        } else {
            1e9 / self.interval as f64
        }
    }

    /// The bucket's depth in nanoseconds (`burst` intervals).
    #[inline]
    pub(crate) fn capacity(self) -> u64 {
        self.interval.saturating_mul(u64::from(self.burst))
    }

    /// The time cost of `cost` units. A call costing more than the whole bucket is charged
    /// the whole bucket: it waits for a full bucket and empties it, rather than never passing.
    #[inline]
    pub(crate) fn weight(self, cost: u32) -> u64 {
        self.interval
            .saturating_mul(u64::from(cost.min(self.burst)))
    }

    /// The verdict for a call of `cost` at `now` given the key's `tat`.
    #[inline]
    pub(crate) fn check(self, tat: u64, now: u64, cost: u32) -> Verdict {
        let next = tat.max(now).saturating_add(self.weight(cost));
        let earliest = next.saturating_sub(self.capacity());
        if earliest <= now {
            Verdict::Conform { tat: next }
        } else {
            Verdict::NotBefore(earliest)
        }
    }

    /// When a call of `cost` could be admitted if `ahead` units were admitted before it, all
    /// starting from `tat` at `now` (an estimate for callers further back in a queue).
    pub(crate) fn earliest_after(self, tat: u64, now: u64, ahead: u64, cost: u32) -> u64 {
        let ahead = self.interval.saturating_mul(ahead);
        let next = tat
            .max(now)
            .saturating_add(ahead)
            .saturating_add(self.weight(cost));
        next.saturating_sub(self.capacity()).max(now)
    }

    /// The `tat` of a bucket that holds at most `tokens` units at `now`.
    pub(crate) fn tat_holding(self, now: u64, tokens: u64) -> u64 {
        let keep = self.interval.saturating_mul(tokens).min(self.capacity());
        now.saturating_add(self.capacity() - keep)
    }

    /// The `tat` of a bucket that is empty until `until` and then admits one unit: what a
    /// provider's pause leaves behind, so that the queue drains one call at a time after it.
    pub(crate) fn tat_paused_until(self, until: u64) -> u64 {
        until.saturating_add(self.capacity().saturating_sub(self.interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_admits_burst_then_one_per_interval() {
        let g = Gcra::from_rate(10.0, 3);
        let mut tat = 0;
        for _ in 0..3 {
            match g.check(tat, SEC, 1) {
                Verdict::Conform { tat: t } => tat = t,
                other => panic!("burst refused: {other:?}"),
            }
        }
        assert_eq!(g.check(tat, SEC, 1), Verdict::NotBefore(SEC + SEC / 10));
    }

    #[test]
    fn unlimited_always_conforms_but_respects_a_pause() {
        let g = Gcra::UNLIMITED;
        assert!(matches!(g.check(0, 5, 100), Verdict::Conform { .. }));
        let paused = g.tat_paused_until(10 * SEC);
        assert_eq!(g.check(paused, SEC, 1), Verdict::NotBefore(10 * SEC));
    }

    #[test]
    fn a_pause_releases_one_call_at_its_end_then_paces() {
        let g = Gcra::from_rate(2.0, 4);
        let tat = g.tat_paused_until(10 * SEC);
        assert_eq!(g.check(tat, SEC, 1), Verdict::NotBefore(10 * SEC));
        let Verdict::Conform { tat } = g.check(tat, 10 * SEC, 1) else {
            panic!("not released at the end of the pause")
        };
        assert_eq!(
            g.check(tat, 10 * SEC, 1),
            Verdict::NotBefore(10 * SEC + SEC / 2)
        );
    }

    #[test]
    fn oversized_costs_take_the_whole_bucket() {
        let g = Gcra::from_rate(1.0, 5);
        assert!(matches!(g.check(0, 10 * SEC, 50), Verdict::Conform { .. }));
        let Verdict::Conform { tat } = g.check(0, 10 * SEC, 50) else {
            unreachable!()
        };
        assert_eq!(g.check(tat, 10 * SEC, 1), Verdict::NotBefore(11 * SEC));
    }

    #[test]
    fn holding_caps_what_the_bucket_can_release() {
        let g = Gcra::from_rate(1.0, 10);
        let tat = g.tat_holding(100 * SEC, 2);
        let mut t = tat;
        for _ in 0..2 {
            let Verdict::Conform { tat } = g.check(t, 100 * SEC, 1) else {
                panic!("held tokens refused")
            };
            t = tat;
        }
        assert!(matches!(g.check(t, 100 * SEC, 1), Verdict::NotBefore(_)));
    }

    #[test]
    fn a_quota_carries_its_bucket_from_when_it_is_made() {
        const AT_COMPILE_TIME: crate::Quota = crate::Quota::new(3.0, 0);
        let at_run_time = crate::Quota::new(std::hint::black_box(3.0), 0);
        let expected = Gcra {
            interval: 333_333_333,
            burst: 1,
        };
        assert_eq!(AT_COMPILE_TIME.gcra(), expected);
        assert_eq!(at_run_time.gcra(), expected);
        assert_eq!(Gcra::from_rate(1e-12, 1).interval, u64::MAX);
        assert_eq!(Gcra::from_rate(1e12, 1).interval, 1);
        // Printed and compared as given.
        assert_eq!(
            format!("{at_run_time:?}"),
            "Quota { per_second: 3.0, burst: 0 }"
        );
        assert_eq!(at_run_time, AT_COMPILE_TIME);
    }

    proptest! {
        /// For any arrival pattern, the calls admitted in any window of length `w` cost at
        /// most `burst + rate * w` units.
        #[test]
        fn conformance_in_every_window(
            per_second in 0.5f64..200.0,
            burst in 1u32..20,
            gaps in proptest::collection::vec((0u64..300_000_000, 1u32..4), 1..200),
        ) {
            let g = Gcra::from_rate(per_second, burst);
            let mut now = SEC;
            let mut tat = 0;
            let mut admitted: Vec<(u64, u32)> = Vec::new();
            for (gap, cost) in gaps {
                now += gap;
                if let Verdict::Conform { tat: t } = g.check(tat, now, cost) {
                    tat = t;
                    admitted.push((now, cost.min(burst)));
                }
            }
            for (i, &(start, _)) in admitted.iter().enumerate() {
                let mut used = 0u64;
                for &(at, cost) in &admitted[i..] {
                    used += u64::from(cost);
                    let window = (at - start) as f64 / 1e9;
                    let allowed = f64::from(burst) + window * g.per_second();
                    prop_assert!(used as f64 <= allowed + 1e-6,
                        "{used} units in {window}s > {allowed}");
                }
            }
        }
    }
}
