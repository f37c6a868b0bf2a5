//! The metric instruments, created once per layer from the configured `Meter`.

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

use crate::names::*;

/// Every instrument towline-trace records to. Cloning one is an `Arc` clone.
#[derive(Debug, Clone)]
pub(crate) struct Instruments {
    pub(crate) http_duration: Histogram<f64>,
    pub(crate) call_duration: Histogram<f64>,
    pub(crate) calls: Counter<u64>,
    pub(crate) retries: Counter<u64>,
    pub(crate) retry_stops: Counter<u64>,
    pub(crate) throttle_wait: Histogram<f64>,
    pub(crate) throttle_rejections: Counter<u64>,
    pub(crate) throttle_pauses: Counter<u64>,
    pub(crate) learned_rate: Gauge<f64>,
    pub(crate) breaker_state: Gauge<u64>,
    pub(crate) breaker_rejections: Counter<u64>,
    pub(crate) session_wait: Histogram<f64>,
    pub(crate) session_rejections: Counter<u64>,
}

impl Instruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        let seconds = |name: &'static str, description: &'static str, buckets: &[f64]| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(buckets.to_vec())
                .build()
        };
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        Instruments {
            http_duration: seconds(
                HTTP_CLIENT_REQUEST_DURATION,
                "Duration of HTTP client requests (one per attempt).",
                &HTTP_DURATION_BUCKETS,
            ),
            call_duration: seconds(
                GEN_AI_CLIENT_OPERATION_DURATION,
                "Duration of GenAI calls, with every wait and retry.",
                &GEN_AI_DURATION_BUCKETS,
            ),
            calls: counter(CALLS, "{call}", "Finished calls, by error class."),
            retries: counter(RETRIES, "{retry}", "Retries scheduled, by error class."),
            retry_stops: counter(
                RETRY_STOPS,
                "{call}",
                "Calls the retry layer gave up on, by reason.",
            ),
            throttle_wait: seconds(
                THROTTLE_WAIT,
                "Time calls waited for their key's rate.",
                &WAIT_BUCKETS,
            ),
            throttle_rejections: counter(
                THROTTLE_REJECTIONS,
                "{call}",
                "Calls the throttle refused, by reason.",
            ),
            throttle_pauses: counter(
                THROTTLE_PAUSES,
                "{pause}",
                "Keys paused because of the provider's answer, by cause.",
            ),
            learned_rate: meter
                .f64_gauge(THROTTLE_LEARNED_RATE)
                .with_unit("{request}/s")
                .with_description("The send rate the throttle last learned.")
                .build(),
            breaker_state: meter
                .u64_gauge(BREAKER_STATE_GAUGE)
                .with_unit("1")
                .with_description("1 for the endpoint's current circuit state, 0 for the others.")
                .build(),
            breaker_rejections: counter(
                BREAKER_REJECTIONS,
                "{call}",
                "Calls refused by an open circuit breaker.",
            ),
            session_wait: seconds(
                SESSION_WAIT,
                "Time calls waited for their conversation's earlier turns.",
                &WAIT_BUCKETS,
            ),
            session_rejections: counter(
                SESSION_REJECTIONS,
                "{call}",
                "Calls the session queue refused, by reason.",
            ),
        }
    }
}
