//! Adaptive pacing: learning a key's send rate from the provider's answers.
//!
//! Most providers never publish their limits; many answer only with a 429. Pausing a key on
//! each 429 and then releasing its queue stampedes again at the end of every pause. Instead, the
//! throttle keeps a learned send rate per key, driven the way AWS SDKs' adaptive retry mode and
//! TCP CUBIC drive theirs:
//!
//! - a `RateLimited` (or `Overloaded`) answer cuts the rate multiplicatively, measured from
//!   the rate actually sent: the provider refused at that rate, so its limit (the *peak*) is
//!   taken as what it accepted over the last second, capped by what was sent, and the rate
//!   drops to `decrease ×` the peak. Once per congestion episode: answers to calls sent before
//!   the last cut do not cut again;
//! - successes raise it along a cubic curve: quickly while far below the peak, flat around it,
//!   then probing at most `1 - decrease` above it; a probe that holds without a 429 moves the
//!   peak up a step, so a raised limit is found in a few steps. The curve is *scale free*: time
//!   is counted in calls at the peak rate, so a key allowed 3 calls a minute probes as
//!   cautiously as one allowed 50 a second;
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

    /// How steeply the rate grows back, per (calls at the peak rate)³. Default 4e-5: the rate
    /// is back at the peak about 16 calls after a cut, and at the top of its probe 16 calls
    /// later.
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

    /// Calls, counted at the peak rate, until the curve is back at the peak; the same number
    /// takes it from the peak to the top of its probe.
    fn plateau(&self) -> f64 {
        ((1.0 - self.decrease) / self.growth).cbrt()
    }

    /// How far above the peak a probe goes: as far as a cut goes below it.
    fn probe(&self) -> f64 {
        1.0 - self.decrease
    }
}

/// One key's learned rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pacer {
    /// Calls per second allowed now.
    rate: f64,
    /// The plateau: the best estimate of the provider's limit.
    peak: f64,
    /// When the current curve started (nanoseconds since the store's origin).
    cut_at: u64,
    /// Successes of the key over the last second: what the provider accepted.
    accepted: Window,
    /// Since when successes are counted (the first cut).
    counting_since: u64,
    /// Probe steps taken in a row without a 429: each doubles the next one.
    steps: u32,
}

impl Pacer {
    /// The rate to pace at.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// A first cut for a key that had no learned rate, which was sending `sent` calls per
    /// second. Nothing is known about what the provider accepts yet.
    pub(crate) fn first(cfg: &Adaptive, ceiling: Option<f64>, now: u64, sent: f64) -> Pacer {
        let peak = clamp(sent, cfg, ceiling);
        Pacer {
            rate: clamp(cfg.decrease * peak, cfg, ceiling),
            peak,
            cut_at: now,
            accepted: Window::fitting(peak),
            counting_since: now,
            steps: 0,
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
        if sent_at <= self.cut_at {
            // The call left before the last cut: that cut already answered this episode.
            return false;
        }
        // What the key really sent, which may be less than it was allowed.
        let basis = sent.min(self.rate);
        // The provider refused at `basis`, so its limit is below it; what it accepted over the
        // last window is the better estimate once successes have been counted that long.
        let counted = now.saturating_sub(self.counting_since) >= self.accepted.len;
        let peak = if counted {
            self.accepted.rate(now).min(basis)
        } else {
            basis
        };
        self.peak = clamp(peak, cfg, ceiling);
        self.rate = clamp(cfg.decrease * self.peak, cfg, ceiling);
        self.cut_at = now;
        self.steps = 0;
        self.accepted.fit(self.peak);
        true
    }

    /// A success at `now` while the key sent `sent` calls per second; returns the new rate.
    ///
    /// The curve is CUBIC's, scaled in calls at the peak rate: back to the peak after
    /// `plateau` calls, flat around it, then rising to at most `1 + probe` times the peak. A
    /// key that holds the top of the probe for half a `plateau` more without a 429 has found a
    /// higher limit: the peak moves up there and the curve starts again from its plateau. Steps
    /// taken in a row double (15 %, 30 %, 60 %, then 100 %), so a raised limit far away is
    /// found in a few steps, while the first step above a known limit stays small.
    pub(crate) fn grow(
        &mut self,
        cfg: &Adaptive,
        ceiling: Option<f64>,
        now: u64,
        sent: f64,
    ) -> f64 {
        self.accepted.record(now);
        let k = cfg.plateau();
        let calls = now.saturating_sub(self.cut_at) as f64 / 1e9 * self.peak;
        let step = (cfg.probe() * f64::from(1u32 << self.steps.min(8))).min(1.0);
        let top = self.peak * (1.0 + step);
        if calls >= 2.5 * k && sent >= 0.9 * top {
            self.steps += 1;
            self.peak = clamp(top, cfg, ceiling);
            let back = (k / self.peak * 1e9) as u64;
            self.cut_at = now.saturating_sub(back);
            return self.grow(cfg, ceiling, now, sent);
        }
        let x = calls - k;
        let curve = (self.peak * (1.0 + cfg.growth * step / cfg.probe() * x * x * x)).min(top);
        // Never raise past twice the demand: an idle key must not bank a rate.
        let demand_cap = (2.0 * sent).max(self.rate);
        // The curve only ever raises the rate between cuts.
        self.rate = clamp(curve.min(demand_cap).max(self.rate), cfg, ceiling);
        self.rate
    }
}

/// A count over a sliding window (previous and current window), long enough to hold about
/// ten calls at the peak rate and at least a second, so that slow keys are not judged on two
/// or three calls.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    len: u64,
    start: u64,
    prev: u32,
    cur: u32,
}

