//! Fault scripts: what the mock answers, per API key, per session, or by default.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use towline_core::{ErrorKind, KeyHash};

use crate::Dialect;
use crate::error::ScriptError;
use crate::render::{ErrorSpec, HintForm, RetryAfter, is_renderable};

/// One scripted behaviour: an action (answer with an error, break the stream, stall, ...) and
/// the conditions under which it fires.
///
/// A [`Script`]'s faults are tried in order for every chat-completion request; the first whose
/// conditions all hold decides the answer, and a request no fault claims succeeds. Conditions:
///
/// - [`first(n)`](Fault::first): the script's first `n` requests of the key (attempts `1..=n`);
/// - [`after(n)`](Fault::after): every request after the first `n`;
/// - [`probability(p)`](Fault::probability): a seeded draw, the same for the same seed, key,
///   session and attempt whatever the interleaving of requests;
/// - [`during(from, until)`](Fault::during), [`starting_at`](Fault::starting_at),
///   [`ending_at`](Fault::ending_at): a time window measured from the server's start;
/// - [`stream(bool)`](Fault::stream): only streaming (or only non-streaming) requests.
///
/// Attempts are counted per script and key (and per session for a script chosen by session).
///
/// ```
/// use std::time::Duration;
/// use towline_core::ErrorKind;
/// use towline_mock::{ErrorSpec, Fault, HintForm, RetryAfter};
///
/// // Two 429s with `retry-after-ms: 250`, then success.
/// let limited = Fault::rate_limited(RetryAfter::millis(250).form(HintForm::Millis)).first(2);
/// // A 503 outage from 1 s to 3 s after the server started.
/// let outage = Fault::outage(Duration::from_secs(1), Duration::from_secs(3));
/// // 5 % random 500s.
/// let flaky = Fault::error(ErrorKind::Server).probability(0.05);
/// // Quota exhausted after 10 calls, rendered with a 403.
/// let quota = Fault::error(ErrorSpec::new(ErrorKind::QuotaExhausted).status(403)).after(10);
/// # let _ = (limited, outage, flaky, quota);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub(crate) when: When,
    pub(crate) action: Action,
    pub(crate) latency: Option<Duration>,
}

/// The conditions of a fault; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct When {
    pub(crate) first: Option<u32>,
    pub(crate) after: Option<u32>,
    pub(crate) p: Option<f64>,
    pub(crate) from: Option<Duration>,
    pub(crate) until: Option<Duration>,
    pub(crate) stream: Option<bool>,
}

impl When {
    /// Whether the deterministic conditions hold (the draw is checked separately).
    pub(crate) fn holds(&self, attempt: u32, elapsed: Duration, stream: bool) -> bool {
        self.first.is_none_or(|n| attempt <= n)
            && self.after.is_none_or(|n| attempt > n)
            && self.from.is_none_or(|from| elapsed >= from)
            && self.until.is_none_or(|until| elapsed < until)
            && self.stream.is_none_or(|s| s == stream)
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    Succeed,
    Error(ErrorSpec),
    BreakStream {
        after_chunks: u32,
        error: ErrorSpec,
    },
    CutStream {
        after_chunks: u32,
    },
    Reset,
    StallHeaders,
    StallBody {
        after_chunks: u32,
    },
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    OversizedBody {
        status: u16,
        bytes: u64,
    },
    EndlessStream {
        interval: Duration,
    },
}

impl Action {
    /// The name scripts use for this action (`fault = "..."`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Action::Succeed => "succeed",
            Action::Error(_) => "error",
            Action::BreakStream { .. } => "break_stream",
            Action::CutStream { .. } => "cut_stream",
            Action::Reset => "reset",
            Action::StallHeaders => "stall_headers",
            Action::StallBody { .. } => "stall_body",
            Action::Raw { .. } => "raw",
            Action::OversizedBody { .. } => "oversized_body",
            Action::EndlessStream { .. } => "endless_stream",
        }
    }

    /// Breaking or cutting a stream only means something for a streaming request; a
    /// non-streaming request passes such a fault by.
    pub(crate) fn needs_stream(&self) -> bool {
        matches!(self, Action::BreakStream { .. } | Action::CutStream { .. })
    }
}

impl Fault {
    fn with_action(action: Action) -> Self {
        Fault {
            when: When::default(),
            action,
            latency: None,
        }
    }

