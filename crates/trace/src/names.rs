//! The names towline-trace records: span attributes, span event names and metric instruments.
//!
//! The standard names come from the OpenTelemetry semantic conventions (HTTP client spans and
//! metrics, which are stable, and GenAI client spans, which are in development); everything
//! towline adds lives under `towline.`. Build dashboards and alerts on these constants.
//!
//! ```
//! use towline_trace::names;
//!
//! assert_eq!(names::ERROR_TYPE, "error.type");
//! assert_eq!(names::HTTP_CLIENT_REQUEST_DURATION, "http.client.request.duration");
//! ```

// ---- Standard attributes -------------------------------------------------------------------

/// `http.request.method`: `GET`, `POST`, ... or `_OTHER`.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// `http.request.method_original`: the method as sent, when it is not a standard one.
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
/// `http.request.resend_count`: on the second and later attempts of a call, how many were sent
/// before.
pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";
/// `http.response.status_code`: the provider's HTTP status.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// `server.address`: the provider's host name.
pub const SERVER_ADDRESS: &str = "server.address";
/// `server.port`: the provider's port (the scheme's default when the URL has none).
pub const SERVER_PORT: &str = "server.port";
/// `url.full`: the request URL, with user-info credentials and query values redacted.
pub const URL_FULL: &str = "url.full";
/// `error.type`: the normalized class of the failure (`ErrorKind::as_str`: `rate_limited`,
/// `circuit_open`, ...), the HTTP status code for an error response that was not normalized,
/// or `cancelled` when the caller dropped the call before it finished.
pub const ERROR_TYPE: &str = "error.type";
/// `gen_ai.operation.name`: `chat`, `text_completion`, `embeddings`, `generate_content`.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// `gen_ai.provider.name`: `openai`, `anthropic`, `moonshot`, ... (from the host or configured).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// `gen_ai.request.model`: the model the request asked for.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// `gen_ai.request.stream`: `true` when the request asked for a streamed answer.
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
/// `gen_ai.response.time_to_first_chunk`: seconds from the start of the call to the first
/// chunk of a streamed answer.
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";

// ---- towline attributes --------------------------------------------------------------------

/// The provider's request id (`x-request-id`, `request-id`, or the error body's), for support
/// tickets.
pub const PROVIDER_REQUEST_ID: &str = "towline.provider.request_id";
/// The provider's own error type (`rate_limit_reached_error`, ...).
pub const PROVIDER_ERROR_TYPE: &str = "towline.provider.error.type";
/// The provider's own error code (`too_many_requests`, `-2002`, ...).
pub const PROVIDER_ERROR_CODE: &str = "towline.provider.error.code";
/// Seconds a call waited (session slot, throttle).
pub const WAIT: &str = "towline.wait";
/// Seconds until the refusing layer could admit the call.
pub const RETRY_AFTER: &str = "towline.retry_after";
/// Why the session queue refused a call: `full` or `wait_too_long`.
pub const SESSION_REASON: &str = "towline.session.reason";
/// Why the throttle refused a call (`ThrottleReason::as_str`).
pub const THROTTLE_REASON: &str = "towline.throttle.reason";
/// Seconds a key was paused by the throttle.
pub const THROTTLE_PAUSE: &str = "towline.throttle.pause";
/// The error class that made the throttle pause a key.
pub const THROTTLE_CAUSE: &str = "towline.throttle.cause";
/// The send rate, in requests per second, the throttle learned for a key.
pub const THROTTLE_RATE: &str = "towline.throttle.rate";
/// The throttle key's digest (`KeyHash`, hex): tells keys apart without exposing them.
pub const THROTTLE_KEY: &str = "towline.throttle.key";
/// A circuit breaker state: `closed`, `open`, `half_open`.
pub const BREAKER_STATE: &str = "towline.breaker.state";
/// The state a breaker left.
pub const BREAKER_FROM: &str = "towline.breaker.from";
/// The state a breaker entered.
pub const BREAKER_TO: &str = "towline.breaker.to";
/// The number of the attempt that failed (1 for the first).
pub const RETRY_ATTEMPT: &str = "towline.retry.attempt";
/// Seconds the retry layer waits before the next attempt.
pub const RETRY_DELAY: &str = "towline.retry.delay";
/// Attempts sent before the retry layer stopped.
pub const RETRY_ATTEMPTS: &str = "towline.retry.attempts";
/// Why the retry layer stopped (`StopReason::as_str`).
pub const RETRY_STOP_REASON: &str = "towline.retry.stop_reason";

