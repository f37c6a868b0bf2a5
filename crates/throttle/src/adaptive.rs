//! Adaptive pacing: learning a key's send rate from the provider's answers.
//!
//! Most providers never publish their limits; many answer only with a 429. Pausing a key on
//! each 429 and then releasing its queue stampedes again at the end of every pause. Instead, the
//! throttle keeps a learned send rate per key, driven the way AWS SDKs' adaptive retry mode and
//! TCP CUBIC drive theirs, and paces the key with it through its ordinary bucket with a burst of
//! one, so waiters leave one at a time.
//!
//! # Whose fault is a refusal?
//!
//! Every `RateLimited` answer pauses its key for the provider's hint: that part is mandatory
//! and not adaptive (the store does it). Whether a refusal also *cuts the learned rate* depends
//! on whether the key's own rate caused it. A provider's limit refuses a key because of what
//! it sends: send less and the refusals stop. But providers and gateways also refuse a few
//! calls whatever the key sends (another tenant's burst on a shared key, a gateway shedding at
//! random): a pacer that cuts on each of those collapses the rate, since a cut every twenty
//! calls outpaces any growth. This is the random-loss problem of loss-based congestion control
//! (TCP Reno and CUBIC over lossy radio links). The pacer tells the two apart the way an
//! experimenter would, by varying the rate:
//!
//! - **Background.** After a cut the rate dips below its plateau for a while. Refusals of calls
//!   sent in that dip are refusals that sending less did not prevent; their share among the
//!   dip's answers (a tally decaying over about 64 of them) is the key's *background*, at most
//!   [`Adaptive::max_background`]. A dip only measures after a stretch the provider mostly
//!   accepted: never after a burst of refusals (the first contact with a limit, refusals of
//!   calls sent before the cut), where the dip may still lie above the limit.
//! - **Congestion.** A refusal cuts only when the refusals among the answers since the last cut
//!   are more than the background explains: four standard deviations above the expected count
//!   over the last 16 answers, or three over up to 64. With no background (most providers),
//!   every refusal cuts, exactly as plain CUBIC does, so a key that really is over its limit
//!   learns it as fast as ever. Like Google SRE's client-side throttling (which acts only once
//!   requests outnumber accepts by a margin), the pacer acts on the *excess* of refusals, not
//!   on each one.
//! - **Undo.** A refusal in a measuring dip that the background explains shows that the cuts
//!   since the key last held its plateau were spurious: they are undone, as TCP undoes a window
//!   reduction it finds spurious (Eifel, F-RTO).
//!
//! # The cut
//!
//! A cut is measured from the rate actually sent: the provider refused at that rate, so its
//! limit (the *peak*) is taken as what it accepted over the last window (per second the key was
//! free to send, see below), capped by what was sent, and the rate drops to `decrease ×` the
//! peak. Until a window has been counted, the peak is the sent rate times the share of answers
//! accepted since the last cut. Once per episode: answers to calls sent before the last cut do
//! not cut again. Answers that are no rate signal (a 500, a timeout) passed the provider's
//! limiter: they count as accepted, like successes.
//!
//! # Growth
//!
//! - Above a *known limit* (a cut that stood), successes raise the rate along a cubic curve:
//!   quickly while far below the peak, flat around it, then probing at most `1 - decrease`
//!   above it; a probe that holds with no more refusals than the background explains moves the
//!   peak up a step, so a raised limit is found in a few steps. The curve is *scale free*: time
//!   is counted in calls at the peak rate, so a key allowed 3 calls a minute probes as
//!   cautiously as one allowed 50 a second.
//! - While *no limit is known* (the first refusal of a key that had been sending steadily, an
//!   undone cut), the rate was only ever what the key happened to send: like TCP's slow start,
//!   it doubles every half plateau of answers the provider accepts.
//! - Either way the rate never leaves `[floor, ceiling]` and never grows past twice what the
//!   key actually sends, so an idle key cannot build up a rate it would stampede with later.
//!
//! # The rate sent
//!
//! The store measures what the key sent over the last second, but a provider's pause is time
//! the key could not send: the rate is counted over the time the key was free, where only the
//! part of a pause longer than one interval at the key's pace counts as held (an exact hint, the
//! time to the provider's next token, is the provider limiting the key; a hint in whole seconds
//! or a random refusal's hint holds it far longer than any limit needs). A key that started
//! sending less than a second ago has its calls spread over the time since it started.

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
///     .max_background(0.05)
///     .forget_after(Duration::from_secs(300));
/// assert_eq!(adaptive.floor_per_second(), 0.2);
/// assert_eq!(adaptive.max_background_share(), 0.05);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adaptive {
    pub(crate) floor: f64,
    pub(crate) ceiling: Option<f64>,
    pub(crate) decrease: f64,
    pub(crate) growth: f64,
    pub(crate) max_background: f64,
    pub(crate) forget_after: Duration,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive {
            floor: 0.1,
            ceiling: None,
            decrease: 0.85,
            growth: 0.000_04,
            max_background: 0.12,
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

    /// The largest share of answers refused whatever the key sends (its *background*, measured
    /// below its plateau) that is tolerated as noise: such refusals pause the key for their
    /// hint but do not cut its rate. In `[0, 0.5)`; default 0.12. A provider refusing more
    /// than that at random is treated as limiting the key; 0 makes every refusal cut, as plain
    /// CUBIC does.
    pub fn max_background(mut self, share: f64) -> Self {
        self.max_background = share;
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

    /// The configured largest background share.
    pub fn max_background_share(&self) -> f64 {
        self.max_background
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

/// What the store knows about the key's sending when an answer arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sending {
    /// Units per second the key sent over the last second, counted over the time it was free
    /// to send (not held by the provider beyond its pace).
    pub(crate) rate: f64,
    /// The part of the last second the key was free to send, in `[0.1, 1]`.
    pub(crate) free: f64,
    /// Whether the key had been sending for a while (over a second, or a few calls), so that
    /// one refusal is an isolated one among calls the provider accepted, not a burst from
    /// silence.
    pub(crate) steady: bool,
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
    /// Successes of the key over the last window: what the provider accepted.
    accepted: Window,
    /// Since when successes are counted in `accepted` at its current length.
    counting_since: u64,
    /// Probe steps taken in a row without a cut: each doubles the next one.
    steps: u32,
    /// Answers to calls sent since the last cut.
    answers: Answers,
    /// Refusals among the answers to calls sent in measuring dips: refusals that sending less
    /// did not prevent.
    background: Tally,
    /// Whether the current dip measures the background (see [`Answers::measure`]).
    dip_measures: bool,
    /// The rate and peak before the cuts not yet confirmed (a cut is confirmed when the curve
    /// gets back to its plateau without a refusal), to restore if they prove spurious.
    undo: Option<(f64, f64)>,
    /// Whether the peak is a limit the provider showed (a cut that stood), rather than what the
    /// key happened to send when an isolated refusal came (a first contact, an undone cut).
    limit_known: bool,
}

impl Pacer {
    /// The rate to pace at.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// A first cut for a key that had no learned rate. Nothing is known about what the
    /// provider accepts yet, beyond its accepting what the key sent before this refusal. When
    /// that refusal is isolated among calls the provider accepted (`sending.steady`), no limit
    /// is known yet: the dip measures the background, the cut may be undone, and the rate
    /// grows back as in slow start. Refusals of calls sent before the cut show a burst instead
    /// (see [`Pacer::cut`]).
    pub(crate) fn first(cfg: &Adaptive, ceiling: Option<f64>, now: u64, sending: Sending) -> Pacer {
        let peak = clamp(sending.rate, cfg, ceiling);
        Pacer {
            rate: clamp(cfg.decrease * peak, cfg, ceiling),
            peak,
            cut_at: now,
            accepted: Window::fitting(peak, now),
            counting_since: now,
            steps: 0,
            answers: Answers::default(),
            background: Tally::PRIOR,
            dip_measures: sending.steady,
            undo: sending.steady.then_some((peak, peak)),
            limit_known: !sending.steady,
        }
    }

    /// A throttling answer to a call sent at `sent_at`; returns whether the rate changed.
    ///
    /// Only a refusal that is a sign of the key's own rate cuts: one among more refusals than
    /// the key's background explains (see [`Pacer::over_background`]). Any other refusal still
    /// pauses the key for the provider's hint (the store does that), but leaves the rate and
    /// its growth alone, or undoes the cuts it shows were spurious.
    pub(crate) fn cut(
        &mut self,
        cfg: &Adaptive,
        ceiling: Option<f64>,
        now: u64,
        sent_at: u64,
        sending: Sending,
    ) -> bool {
        if sent_at <= self.cut_at {
            // The call left before the last cut: that cut already answered this episode, which
            // was a burst of refusals: its dip measures nothing and the cut stands.
            self.dip_measures = false;
            self.undo = None;
            return false;
        }
        self.answers.push(true);
        let in_dip = self.in_dip(cfg, sent_at);
        if in_dip {
            self.background.add(true);
        }
        if !self.over_background(cfg) {
            return in_dip && self.undo();
        }
        // What the key really sent, which may be less than it was allowed.
        let basis = sending.rate.min(self.rate);
        // The provider refused at `basis`, so its limit is below it; what it accepted over the
        // last window, per second the key was free to send, is the better estimate once
        // successes have been counted that long. Until then, the part of `basis` it accepted
        // since the last cut.
        let counted = now.saturating_sub(self.counting_since) >= self.accepted.len;
        let peak = if counted {
            (self.accepted.rate(now) / sending.free).min(basis)
        } else {
            basis * self.answers.accepted_share()
        };
        let measured = self.answers.measure();
        if measured {
            // After a stretch the provider mostly accepted, this cut may prove spurious.
            self.undo.get_or_insert((self.rate, self.peak));
        }
        self.peak = clamp(peak, cfg, ceiling);
        self.rate = clamp(cfg.decrease * self.peak, cfg, ceiling);
        self.cut_at = now;
        self.steps = 0;
        self.limit_known = true;
        self.dip_measures = measured;
        self.answers = Answers::default();
        if self.accepted.fit(self.peak, now) {
            self.counting_since = now;
        }
        true
    }

    /// The background share, as far as it is tolerated.
    fn background(&self, cfg: &Adaptive) -> f64 {
        self.background.share().min(cfg.max_background)
    }

    /// Whether the refusals since the last cut are more than the background explains: four
    /// standard deviations above the expected count over the last 16 answers (a burst), or
    /// three over up to 64 (a steady excess). With no background every refusal counts, as in
    /// plain CUBIC; with a background of 5 % it takes five refusals in sixteen answers, with
    /// 10 % seven: random refusals then cut about once in a thousand answers or fewer (and such
    /// a cut is undone by the next background refusal in its dip), while a key over its limit
    /// is refused far more often than that.
    fn over_background(&self, cfg: &Adaptive) -> bool {
        let bg = self.background(cfg);
        let beyond = |refused: u8, answers: u8, sigmas: f64| {
            let expected = f64::from(answers) * bg;
            f64::from(refused) > expected + sigmas * (expected * (1.0 - bg)).sqrt()
        };
        beyond(self.answers.refused(), Answers::SPAN, 4.0)
            || (self.answers.count > Answers::SPAN
                && beyond(self.answers.refused_long(), self.answers.count, 3.0))
    }

    /// Whether the latest answers hold no more refusals than the background explains (one
    /// more is allowed): only then has the rate held, and may it grow past its peak.
    fn refusals_explained(&self, cfg: &Adaptive) -> bool {
        let expected = f64::from(self.answers.short()) * self.background(cfg);
        f64::from(self.answers.refused()) <= expected + 1.0
    }

    /// Undoes the cuts since the key last held its plateau: a refusal in a measuring dip that
    /// the background explains shows that sending less did not prevent the refusals. Returns
    /// whether there was a cut to undo.
    fn undo(&mut self) -> bool {
        let Some((rate, peak)) = self.undo.take() else {
            return false;
        };
        self.rate = rate.max(self.rate);
        self.peak = peak.max(self.peak);
        self.limit_known = false;
        true
    }

    /// Whether a call sent at `sent_at` left in the measuring dip after the last cut, while
    /// the curve was still clearly below the plateau.
    fn in_dip(&self, cfg: &Adaptive, sent_at: u64) -> bool {
        if !self.dip_measures || sent_at <= self.cut_at {
            return false;
        }
        let calls = (sent_at - self.cut_at) as f64 / 1e9 * self.peak;
        calls < 0.8 * cfg.plateau()
    }

    /// An answer that is no refusal (a success, or an error that passed the provider's
    /// limiter) at `now`, to a call sent at `sent_at`; returns the new rate.
    pub(crate) fn grow(
        &mut self,
        cfg: &Adaptive,
        ceiling: Option<f64>,
        now: u64,
        sent_at: u64,
        sending: Sending,
    ) -> f64 {
        self.accepted.record(now);
        if sent_at > self.cut_at {
            self.answers.push(false);
        }
        if self.in_dip(cfg, sent_at) {
            self.background.add(false);
        }
        let calls = now.saturating_sub(self.cut_at) as f64 / 1e9 * self.peak;
        if calls >= cfg.plateau() && self.answers.refused() == 0 {
            // Back at the plateau with no refusal since the cut: the cuts stand.
            self.undo = None;
        }
        if self.limit_known {
            self.climb(cfg, ceiling, now, sending.rate)
        } else {
            self.start_slowly(cfg, ceiling, sending.rate)
        }
    }

    /// Growth above a known limit: CUBIC's curve, scaled in calls at the peak rate. Back to the
    /// peak after `plateau` calls, flat around it, then rising to at most `1 + probe` times the
    /// peak. A key that holds the top of the probe for half a `plateau` more, with no more
    /// refusals than its background explains, has found a higher limit: the peak moves up
    /// there and the curve starts again from its plateau. Steps taken in a row double (15 %,
    /// 30 %, 60 %, then 100 %), so a raised limit far away is found in a few steps, while the
    /// first step above a known limit stays small.
    fn climb(&mut self, cfg: &Adaptive, ceiling: Option<f64>, now: u64, sent: f64) -> f64 {
        let k = cfg.plateau();
        let calls = now.saturating_sub(self.cut_at) as f64 / 1e9 * self.peak;
        let step = (cfg.probe() * f64::from(1u32 << self.steps.min(8))).min(1.0);
        let top = self.peak * (1.0 + step);
        if calls >= 2.5 * k && sent >= 0.9 * top && self.refusals_explained(cfg) {
            self.steps += 1;
            self.peak = clamp(top, cfg, ceiling);
            let back = (k / self.peak * 1e9) as u64;
            self.cut_at = now.saturating_sub(back);
            return self.climb(cfg, ceiling, now, sent);
        }
        let x = calls - k;
        let curve = (self.peak * (1.0 + cfg.growth * step / cfg.probe() * x * x * x)).min(top);
        // Never raise past twice the demand: an idle key must not bank a rate.
        let demand_cap = (2.0 * sent).max(self.rate);
        // The curve only ever raises the rate between cuts.
        self.rate = clamp(curve.min(demand_cap).max(self.rate), cfg, ceiling);
        self.rate
    }

    /// Growth while no limit is known: like TCP's slow start, the rate doubles every half
    /// plateau of answers, as long as the provider accepts them with no more refusals than
    /// the background explains, up to twice what the key sends.
    fn start_slowly(&mut self, cfg: &Adaptive, ceiling: Option<f64>, sent: f64) -> f64 {
        if self.refusals_explained(cfg) {
            let doubled = self.rate * 2f64.powf(2.0 / cfg.plateau());
            let demand_cap = (2.0 * sent).max(self.rate);
            self.rate = clamp(doubled.min(demand_cap), cfg, ceiling);
            self.peak = self.peak.max(self.rate);
        }
        self.rate
    }
}

/// The answers to calls sent since the last cut: a bit each, newest in bit 0, 1 for a refusal.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Answers {
    bits: u64,
    count: u8,
}

impl Answers {
    /// The short window: how many of the latest answers are judged for a burst of refusals.
    const SPAN: u8 = 16;
    /// The long window, for a steady excess too small to stand out in the short one.
    const LONG: u8 = 64;
    /// Successes assumed before the first answer: one refusal right after a cut is no measure
    /// of what the provider accepts.
    const PRIOR: u8 = 2;

    fn push(&mut self, refused: bool) {
        self.bits = (self.bits << 1) | u64::from(refused);
        self.count = (self.count + 1).min(Self::LONG);
    }

    /// Answers in the short window.
    fn short(&self) -> u8 {
        self.count.min(Self::SPAN)
    }

    /// Refusals in the short window.
    fn refused(&self) -> u8 {
        (self.bits & 0xffff).count_ones() as u8
    }

    /// Refusals in the long window.
    fn refused_long(&self) -> u8 {
        self.bits.count_ones() as u8
    }

    /// Whether a cut after these answers leaves a dip that measures the background: only
    /// after half a short window of answers at most a fifth refused. After a burst of
    /// refusals (the first contact with a limit, a lowered limit) the dip may still lie above
    /// the limit, and its refusals would pass for background.
    fn measure(&self) -> bool {
        self.short() >= Self::SPAN / 2 && u32::from(self.refused()) * 5 <= u32::from(self.short())
    }

    /// The share of the latest answers that were accepted.
    fn accepted_share(&self) -> f64 {
        let accepted = self.short() - self.refused() + Self::PRIOR;
        f64::from(accepted) / f64::from(self.short() + Self::PRIOR)
    }
}

/// A decaying share of refusals among answers (about the last 64).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tally {
    answers: f32,
    refusals: f32,
}

