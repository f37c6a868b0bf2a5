//! Adaptive pacing: learning a key's send rate from the provider's answers.
//!
//! Most providers never publish their limits; many answer only with a 429. Pausing a key on
//! each 429 and then releasing its queue stampedes again at the end of every pause. Instead, the
//! throttle keeps a learned send rate per key, driven the way AWS SDKs' adaptive retry mode and
//! TCP CUBIC drive theirs:
//!
//! - a `RateLimited` (or `Overloaded`) answer cuts the rate to `decrease ×` the rate that was
//!   actually being sent, once per congestion episode (answers to calls sent before the last
//!   cut do not cut again);
//! - successes raise it along a cubic curve: quickly while far below the rate of the last cut,
//!   flat around it, then probing above it. The curve is *scale free*: time is counted in calls
//!   at the last cut's rate, so a key allowed 3 calls a minute probes as cautiously as one
//!   allowed 50 a second;
//! - the rate never leaves `[floor, ceiling]` and never grows past twice what the key actually
//!   sends, so an idle key cannot build up a rate it would stampede with later.
//!
//! The learned rate paces the key through its ordinary bucket with a burst of one, so waiters
//! leave one at a time.

use std::time::Duration;

/// The settings of adaptive pacing (issue: "each key learns the rate its provider really
/// allows"). Validated when the layer is built.
///
/// ```
/// use std::time::Duration;
/// use towline_throttle::Adaptive;
///
/// let adaptive = Adaptive::default()
///     .floor(0.2)
///     .ceiling(50.0)
///     .forget_after(Duration::from_secs(300));
/// assert_eq!(adaptive.floor_per_second(), 0.2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub(crate) floor: f64,
    pub(crate) ceiling: Option<f64>,
    pub(crate) decrease: f64,
    pub(crate) growth: f64,
    pub(crate) forget_after: Duration,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive {
            floor: 0.1,
            ceiling: None,
            decrease: 0.85,
            growth: 0.000_04,
            forget_after: Duration::from_secs(120),
        }
    }
}

impl Adaptive {
    /// The lowest rate (calls per second) a key is ever slowed to. Default 0.1.
    pub fn floor(mut self, per_second: f64) -> Self {
        self.floor = per_second;
        self
    }

    /// The highest rate a learned key is raised to. Default: the key's configured rate if it
    /// has one, else no ceiling (the rate still never exceeds twice what the key sends).
    pub fn ceiling(mut self, per_second: f64) -> Self {
        self.ceiling = Some(per_second);
        self
    }

    /// The factor a throttling answer multiplies the sent rate by, in `(0, 1)`. Default 0.85:
    /// gentler than TCP's 0.7 because a provider's bucket is a hard limit that one probe
    /// overshoots only slightly, and a deep cut wastes the quota.
    pub fn decrease(mut self, factor: f64) -> Self {
        self.decrease = factor;
        self
    }

    /// How steeply the rate grows back, per (calls at the last cut's rate)³. Default 4e-5: the
    /// rate is back at the last cut's level after about 16 calls and 25 % above it after about
    /// 34.
    pub fn growth(mut self, per_call_cubed: f64) -> Self {
        self.growth = per_call_cubed;
        self
    }

    /// How long a key must be idle (no call, no answer) before it forgets what it learned and
    /// is evicted. Default 120 s.
    pub fn forget_after(mut self, idle: Duration) -> Self {
        self.forget_after = idle;
        self
    }

    /// The configured floor.
    pub fn floor_per_second(&self) -> f64 {
        self.floor
    }

    /// The configured ceiling, if any.
    pub fn ceiling_per_second(&self) -> Option<f64> {
        self.ceiling
    }

    /// Calls, counted at the last cut's rate, until the curve is back at that rate.
    fn plateau(&self) -> f64 {
        ((1.0 - self.decrease) / self.growth).cbrt()
    }
}

/// One key's learned rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pacer {
    /// Calls per second allowed now.
    rate: f64,
    /// The rate that was being sent at the last cut.
    peak: f64,
    /// When the last cut happened (nanoseconds since the store's origin).
    cut_at: u64,
}