    /// Answers with an error of this class (or fully specified [`ErrorSpec`]), rendered in
    /// the script's dialect.
    pub fn error(error: impl Into<ErrorSpec>) -> Self {
        Fault::with_action(Action::Error(error.into()))
    }

    /// A rate-limit error (429, or the dialect's way of saying it) announcing `hint`.
    pub fn rate_limited(hint: RetryAfter) -> Self {
        Fault::error(ErrorSpec::new(ErrorKind::RateLimited).retry_after(hint))
    }

    /// A quota-exhausted error: retrying cannot help.
    pub fn quota_exhausted() -> Self {
        Fault::error(ErrorKind::QuotaExhausted)
    }

    /// An authentication failure (401, kimi-free-api -2002).
    pub fn auth_failure() -> Self {
        Fault::error(ErrorKind::Authentication)
    }

    /// A content-filter rejection.
    pub fn content_filtered() -> Self {
        Fault::error(ErrorKind::ContentFiltered)
    }

    /// The provider is overloaded (Anthropic 529, Moonshot `engine_overloaded_error`, ...).
    pub fn overloaded() -> Self {
        Fault::error(ErrorKind::Overloaded)
    }

    /// A server error (500).
    pub fn server_error() -> Self {
        Fault::error(ErrorKind::Server)
    }

    /// An outage: every request between `from` and `until` after the server's start gets a
    /// 503 server error.
    pub fn outage(from: Duration, until: Duration) -> Self {
        Fault::error(ErrorSpec::new(ErrorKind::Server).status(503)).during(from, until)
    }

    /// A streaming request gets `after_chunks` content chunks, then `error` as an in-band
    /// error event (in the dialect's stream form), then the stream ends without `[DONE]`.
    pub fn break_stream(after_chunks: u32, error: impl Into<ErrorSpec>) -> Self {
        Fault::with_action(Action::BreakStream {
            after_chunks,
            error: error.into(),
        })
    }

    /// A streaming request gets `after_chunks` content chunks, then the connection is cut
    /// (the chunked body never terminates properly).
    pub fn cut_stream(after_chunks: u32) -> Self {
        Fault::with_action(Action::CutStream { after_chunks })
    }

    /// The connection is closed before any response byte: a transport failure.
    pub fn reset() -> Self {
        Fault::with_action(Action::Reset)
    }

    /// No response ever comes (until the client gives up or the server shuts down).
    pub fn stall_headers() -> Self {
        Fault::with_action(Action::StallHeaders)
    }

    /// A 200 response whose body stops: a stream after `after_chunks` content chunks, a JSON
    /// answer after its headers.
    pub fn stall_body(after_chunks: u32) -> Self {
        Fault::with_action(Action::StallBody { after_chunks })
    }

    /// An explicit success, for a fault that only sets a latency (e.g. the first call is slow).
    pub fn succeed() -> Self {
        Fault::with_action(Action::Succeed)
    }

    /// Exactly this response: any status, headers and body (an HTML page from a proxy, an
    /// empty 502, a body in a dialect the mock does not know).
    pub fn raw<K, V>(
        status: u16,
        headers: impl IntoIterator<Item = (K, V)>,
        body: impl Into<String>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let headers = headers
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Fault::with_action(Action::Raw {
            status,
            headers,
            body: body.into(),
        })
    }

    /// An error response with a `bytes`-long body (generated as it is sent, never held in
    /// memory), to check that clients bound what they buffer.
    pub fn oversized_body(status: u16, bytes: u64) -> Self {
        Fault::with_action(Action::OversizedBody { status, bytes })
    }

    /// A 200 event stream that sends a `: keep-alive` comment every `interval` and never an
    /// event nor an end.
    pub fn endless_stream(interval: Duration) -> Self {
        Fault::with_action(Action::EndlessStream { interval })
    }

    /// Fires only for the script's first `n` requests of a key.
    pub fn first(mut self, n: u32) -> Self {
        self.when.first = Some(n);
        self
    }

    /// Fires only after the script's first `n` requests of a key.
    pub fn after(mut self, n: u32) -> Self {
        self.when.after = Some(n);
        self
    }

    /// Fires with probability `p`, drawn from the scenario's seed.
    pub fn probability(mut self, p: f64) -> Self {
        self.when.p = Some(p);
        self
    }

    /// Fires only from `from` until (excluded) `until` after the server's start.
    pub fn during(self, from: Duration, until: Duration) -> Self {
        self.starting_at(from).ending_at(until)
    }