impl Tally {
    const KEEP: f32 = 1.0 - 1.0 / 64.0;
    /// Four accepted answers assumed before the first one: a share is not judged on one
    /// answer, and it takes evidence to believe in a background.
    const PRIOR: Tally = Tally {
        answers: 4.0,
        refusals: 0.0,
    };

    fn add(&mut self, refused: bool) {
        self.answers = self.answers * Self::KEEP + 1.0;
        self.refusals = self.refusals * Self::KEEP + if refused { 1.0 } else { 0.0 };
    }

    fn share(&self) -> f64 {
        f64::from(self.refusals / self.answers)
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

    fn fitting(peak: f64, now: u64) -> Window {
        let mut w = Window {
            len: 0,
            start: now,
            prev: 0,
            cur: 0,
        };
        w.fit(peak, now);
        w
    }

    /// Fits the window to `peak`; when its length changes, counting starts again (counts
    /// over another length would read as another rate). Returns whether it did.
    fn fit(&mut self, peak: f64, now: u64) -> bool {
        let seconds = (Self::CALLS / peak).clamp(Self::MIN, Self::MAX);
        let len = (seconds * 1e9) as u64;
        if len == self.len {
            return false;
        }
        *self = Window {
            len,
            start: now,
            prev: 0,
            cur: 0,
        };
        true
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

    fn sending(rate: f64) -> Sending {
        Sending {
            rate,
            free: 1.0,
            steady: false,
        }
    }

    fn steady(rate: f64) -> Sending {
        Sending {
            steady: true,
            ..sending(rate)
        }
    }

    /// A key that had been sending 20 a second when its first, isolated refusal came at 0,
    /// then another in the dip: background, so the first cut is undone.
    fn with_background(cfg: &Adaptive) -> Pacer {
        let mut p = Pacer::first(cfg, None, 0, steady(20.0));
        assert!((p.rate() - 17.0).abs() < 1e-9);
        for i in 1..4 {
            p.grow(cfg, None, i * SEC / 20, i * SEC / 20 - 1, steady(20.0));
        }
        assert!(
            p.cut(cfg, None, SEC / 5, SEC / 5 - 1, steady(20.0)),
            "undone"
        );
        assert!(p.rate() >= 20.0, "{}", p.rate());
        assert!(p.background(cfg) > 0.0);
        p
    }

    #[test]
    fn a_first_cut_multiplies_the_sent_rate() {
        let cfg = Adaptive::default();
        let p = Pacer::first(&cfg, None, 0, sending(20.0));
        assert!((p.rate() - 17.0).abs() < 1e-9);
    }

    #[test]
    fn later_cuts_aim_at_what_the_provider_accepted() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, sending(20.0));
        // Ten successes in the last second, while sending at 17.
        for i in 0..10 {
            p.grow(
                &cfg,
                None,
                SEC + i * SEC / 10,
                SEC + i * SEC / 10,
                sending(17.0),
            );
        }
        assert!(p.cut(&cfg, None, 2 * SEC, 2 * SEC, sending(17.0)));
        assert!((p.peak - 10.0).abs() < 1e-9, "{}", p.peak);
        assert!((p.rate() - 8.5).abs() < 1e-9);
    }