impl Pacer {
    /// The rate to pace at.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// A first cut for a key that had no learned rate, which was sending `sent` calls per
    /// second.
    pub(crate) fn first(cfg: &Adaptive, ceiling: Option<f64>, now: u64, sent: f64) -> Pacer {
        let peak = sent.max(cfg.floor);
        Pacer {
            rate: clamp(cfg.decrease * peak, cfg, ceiling),
            peak,
            cut_at: now,
        }
    }

    /// A throttling answer to a call sent at `sent_at`; returns whether the rate was cut.
    pub(crate) fn cut(
        &mut self,
        cfg: &Adaptive,
        ceiling: Option<f64>,
        now: u64,
        sent_at: u64,
        sent: f64,
    ) -> bool {
        if sent_at < self.cut_at {
            // The call left before the last cut: that cut already answered this episode.
            return false;
        }
        // What the key really sent, which may be less than it was allowed.
        let basis = sent.min(self.rate).max(cfg.floor);
        // Fast convergence (CUBIC): when cuts come at lower and lower rates, the limit has
        // moved down; aim the plateau below the basis instead of at it.
        self.peak = if basis < self.peak {
            basis * (1.0 + cfg.decrease) / 2.0
        } else {
            basis
        };
        self.rate = clamp(cfg.decrease * basis, cfg, ceiling);
        self.cut_at = now;
        true
    }

    /// A success at `now` while the key sent `sent` calls per second; returns the new rate.
    pub(crate) fn grow(
        &mut self,
        cfg: &Adaptive,
        ceiling: Option<f64>,
        now: u64,
        sent: f64,
    ) -> f64 {
        let since = now.saturating_sub(self.cut_at) as f64 / 1e9;
        let calls = since * self.peak;
        let x = calls - cfg.plateau();
        let curve = self.peak * (1.0 + cfg.growth * x * x * x);
        // Never raise past twice the demand: an idle key must not bank a rate.
        let demand_cap = (2.0 * sent).max(self.rate);
        let next = curve.min(demand_cap);
        // The curve only ever raises the rate between cuts.
        self.rate = clamp(next.max(self.rate), cfg, ceiling);
        self.rate
    }
}

fn clamp(rate: f64, cfg: &Adaptive, ceiling: Option<f64>) -> f64 {
    let ceiling = match (ceiling, cfg.ceiling) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(f64::INFINITY),
    };
    rate.max(cfg.floor).min(ceiling.max(cfg.floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_cut_multiplies_the_sent_rate() {
        let cfg = Adaptive::default();
        let p = Pacer::first(&cfg, None, 0, 20.0);
        assert!((p.rate() - 17.0).abs() < 1e-9);
    }

    #[test]
    fn answers_to_calls_sent_before_a_cut_do_not_cut_again() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 10 * SEC, 20.0);
        assert!(!p.cut(&cfg, None, 10 * SEC + 5, 9 * SEC, 20.0));
        assert!((p.rate() - 17.0).abs() < 1e-9);
        assert!(p.cut(&cfg, None, 11 * SEC, 10 * SEC + 1, 20.0));
        assert!(p.rate() < 17.0);
    }

    #[test]
    fn growth_returns_to_the_peak_then_probes_above_it() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, 10.0);
        let back = (cfg.plateau() / 10.0 * 1e9) as u64;
        let at_plateau = p.grow(&cfg, None, back, 100.0);
        assert!((at_plateau - 10.0).abs() < 0.01, "{at_plateau}");
        let later = p.grow(&cfg, None, back + 3 * SEC, 100.0);
        assert!(later > 10.5, "{later}");
    }

    #[test]
    fn demand_caps_growth_and_bounds_hold() {
        let cfg = Adaptive::default().floor(1.0).ceiling(12.0);
        let mut p = Pacer::first(&cfg, None, 0, 10.0);
        let r = p.grow(&cfg, None, 100 * SEC, 3.0);
        assert!((r - 8.5).abs() < 1e-9, "an idle key kept its rate: {r}");
        let r = p.grow(&cfg, None, 200 * SEC, 1000.0);
        assert_eq!(r, 12.0);
        let low = Pacer::first(&cfg, None, 0, 0.01);
        assert_eq!(low.rate(), 1.0);
        let capped = Pacer::first(&cfg, Some(5.0), 0, 100.0);
        assert_eq!(capped.rate(), 5.0);
    }
}