// ---- Span event names ----------------------------------------------------------------------

/// The call waited behind earlier turns of its conversation.
pub const EVENT_SESSION_WAITED: &str = "towline.session.waited";
/// The session layer refused the call.
pub const EVENT_SESSION_REJECTED: &str = "towline.session.rejected";
/// The call waited for its key's rate.
pub const EVENT_THROTTLE_WAITED: &str = "towline.throttle.waited";
/// The throttle refused the call.
pub const EVENT_THROTTLE_REJECTED: &str = "towline.throttle.rejected";
/// The throttle paused the call's key.
pub const EVENT_KEY_PAUSED: &str = "towline.throttle.key_paused";
/// The throttle learned a new send rate for the call's key.
pub const EVENT_RATE_LEARNED: &str = "towline.throttle.rate_learned";
/// The breaker refused the call.
pub const EVENT_BREAKER_REJECTED: &str = "towline.breaker.rejected";
/// The endpoint's breaker changed state.
pub const EVENT_BREAKER_TRANSITION: &str = "towline.breaker.transition";
/// The retry layer will send another attempt.
pub const EVENT_RETRY_SCHEDULED: &str = "towline.retry.scheduled";
/// The retry layer stopped and returned an error.
pub const EVENT_RETRY_STOPPED: &str = "towline.retry.stopped";
/// The caller dropped the response body before its end.
pub const EVENT_BODY_DROPPED: &str = "towline.response.body_dropped";
/// A decision event of a kind this version does not know.
pub const EVENT_OTHER: &str = "towline.event";

// ---- Metric instruments --------------------------------------------------------------------

/// Histogram, seconds, one point per attempt sent (HTTP semconv, its bucket boundaries).
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";
/// Histogram, seconds, one point per call with all its waits and retries (GenAI semconv, its
/// bucket boundaries).
pub const GEN_AI_CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Counter of finished calls, by `error.type` (absent on success).
pub const CALLS: &str = "towline.client.calls";
/// Counter of retries scheduled, by `error.type` of the failed attempt.
pub const RETRIES: &str = "towline.client.retries";
/// Counter of calls the retry layer gave up on, by `towline.retry.stop_reason`.
pub const RETRY_STOPS: &str = "towline.client.retry.stops";
/// Histogram, seconds, of throttle waits.
pub const THROTTLE_WAIT: &str = "towline.client.throttle.wait";
/// Counter of throttle refusals, by `towline.throttle.reason`.
pub const THROTTLE_REJECTIONS: &str = "towline.client.throttle.rejections";
/// Counter of key pauses, by `towline.throttle.cause`.
pub const THROTTLE_PAUSES: &str = "towline.client.throttle.pauses";
/// Gauge, requests per second, of the last learned send rate.
pub const THROTTLE_LEARNED_RATE: &str = "towline.client.throttle.learned_rate";
/// Gauge per `towline.breaker.state`: 1 for the endpoint's current state, 0 for the others.
pub const BREAKER_STATE_GAUGE: &str = "towline.client.breaker.state";
/// Counter of calls refused by an open breaker.
pub const BREAKER_REJECTIONS: &str = "towline.client.breaker.rejections";
/// Histogram, seconds, of waits for a conversation's session slot.
pub const SESSION_WAIT: &str = "towline.client.session.wait";
/// Counter of session queue refusals, by `towline.session.reason`.
pub const SESSION_REJECTIONS: &str = "towline.client.session.rejections";

/// The bucket boundaries the HTTP semantic conventions give for `http.client.request.duration`.
pub const HTTP_DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The bucket boundaries the GenAI semantic conventions give for
/// `gen_ai.client.operation.duration` (LLM calls last far longer than 10 s).
pub const GEN_AI_DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// Bucket boundaries for towline's wait histograms (throttle and session waits): from a
/// millisecond to two minutes.
pub const WAIT_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];
