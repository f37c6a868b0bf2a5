//! The server-side rate limits: a GCRA token bucket and a fixed window, in integer nanoseconds
//! since the server's start so that they are exact and testable without a clock.

use std::time::Duration;

use crate::render::LimitInfo;
use crate::script::LimitShape;

/// The state of one key's limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LimiterState {
    /// Bucket: the theoretical arrival time of the next conforming request. Window: the index
    /// of the current window.
    mark: u64,
    /// Window: requests admitted in the current window.
    count: u32,
}

/// The limit's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted; what is left.
    Allowed(LimitInfo),
    /// Over the limit: wait this long; what is left (nothing).
    Rejected { wait: Duration, info: LimitInfo },
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Decides whether a request arriving `now` after the server's start is admitted.
pub(crate) fn admit(shape: LimitShape, state: &mut LimiterState, now: Duration) -> Admission {
    let now = nanos(now);
    match shape {
        LimitShape::Bucket { rate, burst } => {
            // GCRA. The emission interval is rounded up, so the bucket is never looser than
            // its rate.
            let interval = (1e9 / rate).ceil().max(1.0) as u64;
            let capacity = interval.saturating_mul(u64::from(burst));
            let tolerance = capacity - interval;
            let tat = state.mark.max(now);
            if tat - now > tolerance {
                let wait = tat - tolerance - now;
                return Admission::Rejected {
                    wait: Duration::from_nanos(wait),
                    info: LimitInfo {
                        limit: u64::from(burst),
                        remaining: 0,
                        reset: Duration::from_nanos(tat - now),
                    },
                };
            }
            let next = tat + interval;
            state.mark = next;
            let used = next - now;
            Admission::Allowed(LimitInfo {
                limit: u64::from(burst),
                remaining: (capacity - used) / interval,
                reset: Duration::from_nanos(used),
            })
        }
        LimitShape::Window { limit, window } => {
            let width = nanos(window).max(1);
            let index = now / width;
            if index != state.mark {
                state.mark = index;
                state.count = 0;
            }
            let reset = Duration::from_nanos((index + 1) * width - now);
            if state.count >= limit {
                return Admission::Rejected {
                    wait: reset,
                    info: LimitInfo {
                        limit: u64::from(limit),
                        remaining: 0,
                        reset,
                    },
                };
            }
            state.count += 1;
            Admission::Allowed(LimitInfo {
                limit: u64::from(limit),
                remaining: u64::from(limit - state.count),
                reset,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let shape = LimitShape::Bucket {
            rate: 10.0,
            burst: 2,
        };
        let mut state = LimiterState::default();
        let first = admit(shape, &mut state, ms(0));
        assert!(matches!(first, Admission::Allowed(i) if i.remaining == 1 && i.limit == 2));
        assert!(
            matches!(admit(shape, &mut state, ms(0)), Admission::Allowed(i) if i.remaining == 0)
        );
        match admit(shape, &mut state, ms(0)) {
            Admission::Rejected { wait, info } => {
                assert_eq!(wait, ms(100));
                assert_eq!(info.reset, ms(200));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(admit(shape, &mut state, ms(99)), Admission::Rejected { wait, .. } if wait == ms(1))
        );
        assert!(matches!(
            admit(shape, &mut state, ms(100)),
            Admission::Allowed(_)
        ));
    }

    #[test]
    fn window_resets_on_its_boundary() {
        let shape = LimitShape::Window {
            limit: 2,
            window: ms(1000),
        };
        let mut state = LimiterState::default();
        assert!(
            matches!(admit(shape, &mut state, ms(10)), Admission::Allowed(i) if i.remaining == 1 && i.reset == ms(990))
        );
        assert!(
            matches!(admit(shape, &mut state, ms(20)), Admission::Allowed(i) if i.remaining == 0)
        );
        assert!(
            matches!(admit(shape, &mut state, ms(900)), Admission::Rejected { wait, .. } if wait == ms(100))
        );
        assert!(
            matches!(admit(shape, &mut state, ms(1000)), Admission::Allowed(i) if i.remaining == 1)
        );
    }

    proptest! {
        // Conformance: whatever the arrivals, a bucket admits at most burst + rate × w in any
        // window of length w.
        #[test]
        fn bucket_conforms(
            gaps in prop::collection::vec(0u64..50, 1..200),
            rate in 1u32..50,
            burst in 1u32..5,
            w in 1u64..2000,
        ) {
            let shape = LimitShape::Bucket { rate: f64::from(rate), burst };
            let mut state = LimiterState::default();
            let mut t = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                t += gap;
                if matches!(admit(shape, &mut state, ms(t)), Admission::Allowed(_)) {
                    admitted.push(t);
                }
            }
            let bound = f64::from(burst) + f64::from(rate) * w as f64 / 1000.0;
            for (i, &start) in admitted.iter().enumerate() {
                let n = admitted[i..].iter().take_while(|&&u| u < start + w).count();
                prop_assert!(n as f64 <= bound, "{n} admitted in {w} ms, bound {bound}");
            }
        }

        // A rejected request admitted exactly when told to wait is admitted.
        #[test]
        fn waiting_the_hint_is_enough(rate in 1u32..100, burst in 1u32..4, at in 0u64..500) {
            let shape = LimitShape::Bucket { rate: f64::from(rate), burst };
            let mut state = LimiterState::default();
            let now = ms(at);
            while let Admission::Allowed(_) = admit(shape, &mut state, now) {}
            let Admission::Rejected { wait, .. } = admit(shape, &mut state, now) else { unreachable!() };
            prop_assert!(matches!(admit(shape, &mut state, now + wait), Admission::Allowed(_)));
        }
    }
}
