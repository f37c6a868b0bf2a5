//! The soak report: what happened to every logical request, as JSON or a readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Latency percentiles of the logical requests, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (any order).
    pub(crate) fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            millis(samples[index.clamp(1, samples.len()) - 1])
        };
        Latency {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: millis(samples[samples.len() - 1]),
        }
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

/// What the provider side saw, when the soak ran against the embedded mock provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct MockSummary {
    /// HTTP requests the mock received.
    pub(crate) arrivals: usize,
    /// Arrivals of a key before the retry hint the mock had announced to that key.
    pub(crate) early_arrivals: usize,
    /// The most requests of one session the mock had in flight at once.
    pub(crate) max_session_overlap: usize,
    /// Responses by HTTP status.
    pub(crate) statuses: BTreeMap<u16, usize>,
}

/// The JSON report of `towline soak --report json`. Holds no key: only counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    pub(crate) target: String,
    pub(crate) keys: usize,
    pub(crate) requests: u64,
    pub(crate) succeeded: u64,
    /// Failed logical requests by error class (snake_case names).
    pub(crate) failed: BTreeMap<&'static str, u64>,
    /// HTTP attempts actually sent to the target.
    pub(crate) attempts: u64,
    pub(crate) retries: u64,
    pub(crate) throttled_wait_ms: f64,
    pub(crate) breaker_rejections: u64,
    pub(crate) latency_ms: Latency,
    pub(crate) duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mock: Option<MockSummary>,
}

impl Report {
    pub(crate) fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }

    /// The readable summary printed at the end without `--report json`.
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        let rate = self.requests as f64 / self.duration_s.max(f64::EPSILON);
        let _ = writeln!(out, "towline soak against {}", self.target);
        let _ = writeln!(
            out,
            "  requests       {:>8}   ({:.1}/s over {:.2} s, {} key(s))",
            self.requests, rate, self.duration_s, self.keys
        );
        let _ = writeln!(out, "  succeeded      {:>8}", self.succeeded);
        let _ = writeln!(out, "  failed         {:>8}", self.failed_total());
        for (class, count) in &self.failed {
            let _ = writeln!(out, "    {class:<24} {count:>6}");
        }
        let _ = writeln!(out, "  attempts sent  {:>8}", self.attempts);
        let _ = writeln!(out, "  retries        {:>8}", self.retries);
        let _ = writeln!(out, "  throttle wait  {:>8.0} ms", self.throttled_wait_ms);
        let _ = writeln!(out, "  breaker fast-fails {:>4}", self.breaker_rejections);
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency ms     p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            l.p50, l.p90, l.p99, l.max
        );
        if let Some(mock) = &self.mock {
            let _ = writeln!(
                out,
                "  mock provider  {} arrivals, {} before an announced hint, max {} in flight per session",
                mock.arrivals, mock.early_arrivals, mock.max_session_overlap
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use towline::ErrorKind;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::of(samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(Latency::of(vec![]), Latency::default());
        let one = Latency::of(vec![Duration::from_micros(1500)]);
        assert_eq!((one.p50, one.max), (1.5, 1.5));
    }

    #[test]
    fn json_has_the_contract_fields() {
        let mut report = Report {
            target: "embedded mock".into(),
            keys: 2,
            requests: 3,
            succeeded: 2,
            failed: BTreeMap::new(),
            attempts: 5,
            retries: 2,
            throttled_wait_ms: 1.5,
            breaker_rejections: 0,
            latency_ms: Latency::default(),
            duration_s: 0.25,
            mock: None,
        };
        report.failed.insert(ErrorKind::QuotaExhausted.as_str(), 1);
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        for field in [
            "requests",
            "succeeded",
            "failed",
            "attempts",
            "retries",
            "throttled_wait_ms",
            "breaker_rejections",
            "latency_ms",
            "duration_s",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["failed"]["quota_exhausted"], 1);
        assert_eq!(report.succeeded + report.failed_total(), report.requests);
        assert!(report.table().contains("quota_exhausted"));
    }
}