    #[test]
    fn answers_to_calls_sent_before_a_cut_do_not_cut_again() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 10 * SEC, sending(20.0));
        assert!(!p.cut(&cfg, None, 10 * SEC + 5, 9 * SEC, sending(20.0)));
        assert!((p.rate() - 17.0).abs() < 1e-9);
        assert!(p.cut(&cfg, None, 11 * SEC, 10 * SEC + 1, sending(20.0)));
        assert!(p.rate() < 17.0);
    }

    #[test]
    fn growth_returns_to_the_peak_then_probes_a_step_above_it() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, sending(10.0));
        let back = (cfg.plateau() / 10.0 * 1e9) as u64;
        let at_plateau = p.grow(&cfg, None, back, back, sending(100.0));
        assert!((at_plateau - 10.0).abs() < 0.01, "{at_plateau}");
        let probing = p.grow(
            &cfg,
            None,
            2 * back + SEC / 10,
            2 * back + SEC / 10,
            sending(100.0),
        );
        assert!(
            (probing - 11.5).abs() < 1e-9,
            "the probe is capped: {probing}"
        );
        // Held without a 429: the peak steps up and the curve starts again from it.
        let stepped = p.grow(
            &cfg,
            None,
            3 * back + SEC / 10,
            3 * back + SEC / 10,
            sending(100.0),
        );
        assert!((p.peak - 11.5).abs() < 1e-9, "{}", p.peak);
        assert!(stepped >= 11.5);
    }

    #[test]
    fn demand_caps_growth_and_bounds_hold() {
        let cfg = Adaptive::default().floor(1.0).ceiling(12.0);
        let mut p = Pacer::first(&cfg, None, 0, sending(10.0));
        let r = p.grow(&cfg, None, 100 * SEC, 100 * SEC, sending(3.0));
        assert!((r - 8.5).abs() < 1e-9, "an idle key kept its rate: {r}");
        let r = (1..20)
            .map(|i| {
                p.grow(
                    &cfg,
                    None,
                    100 * SEC + i * 10 * SEC,
                    100 * SEC + i * 10 * SEC,
                    sending(1000.0),
                )
            })
            .last();
        assert_eq!(r, Some(12.0));
        let low = Pacer::first(&cfg, None, 0, sending(0.01));
        assert_eq!(low.rate(), 1.0);
        let capped = Pacer::first(&cfg, Some(5.0), 0, sending(100.0));
        assert_eq!(capped.rate(), 0.85 * 5.0, "cut below the ceiling");
    }

    #[test]
    fn isolated_refusals_within_the_background_neither_cut_nor_stop_growth() {
        let cfg = Adaptive::default();
        let mut p = with_background(&cfg);
        // 400 answers at 20 a second, one in twenty refused: the rate never drops and grows
        // to what the key is asked for.
        let mut lowest = f64::MAX;
        for i in 0..400u64 {
            let now = SEC + i * SEC / 20;
            if i % 20 == 19 {
                p.cut(&cfg, None, now, now - 1, steady(20.0));
            } else {
                p.grow(&cfg, None, now, now - 1, steady(20.0));
            }
            lowest = lowest.min(p.rate());
        }
        assert!(lowest >= 20.0, "{lowest}");
        assert!(p.rate() >= 39.0, "up to twice the demand: {}", p.rate());
    }

    #[test]
    fn refusals_beyond_the_background_still_cut() {
        let cfg = Adaptive::default();
        let mut p = with_background(&cfg);
        let before = p.rate();
        // Every other answer refused: far beyond a background of about 20 %, capped at 12 %.
        let cut = (0..16u64).any(|i| {
            let now = SEC + i * SEC / 20;
            if i % 2 == 1 {
                p.cut(&cfg, None, now, now - 1, steady(20.0))
            } else {
                p.grow(&cfg, None, now, now - 1, steady(20.0));
                false
            }
        });
        assert!(cut && p.rate() < before, "{} -> {}", before, p.rate());
        assert!(p.limit_known);
    }

    #[test]
    fn with_no_background_tolerated_every_refusal_cuts() {
        let cfg = Adaptive::default().max_background(0.0);
        let mut p = Pacer::first(&cfg, None, 0, steady(20.0));
        for i in 1..4 {
            p.grow(&cfg, None, i * SEC / 20, i * SEC / 20 - 1, steady(20.0));
        }
        assert!(p.cut(&cfg, None, SEC / 5, SEC / 5 - 1, steady(20.0)));
        assert!(p.rate() < 17.0, "cut again: {}", p.rate());
    }

    #[test]
    fn a_burst_of_refusals_at_first_contact_is_a_limit_and_its_cut_stands() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, SEC, steady(20.0));
        // Another call sent before the cut is refused too: a burst, not an isolated refusal.
        assert!(!p.cut(&cfg, None, SEC + 1, SEC - 1, steady(20.0)));
        assert!(!p.dip_measures && p.undo.is_none());
        // So a refusal in the dip is no background: it cuts again.
        assert!(p.cut(&cfg, None, SEC + SEC / 10, SEC + SEC / 20, steady(20.0)));
        assert!(p.rate() < 17.0, "{}", p.rate());
        assert_eq!(p.background(&cfg), 0.0);
    }

    #[test]
    fn without_a_known_limit_the_rate_doubles_every_half_plateau_up_to_twice_the_demand() {
        let cfg = Adaptive::default();
        let mut p = Pacer::first(&cfg, None, 0, steady(10.0));
        assert!(!p.limit_known);
        let half = (cfg.plateau() / 2.0).ceil() as u64;
        for i in 1..=half {
            p.grow(&cfg, None, i * SEC / 100, i * SEC / 100, steady(100.0));
        }
        assert!(p.rate() >= 17.0 - 1e-9, "doubled: {}", p.rate());
        for i in half..200 {
            p.grow(&cfg, None, i * SEC / 100, i * SEC / 100, steady(30.0));
        }
        assert!((p.rate() - 60.0).abs() < 1e-9, "capped: {}", p.rate());
    }

    proptest::proptest! {
        /// For any sequence of answers, rates sent and pauses, the rate stays within its
        /// floor and ceiling, and growth never takes it past twice what the key sends.
        #[test]
        fn the_rate_stays_within_its_bounds(
            steps in proptest::collection::vec(
                (proptest::bool::weighted(0.2), 1u64..2_000_000_000, 0.0f64..500.0, 0.1f64..=1.0, proptest::bool::ANY),
                1..300,
            ),
            floor in 0.1f64..5.0,
            ceiling in 5.0f64..1000.0,
        ) {
            let cfg = Adaptive::default().floor(floor).ceiling(ceiling);
            let mut p = Pacer::first(&cfg, None, 0, steady(100.0));
            let mut now = 0;
            for (refused, dt, sent, free, fresh) in steps {
                now += dt;
                let sending = Sending { rate: sent, free, steady: true };
                let sent_at = if fresh { now - dt / 2 } else { 0 };
                let before = p.rate();
                if refused {
                    p.cut(&cfg, None, now, sent_at, sending);
                } else {
                    let after = p.grow(&cfg, None, now, sent_at, sending);
                    proptest::prop_assert!(after <= before.max(2.0 * sent).max(floor) + 1e-9);
                }
                proptest::prop_assert!(p.rate() >= floor - 1e-9 && p.rate() <= ceiling + 1e-9);
                proptest::prop_assert!(p.rate().is_finite() && p.peak.is_finite());
            }
        }
    }
}