impl Window {
    const MIN: f64 = 1.0;
    const MAX: f64 = 120.0;
    const CALLS: f64 = 10.0;

    fn fitting(peak: f64) -> Window {
        let mut w = Window {
            len: 0,
            start: 0,
            prev: 0,
            cur: 0,
        };
        w.fit(peak);
        w
    }

    fn fit(&mut self, peak: f64) {
        let seconds = (Self::CALLS / peak).clamp(Self::MIN, Self::MAX);
        self.len = (seconds * 1e9) as u64;
    }

    fn roll(&mut self, now: u64) {
        let age = now.saturating_sub(self.start);
        if age >= 2 * self.len {
            self.start = now;
            self.prev = 0;
            self.cur = 0;
        } else if age >= self.len {
            self.start += self.len;
            self.prev = self.cur;
            self.cur = 0;
        }
    }

    fn record(&mut self, now: u64) {
        self.roll(now);
        self.cur = self.cur.saturating_add(1);
    }

    fn rate(&mut self, now: u64) -> f64 {
        self.roll(now);
        let into = now.saturating_sub(self.start) as f64 / self.len as f64;
        (f64::from(self.prev) * (1.0 - into) + f64::from(self.cur)) / (self.len as f64 / 1e9)
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
    fn a_first_cut_multiplies_the_sent_rate() {
        let cfg = Adaptive::default();
        let p = Pacer::first(&cfg, None, 0, 20.0);
        assert!((p.rate() - 17.0).abs() < 1e-9);
    }

    #[test]
    fn later_cuts_aim_at_what_the_provider_accepted() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, 20.0);
        // Ten successes in the last second, while sending at 17.
        for i in 0..10 {
            p.grow(&cfg, None, SEC + i * SEC / 10, 17.0);
        }
        assert!(p.cut(&cfg, None, 2 * SEC, 2 * SEC, 17.0));
        assert!((p.peak - 10.0).abs() < 1e-9, "{}", p.peak);
        assert!((p.rate() - 8.5).abs() < 1e-9);
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
    fn growth_returns_to_the_peak_then_probes_a_step_above_it() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, 10.0);
        let back = (cfg.plateau() / 10.0 * 1e9) as u64;
        let at_plateau = p.grow(&cfg, None, back, 100.0);
        assert!((at_plateau - 10.0).abs() < 0.01, "{at_plateau}");
        let probing = p.grow(&cfg, None, 2 * back + SEC / 10, 100.0);
        assert!(
            (probing - 11.5).abs() < 1e-9,
            "the probe is capped: {probing}"
        );
        // Held without a 429: the peak steps up and the curve starts again from it.
        let stepped = p.grow(&cfg, None, 3 * back + SEC / 10, 100.0);
        assert!((p.peak - 11.5).abs() < 1e-9, "{}", p.peak);
        assert!(stepped >= 11.5);
    }

    #[test]
    fn demand_caps_growth_and_bounds_hold() {
        let cfg = Adaptive::default().floor(1.0).ceiling(12.0);
        let mut p = Pacer::first(&cfg, None, 0, 10.0);
        let r = p.grow(&cfg, None, 100 * SEC, 3.0);
        assert!((r - 8.5).abs() < 1e-9, "an idle key kept its rate: {r}");
        let r = (1..20)
            .map(|i| p.grow(&cfg, None, 100 * SEC + i * 10 * SEC, 1000.0))
            .last();
        assert_eq!(r, Some(12.0));
        let low = Pacer::first(&cfg, None, 0, 0.01);
        assert_eq!(low.rate(), 1.0);
        let capped = Pacer::first(&cfg, Some(5.0), 0, 100.0);
        assert_eq!(capped.rate(), 0.85 * 5.0, "cut below the ceiling");
    }
}