    /// Fires only from `from` after the server's start.
    pub fn starting_at(mut self, from: Duration) -> Self {
        self.when.from = Some(from);
        self
    }

    /// Fires only until `until` after the server's start.
    pub fn ending_at(mut self, until: Duration) -> Self {
        self.when.until = Some(until);
        self
    }

    /// Fires only for streaming requests (`true`) or only for non-streaming ones (`false`).
    pub fn stream(mut self, stream: bool) -> Self {
        self.when.stream = Some(stream);
        self
    }

    /// Waits `latency` before answering when this fault fires (instead of the script's
    /// latency).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// The name of the fault's action as scripts spell it (`error`, `break_stream`, ...).
    ///
    /// ```
    /// assert_eq!(towline_mock::Fault::reset().name(), "reset");
    /// ```
    pub fn name(&self) -> &'static str {
        self.action.name()
    }
}

/// A server-side rate limit per API key, enforced before the faults: over it, the mock answers
/// the dialect's rate-limit error with a computed hint and rate-limit headers.
///
/// ```
/// use std::time::Duration;
/// use towline_mock::RateLimit;
///
/// // 10 requests per second, bursts of 2.
/// let bucket = RateLimit::token_bucket(10.0, 2);
/// // OpenAI-style "5 per 1 s window", with x-ratelimit-* headers on successes too.
/// let window = RateLimit::fixed_window(5, Duration::from_secs(1)).success_headers(true);
/// # let _ = (bucket, window);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    pub(crate) shape: LimitShape,
    pub(crate) success_headers: bool,
    pub(crate) hint_form: Option<HintForm>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum LimitShape {
    /// GCRA: `rate` per second, up to `burst` at once.
    Bucket { rate: f64, burst: u32 },
    /// At most `limit` per window of `window`, windows aligned on the server's start.
    Window { limit: u32, window: Duration },
}

impl RateLimit {
    /// A token bucket: `rate` requests per second, `burst` at once.
    pub fn token_bucket(rate: f64, burst: u32) -> Self {
        RateLimit {
            shape: LimitShape::Bucket { rate, burst },
            success_headers: false,
            hint_form: None,
        }
    }

    /// A fixed window: at most `limit` requests per `window`.
    pub fn fixed_window(limit: u32, window: Duration) -> Self {
        RateLimit {
            shape: LimitShape::Window { limit, window },
            success_headers: false,
            hint_form: None,
        }
    }

    /// Also reports `x-ratelimit-{limit,remaining,reset}-requests` (in the dialect's flavour) on
    /// admitted requests, as OpenAI does.
    pub fn success_headers(mut self, on: bool) -> Self {
        self.success_headers = on;
        self
    }

    /// Announces the computed wait in `form` instead of the dialect's usual one.
    pub fn hint_form(mut self, form: HintForm) -> Self {
        self.hint_form = Some(form);
        self
    }
}

/// How the mock answers the requests of one API key, one session, or everyone else: the
/// dialect of its errors, a latency, a server-side rate limit, the kimi-free-api session rule,
/// the scripted faults, and the shape of successful answers.
///
/// ```
/// use std::time::Duration;
/// use towline_mock::{Dialect, Fault, RateLimit, Script};
///
/// let script = Script::new(Dialect::KimiFreeApi)
///     .latency(Duration::from_millis(5))
///     .session_busy(true)
///     .rate_limit(RateLimit::token_bucket(10.0, 2))
///     .fault(Fault::server_error().probability(0.05))
///     .chunks(8);
/// assert_eq!(script.dialect(), Dialect::KimiFreeApi);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub(crate) dialect: Dialect,
    pub(crate) latency: Duration,
    pub(crate) faults: Vec<Fault>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) session_busy: bool,
    pub(crate) request_ids: bool,
    pub(crate) reply: String,
    pub(crate) chunks: u32,
    pub(crate) chunk_interval: Duration,
}

impl Default for Script {
    fn default() -> Self {
        Script::new(Dialect::default())
    }
}

impl Script {
    /// The reply every successful completion carries unless a script says otherwise.
    pub const DEFAULT_REPLY: &'static str = "Hello from the towline mock provider.";

    /// A script that always succeeds, speaking `dialect` when it fails.
    pub fn new(dialect: Dialect) -> Self {
        Script {
            dialect,
            latency: Duration::ZERO,
            faults: Vec::new(),
            rate_limit: None,
            session_busy: false,
            request_ids: true,
            reply: Script::DEFAULT_REPLY.to_owned(),
            chunks: 4,
            chunk_interval: Duration::ZERO,
        }
    }

    /// Waits `latency` before answering (faults may override it). Rejections by the rate
    /// limit and the session rule are immediate, as a provider's gateway answers them.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Adds a fault; faults are tried in the order they were added.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// Adds several faults.
    pub fn faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.faults.extend(faults);
        self
    }

    /// Enforces a server-side rate limit per API key.
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = Some(limit);
        self
    }

    /// The kimi-free-api rule: a request for a session (`x-session-id`) while another request
    /// of that session is still being answered (for a stream: until its last byte) gets the
    /// dialect's rate-limit error, -2005 "已有对话流正在输出" in kimi-free-api.
    pub fn session_busy(mut self, on: bool) -> Self {
        self.session_busy = on;
        self
    }

    /// Whether responses carry a request id (header, and body where the dialect has one).
    /// On by default.
    pub fn request_ids(mut self, on: bool) -> Self {
        self.request_ids = on;
        self
    }

    /// The assistant's reply in successful completions.
    pub fn reply(mut self, reply: impl Into<String>) -> Self {
        self.reply = reply.into();
        self
    }

    /// How many content chunks a streamed reply is split into (at least 1; default 4).
    pub fn chunks(mut self, chunks: u32) -> Self {
        self.chunks = chunks;
        self
    }

    /// The pause between two chunks of a stream (default none).
    pub fn chunk_interval(mut self, interval: Duration) -> Self {
        self.chunk_interval = interval;
        self
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The scripted faults, in order.
    pub fn fault_list(&self) -> &[Fault] {
        &self.faults
    }
}

/// Which requests a script is for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Selector {
    pub(crate) key: Option<String>,
    pub(crate) session: Option<String>,
}

impl fmt::Debug for Selector {
    // The key is a credential (even a test one): print its digest only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("key", &self.key.as_ref().map(|k| KeyHash::of(k.as_bytes())))
            .field("session", &self.session)
            .finish()
    }
}

/// Everything the mock does: a default script, scripts for particular keys and sessions, the
/// seed of its random draws and the models it lists.
///
/// A request is answered by the script for its key and session if there is one, else the one
/// for its session, else the one for its key, else the default script.
///
/// Written in Rust with the builder methods, or loaded from JSON or TOML (same fields):
///
/// ```
/// use std::time::Duration;
/// use towline_core::ErrorKind;
/// use towline_mock::{Dialect, Fault, RetryAfter, Scenario, Script};
///
/// let from_rust = Scenario::new()
///     .seed(7)
///     .key("sk-limited", Script::new(Dialect::Moonshot).fault(Fault::rate_limited(RetryAfter::secs(1)).first(2)));
///
/// let from_toml = Scenario::from_toml_str(r#"
///     seed = 7
///     [[scripts]]
///     key = "sk-limited"
///     dialect = "moonshot"
///     faults = [{ class = "rate_limited", first = 2, retry_after = { ms = 1000 } }]
/// "#).unwrap();
/// assert_eq!(from_rust, from_toml);
/// ```
#[derive(Clone, PartialEq)]
pub struct Scenario {
    pub(crate) seed: u64,
    pub(crate) models: Vec<String>,
    pub(crate) default: Script,
    pub(crate) scripts: Vec<(Selector, Script)>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("seed", &self.seed)
            .field("models", &self.models)
            .field("default", &self.default)
            .field("scripts", &self.scripts)
            .finish()
    }
}

impl Scenario {
    /// The model every scenario lists unless told otherwise.
    pub const DEFAULT_MODEL: &'static str = "mock-model";

    /// A scenario where every request succeeds, in the OpenAI dialect, with seed 0.
    pub fn new() -> Self {
        Scenario {
            seed: 0,
            models: vec![Scenario::DEFAULT_MODEL.to_owned()],
            default: Script::default(),
            scripts: Vec::new(),
        }
    }

    /// The seed of the random draws ([`Fault::probability`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The models `GET /v1/models` lists.
    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    /// The script for requests no other script selects.
    pub fn default_script(mut self, script: Script) -> Self {
        self.default = script;
        self
    }

    /// The script for requests with API key `key` (bearer token or `x-api-key`).
    pub fn key(self, key: impl Into<String>, script: Script) -> Self {
        self.with_selector(Some(key.into()), None, script)
    }

    /// The script for requests of session `session` (`x-session-id`).
    pub fn session(self, session: impl Into<String>, script: Script) -> Self {
        self.with_selector(None, Some(session.into()), script)
    }

    /// The script for requests with API key `key` in session `session`.
    pub fn key_session(
        self,
        key: impl Into<String>,
        session: impl Into<String>,
        script: Script,
    ) -> Self {
        self.with_selector(Some(key.into()), Some(session.into()), script)
    }

    fn with_selector(
        mut self,
        key: Option<String>,
        session: Option<String>,
        script: Script,
    ) -> Self {
        self.scripts.push((Selector { key, session }, script));
        self
    }

    /// The default script.
    pub fn default_script_ref(&self) -> &Script {
        &self.default
    }

    /// The seed.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// Checks every setting; the error names the first bad field as a script file spells it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use towline_mock::{Fault, Scenario, Script};
    ///
    /// let bad = Scenario::new().key("sk-1", Script::default().fault(
    ///     Fault::server_error().during(Duration::from_secs(3), Duration::from_secs(1)),
    /// ));
    /// assert_eq!(bad.validate().unwrap_err().field(), "scripts[0].faults[0].until_ms");
    /// ```
    pub fn validate(&self) -> Result<(), ScriptError> {
        validate_script(&self.default, "default")?;
        let mut seen = HashSet::new();
        for (i, (selector, script)) in self.scripts.iter().enumerate() {
            let path = format!("scripts[{i}]");
            validate_selector(selector, &path)?;
            if !seen.insert(selector.clone()) {
                let first = self
                    .scripts
                    .iter()
                    .position(|(s, _)| s == selector)
                    .unwrap_or_default();
                return Err(ScriptError::new(
                    path,
                    format!("selects the same key and session as `scripts[{first}]`"),
                ));
            }
            validate_script(script, &path)?;
        }
        Ok(())
    }
}

fn validate_selector(selector: &Selector, path: &str) -> Result<(), ScriptError> {
    match (&selector.key, &selector.session) {
        (None, None) => Err(ScriptError::new(
            path,
            "give `key`, `session` or both (the default script is `default`)",
        )),
        (Some(k), _) if k.trim().is_empty() => {
            Err(ScriptError::new(format!("{path}.key"), "must not be empty"))
        }
        (_, Some(s)) if s.trim().is_empty() => Err(ScriptError::new(
            format!("{path}.session"),
            "must not be empty",
        )),
        _ => Ok(()),
    }
}

fn validate_script(script: &Script, path: &str) -> Result<(), ScriptError> {
    if script.chunks == 0 {
        return Err(ScriptError::new(
            format!("{path}.chunks"),
            "must be at least 1",
        ));
    }
    if let Some(limit) = &script.rate_limit {
        validate_rate_limit(limit, &format!("{path}.rate_limit"))?;
    }
    for (i, fault) in script.faults.iter().enumerate() {
        validate_fault(fault, script, &format!("{path}.faults[{i}]"))?;
    }
    Ok(())
}

fn validate_rate_limit(limit: &RateLimit, path: &str) -> Result<(), ScriptError> {
    match limit.shape {
        LimitShape::Bucket { rate, burst } => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ScriptError::new(
                    format!("{path}.rate"),
                    format!("must be a positive number of requests per second, got {rate}"),
                ));
            }
            if rate > 1e9 {
                return Err(ScriptError::new(
                    format!("{path}.rate"),
                    format!("must be at most 1e9 requests per second, got {rate}"),
                ));
            }
            if burst == 0 {
                return Err(ScriptError::new(
                    format!("{path}.burst"),
                    "must be at least 1",
                ));
            }
        }
        LimitShape::Window { limit, window } => {
            if limit == 0 {
                return Err(ScriptError::new(
                    format!("{path}.limit"),
                    "must be at least 1",
                ));
            }
            if window.is_zero() {
                return Err(ScriptError::new(
                    format!("{path}.window_ms"),
                    "must be longer than 0 ms",
                ));
            }
        }
    }
    Ok(())
}

fn validate_fault(fault: &Fault, script: &Script, path: &str) -> Result<(), ScriptError> {
    let field = |name: &str| format!("{path}.{name}");
    let when = &fault.when;
    if when.first == Some(0) {
        return Err(ScriptError::new(
            field("first"),
            "must be at least 1 (a fault for the first 0 requests never fires)",
        ));
    }
    if let Some(p) = when.p
        && !(0.0..=1.0).contains(&p)
    {
        return Err(ScriptError::new(
            field("p"),
            format!("must be a probability within [0, 1], got {p}"),
        ));
    }
    if let (Some(from), Some(until)) = (when.from, when.until)
        && until <= from
    {
        return Err(ScriptError::new(
            field("until_ms"),
            format!(
                "must be after `from_ms` ({} ms), got {} ms",
                from.as_millis(),
                until.as_millis()
            ),
        ));
    }
    match &fault.action {
        Action::Error(error) => validate_error(error, script.dialect, path),
        Action::BreakStream {
            after_chunks,
            error,
        } => {
            validate_after_chunks(*after_chunks, script, path)?;
            validate_error(error, script.dialect, path)
        }
        Action::CutStream { after_chunks } | Action::StallBody { after_chunks } => {
            validate_after_chunks(*after_chunks, script, path)
        }
        Action::Raw {
            status, headers, ..
        } => {
            validate_status(*status, 100, &field("status"))?;
            for (name, value) in headers {
                let name_ok = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
                if !name_ok || http::HeaderValue::from_str(value).is_err() {
                    return Err(ScriptError::new(
                        format!("{path}.headers.{name}"),
                        "is not a valid HTTP header",
                    ));
                }
            }
            Ok(())
        }
        Action::OversizedBody { status, .. } => validate_status(*status, 100, &field("status")),
        Action::EndlessStream { interval } if interval.is_zero() => Err(ScriptError::new(
            field("interval_ms"),
            "must be longer than 0 ms",
        )),
        Action::EndlessStream { .. } | Action::Succeed | Action::Reset | Action::StallHeaders => {
            Ok(())
        }
    }
}

fn validate_after_chunks(after: u32, script: &Script, path: &str) -> Result<(), ScriptError> {
    if after > script.chunks {
        return Err(ScriptError::new(
            format!("{path}.after_chunks"),
            format!(
                "is {after}, more than the script's {} chunks (`chunks`)",
                script.chunks
            ),
        ));
    }
    Ok(())
}

fn validate_status(status: u16, min: u16, field: &str) -> Result<(), ScriptError> {
    if !(min..=599).contains(&status) {
        return Err(ScriptError::new(
            field,
            format!("must be an HTTP status within {min}..=599, got {status}"),
        ));
    }
    Ok(())
}

fn validate_error(error: &ErrorSpec, dialect: Dialect, path: &str) -> Result<(), ScriptError> {
    let kind = error.kind();
    if !is_renderable(kind) {
        let hint = match kind {
            ErrorKind::Transport => "; use fault `reset` for a broken connection",
            ErrorKind::StreamInterrupted => {
                "; use fault `break_stream` or `cut_stream` for a broken stream"
            }
            ErrorKind::Timeout => "",
            _ if kind.is_local() => ", it is a decision towline takes locally",
            _ => "",
        };
        return Err(ScriptError::new(
            format!("{path}.class"),
            format!("`{kind}` is not an error a provider can send{hint}"),
        ));
    }
    if let Some(status) = error.status_override() {
        validate_status(status, 400, &format!("{path}.status"))?;
    }
    let kimi = matches!(
        dialect,
        Dialect::KimiFreeApi | Dialect::KimiFreeApiDocumented
    );
    if let Some(code) = error.code_override()
        && kimi
        && code.parse::<i64>().is_err()
    {
        return Err(ScriptError::new(
            format!("{path}.code"),
            format!("must be an integer for dialect {dialect}, got `{code}`"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_combine() {
        let when = When {
            first: Some(3),
            from: Some(Duration::from_secs(1)),
            until: Some(Duration::from_secs(2)),
            stream: Some(true),
            ..When::default()
        };
        let in_window = Duration::from_millis(1500);
        assert!(when.holds(3, in_window, true));
        assert!(!when.holds(4, in_window, true), "past first");
        assert!(
            !when.holds(1, Duration::from_secs(2), true),
            "until is excluded"
        );
        assert!(
            !when.holds(1, Duration::from_millis(999), true),
            "before from"
        );
        assert!(!when.holds(1, in_window, false), "not a stream");
        let after = When {
            after: Some(2),
            ..When::default()
        };
        assert!(!after.holds(2, Duration::ZERO, false));
        assert!(after.holds(3, Duration::ZERO, false));
    }

    #[test]
    fn selector_debug_hides_the_key() {
        let s = Selector {
            key: Some("sk-very-secret".into()),
            session: Some("s1".into()),
        };
        let debug = format!("{s:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("KeyHash("), "{debug}");
    }
}
