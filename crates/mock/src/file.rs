//! Scripts as data: the JSON/TOML form of a [`Scenario`], and loading it.
//!
//! The file form is flat so that it reads well in TOML (`[[scripts]]`, `[[scripts.faults]]`):
//! every fault is one table whose `fault` field names its action (default `error`) and whose
//! other fields are its conditions and parameters. Unknown fields are rejected, and so is a
//! field the named action does not use.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use towline_core::ErrorKind;

use crate::Dialect;
use crate::error::ScriptError;
use crate::render::{ErrorSpec, HintForm, RetryAfter};
use crate::script::{Action, Fault, LimitShape, RateLimit, Scenario, Script, Selector, When};

impl Scenario {
    /// Parses and validates a scenario written in JSON.
    ///
    /// ```
    /// let s = towline_mock::Scenario::from_json_str(r#"{"default": {"dialect": "anthropic"}}"#).unwrap();
    /// assert_eq!(s.default_script_ref().dialect(), towline_mock::Dialect::Anthropic);
    /// ```
    pub fn from_json_str(json: &str) -> Result<Scenario, ScriptError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: RawScenario =
            serde_path_to_error::deserialize(&mut de).map_err(|e| path_error(&e, e.inner()))?;
        de.end()
            .map_err(|e| ScriptError::new("", format!("invalid JSON: {e}")))?;
        raw.into_scenario()
    }

    /// Parses and validates a scenario written in TOML.
    ///
    /// ```
    /// let s = towline_mock::Scenario::from_toml_str("seed = 3\n[default]\nlatency_ms = 20\n").unwrap();
    /// assert_eq!(s.seed_value(), 3);
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScriptError> {
        let de = toml::Deserializer::parse(text).map_err(|e| {
            ScriptError::new("", format!("invalid TOML: {}", toml_message(&e, text)))
        })?;
        let raw: RawScenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let message = toml_message(e.inner(), text);
            path_error(&e, &message)
        })?;
        raw.into_scenario()
    }

    /// A mixed fault script for soaks and chaos tests (`scenarios/mixed.toml` in this crate):
    /// for every key, a server-side token bucket (500/s, burst 50), 5 % rate limits with a
    /// 100 ms `retry-after-ms`, 5 % 500s, 5 % streams broken after two chunks, a 503 outage from
    /// 2 s to 3 s after the start and the session rule; key `sk-quota` always answers Moonshot's
    /// quota error, `sk-revoked` Anthropic's authentication error, and `sk-kimi` speaks
    /// kimi-free-api behind a 20/s bucket.
    ///
    /// ```
    /// let mixed = towline_mock::Scenario::mixed();
    /// assert_eq!(mixed.seed_value(), 7);
    /// ```
    pub fn mixed() -> Scenario {
        Scenario::from_toml_str(include_str!("../scenarios/mixed.toml"))
            .expect("the bundled mixed scenario is valid (tested)")
    }

    /// Reads a scenario from a `.json` or `.toml` file (any other extension is tried as TOML,
    /// then JSON).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScriptError::new("", format!("cannot read {}: {e}", path.display())))?;
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Scenario::from_json_str(&text),
            Some(ext) if ext.eq_ignore_ascii_case("toml") => Scenario::from_toml_str(&text),
            _ => Scenario::from_toml_str(&text)
                .or_else(|toml_err| Scenario::from_json_str(&text).map_err(|_| toml_err)),
        }
    }

    /// The scenario as pretty JSON, in the form [`from_json_str`](Scenario::from_json_str)
    /// reads back (keys included: it is a test fixture).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string_pretty(&RawScenario::from(self)).unwrap_or_default()
    }

    /// The scenario as TOML, in the form [`from_toml_str`](Scenario::from_toml_str) reads back.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(&RawScenario::from(self)).unwrap_or_default()
    }
}

impl Serialize for Scenario {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawScenario::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scenario {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawScenario::deserialize(deserializer)?;
        raw.into_scenario().map_err(serde::de::Error::custom)
    }
}

fn path_error<E>(err: &serde_path_to_error::Error<E>, inner: &dyn fmt::Display) -> ScriptError {
    let path = err.path().to_string();
    let field = if path == "." { String::new() } else { path };
    ScriptError::new(field, inner.to_string())
}

/// A TOML error on one line: its message and where it is.
fn toml_message(err: &toml::de::Error, text: &str) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("{message} (line {line}, column {column})")
        }
        None => message.to_owned(),
    }
}

/// A duration in milliseconds: a non-negative integer or decimal number.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ms(Duration);

impl Serialize for Ms {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nanos = self.0.as_nanos();
        if nanos.is_multiple_of(1_000_000) {
            serializer.serialize_u64(u64::try_from(nanos / 1_000_000).unwrap_or(u64::MAX))
        } else {
            serializer.serialize_f64(self.0.as_secs_f64() * 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for Ms {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Ms;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of milliseconds")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Ms, E> {
                Ok(Ms(Duration::from_millis(v)))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Ms, E> {
                u64::try_from(v)
                    .map(|v| Ms(Duration::from_millis(v)))
                    .map_err(|_| {
                        E::custom(format!(
                            "expected a non-negative number of milliseconds, got {v}"
                        ))
                    })
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Ms, E> {
                if (0.0..1.8e19).contains(&v) {
                    Ok(Ms(Duration::from_secs_f64(v / 1000.0)))
                } else {
                    Err(E::custom(format!(
                        "expected a non-negative number of milliseconds, got {v}"
                    )))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default, skip_serializing_if = "is_zero")]
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<RawScript>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scripts: Vec<RawScript>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dialect: Option<Dialect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Ms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RawRateLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_busy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_ids: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reply: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_interval_ms: Option<Ms>,
    // Last, so that TOML writes the array of tables after the plain values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    faults: Vec<RawFault>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_ms: Option<Ms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    success_headers: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hint_form: Option<HintForm>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryAfter {
    ms: Ms,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    form: Option<HintForm>,
}

impl Default for Ms {
    fn default() -> Self {
        Ms(Duration::ZERO)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultName {
    Error,
    BreakStream,
    CutStream,
    Reset,
    StallHeaders,
    StallBody,
    Succeed,
    Raw,
    OversizedBody,
    EndlessStream,
}

impl FaultName {
    fn as_str(self) -> &'static str {
        match self {
            FaultName::Error => "error",
            FaultName::BreakStream => "break_stream",
            FaultName::CutStream => "cut_stream",
            FaultName::Reset => "reset",
            FaultName::StallHeaders => "stall_headers",
            FaultName::StallBody => "stall_body",
            FaultName::Succeed => "succeed",
            FaultName::Raw => "raw",
            FaultName::OversizedBody => "oversized_body",
            FaultName::EndlessStream => "endless_stream",
        }
    }

    /// The parameter fields this action reads (conditions and `latency_ms` go with any).
    fn parameters(self) -> &'static [&'static str] {
        const ERROR: &[&str] = &[
            "class",
            "status",
            "message",
            "code",
            "retry_after",
            "should_retry",
        ];
        match self {
            FaultName::Error => ERROR,
            FaultName::BreakStream => &[
                "after_chunks",
                "class",
                "status",
                "message",
                "code",
                "retry_after",
                "should_retry",
            ],
            FaultName::CutStream | FaultName::StallBody => &["after_chunks"],
            FaultName::Reset | FaultName::StallHeaders | FaultName::Succeed => &[],
            FaultName::Raw => &["status", "headers", "body"],
            FaultName::OversizedBody => &["status", "bytes"],
            FaultName::EndlessStream => &["interval_ms"],
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fault: Option<FaultName>,
    // Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_ms: Option<Ms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_ms: Option<Ms>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency_ms: Option<Ms>,
    // Errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    class: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    should_retry: Option<bool>,
    // Streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_chunks: Option<u32>,
    // Raw answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interval_ms: Option<Ms>,
    // Tables last, for TOML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<RawRetryAfter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, String>>,
}

impl RawFault {
    /// The parameter fields that are set.
    fn parameters_present(&self) -> Vec<&'static str> {
        let fields = [
            ("class", self.class.is_some()),
            ("status", self.status.is_some()),
            ("message", self.message.is_some()),
            ("code", self.code.is_some()),
            ("retry_after", self.retry_after.is_some()),
            ("should_retry", self.should_retry.is_some()),
            ("after_chunks", self.after_chunks.is_some()),
            ("headers", self.headers.is_some()),
            ("body", self.body.is_some()),
            ("bytes", self.bytes.is_some()),
            ("interval_ms", self.interval_ms.is_some()),
        ];
        fields
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }

    fn into_fault(self, path: &str) -> Result<Fault, ScriptError> {
        let name = match self.fault {
            Some(name) => name,
            None if self.class.is_some() => FaultName::Error,
            None => {
                return Err(ScriptError::new(
                    format!("{path}.fault"),
                    "missing: name the fault (error, break_stream, cut_stream, reset, \
                     stall_headers, stall_body, succeed, raw, oversized_body, endless_stream) \
                     or give an error `class`",
                ));
            }
        };
        if let Some(unused) = self
            .parameters_present()
            .into_iter()
            .find(|field| !name.parameters().contains(field))
        {
            return Err(ScriptError::new(
                format!("{path}.{unused}"),
                format!("is not used by fault `{}`", name.as_str()),
            ));
        }
        let require = |field: &str| {
            ScriptError::new(
                format!("{path}.{field}"),
                format!("missing: fault `{}` needs it", name.as_str()),
            )
        };
        let error_spec = |class: ErrorKind| {
            let mut spec = ErrorSpec::new(class);
            if let Some(status) = self.status {
                spec = spec.status(status);
            }
            if let Some(message) = &self.message {
                spec = spec.message(message.clone());
            }
            if let Some(code) = &self.code {
                spec = spec.code(code.clone());
            }
            if let Some(hint) = &self.retry_after {
                let mut retry = RetryAfter::new(hint.ms.0);
                if let Some(form) = hint.form {
                    retry = retry.form(form);
                }
                spec = spec.retry_after(retry);
            }
            if let Some(should_retry) = self.should_retry {
                spec = spec.should_retry(should_retry);
            }
            spec
        };
        let action = match name {
            FaultName::Error => {
                Action::Error(error_spec(self.class.ok_or_else(|| require("class"))?))
            }
            FaultName::BreakStream => Action::BreakStream {
                after_chunks: self.after_chunks.unwrap_or(1),
                error: error_spec(self.class.unwrap_or(ErrorKind::Server)),
            },
            FaultName::CutStream => Action::CutStream {
                after_chunks: self.after_chunks.unwrap_or(1),
            },
            FaultName::StallBody => Action::StallBody {
                after_chunks: self.after_chunks.unwrap_or(0),
            },
            FaultName::Reset => Action::Reset,
            FaultName::StallHeaders => Action::StallHeaders,
            FaultName::Succeed => Action::Succeed,
            FaultName::Raw => Action::Raw {
                status: self.status.ok_or_else(|| require("status"))?,
                headers: self
                    .headers
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                body: self.body.clone().unwrap_or_default(),
            },
            FaultName::OversizedBody => Action::OversizedBody {
                status: self.status.unwrap_or(500),
                bytes: self.bytes.ok_or_else(|| require("bytes"))?,
            },
            FaultName::EndlessStream => Action::EndlessStream {
                interval: self
                    .interval_ms
                    .map(|ms| ms.0)
                    .unwrap_or(Duration::from_secs(1)),
            },
        };
        Ok(Fault {
            when: When {
                first: self.first,
                after: self.after,
                p: self.p,
                from: self.from_ms.map(|ms| ms.0),
                until: self.until_ms.map(|ms| ms.0),
                stream: self.stream,
            },
            action,
            latency: self.latency_ms.map(|ms| ms.0),
        })
    }
}

impl RawRateLimit {
    fn into_rate_limit(self, path: &str) -> Result<RateLimit, ScriptError> {
        let bucket = self.rate.is_some() || self.burst.is_some();
        let window = self.limit.is_some() || self.window_ms.is_some();
        let mut limit = match (bucket, window) {
            (true, true) => {
                let field = if self.limit.is_some() {
                    "limit"
                } else {
                    "window_ms"
                };
                return Err(ScriptError::new(
                    format!("{path}.{field}"),
                    "a rate limit is either a token bucket (`rate`, `burst`) or a fixed \
                     window (`limit`, `window_ms`), not both",
                ));
            }
            (true, false) => RateLimit::token_bucket(
                self.rate
                    .ok_or_else(|| ScriptError::new(format!("{path}.rate"), "missing"))?,
                self.burst.unwrap_or(1),
            ),
            (false, true) => RateLimit::fixed_window(
                self.limit
                    .ok_or_else(|| ScriptError::new(format!("{path}.limit"), "missing"))?,
                self.window_ms
                    .map(|ms| ms.0)
                    .ok_or_else(|| ScriptError::new(format!("{path}.window_ms"), "missing"))?,
            ),
            (false, false) => {
                return Err(ScriptError::new(
                    path,
                    "give `rate` and `burst` (token bucket) or `limit` and `window_ms` \
                     (fixed window)",
                ));
            }
        };
        limit.success_headers = self.success_headers.unwrap_or(false);
        limit.hint_form = self.hint_form;
        Ok(limit)
    }
}

impl RawScript {
    fn into_script(self, path: &str) -> Result<(Selector, Script), ScriptError> {
        let mut script = Script::new(self.dialect.unwrap_or_default());
        if let Some(latency) = self.latency_ms {
            script.latency = latency.0;
        }
        if let Some(limit) = self.rate_limit {
            script.rate_limit = Some(limit.into_rate_limit(&format!("{path}.rate_limit"))?);
        }
        if let Some(on) = self.session_busy {
            script.session_busy = on;
        }
        if let Some(on) = self.request_ids {
            script.request_ids = on;
        }
        if let Some(reply) = self.reply {
            script.reply = reply;
        }
        if let Some(chunks) = self.chunks {
            script.chunks = chunks;
        }
        if let Some(interval) = self.chunk_interval_ms {
            script.chunk_interval = interval.0;
        }
        for (i, fault) in self.faults.into_iter().enumerate() {
            script
                .faults
                .push(fault.into_fault(&format!("{path}.faults[{i}]"))?);
        }
        let selector = Selector {
            key: self.key,
            session: self.session,
        };
        Ok((selector, script))
    }
}

impl RawScenario {
    fn into_scenario(self) -> Result<Scenario, ScriptError> {
        let mut scenario = Scenario::new().seed(self.seed);
        if let Some(models) = self.models {
            scenario.models = models;
        }
        if let Some(raw) = self.default {
            let (selector, script) = raw.into_script("default")?;
            if selector.key.is_some() {
                return Err(ScriptError::new(
                    "default.key",
                    "the default script answers every request no other script selects; \
                     put a keyed script under `scripts`",
                ));
            }
            if selector.session.is_some() {
                return Err(ScriptError::new(
                    "default.session",
                    "the default script answers every request no other script selects; \
                     put a session's script under `scripts`",
                ));
            }
            scenario.default = script;
        }
        for (i, raw) in self.scripts.into_iter().enumerate() {
            scenario
                .scripts
                .push(raw.into_script(&format!("scripts[{i}]"))?);
        }
        scenario.validate()?;
        Ok(scenario)
    }
}

// ---------------------------------------------------------------------------------------------
// Typed -> raw, for writing scenarios out.

impl From<&Scenario> for RawScenario {
    fn from(s: &Scenario) -> Self {
        RawScenario {
            seed: s.seed,
            models: (s.models != [Scenario::DEFAULT_MODEL]).then(|| s.models.clone()),
            default: Some(RawScript::from_script(None, &s.default)),
            scripts: s
                .scripts
                .iter()
                .map(|(selector, script)| RawScript::from_script(Some(selector), script))
                .collect(),
        }
    }
}

impl RawScript {
    fn from_script(selector: Option<&Selector>, s: &Script) -> Self {
        let defaults = Script::new(s.dialect);
        RawScript {
            key: selector.and_then(|sel| sel.key.clone()),
            session: selector.and_then(|sel| sel.session.clone()),
            dialect: Some(s.dialect),
            latency_ms: (!s.latency.is_zero()).then_some(Ms(s.latency)),
            rate_limit: s.rate_limit.as_ref().map(RawRateLimit::from),
            session_busy: s.session_busy.then_some(true),
            request_ids: (!s.request_ids).then_some(false),
            reply: (s.reply != defaults.reply).then(|| s.reply.clone()),
            chunks: (s.chunks != defaults.chunks).then_some(s.chunks),
            chunk_interval_ms: (!s.chunk_interval.is_zero()).then_some(Ms(s.chunk_interval)),
            faults: s.faults.iter().map(RawFault::from).collect(),
        }
    }
}

impl From<&RateLimit> for RawRateLimit {
    fn from(limit: &RateLimit) -> Self {
        let mut raw = RawRateLimit {
            success_headers: limit.success_headers.then_some(true),
            hint_form: limit.hint_form,
            ..RawRateLimit::default()
        };
        match limit.shape {
            LimitShape::Bucket { rate, burst } => {
                raw.rate = Some(rate);
                raw.burst = Some(burst);
            }
            LimitShape::Window { limit, window } => {
                raw.limit = Some(limit);
                raw.window_ms = Some(Ms(window));
            }
        }
        raw
    }
}

impl From<&Fault> for RawFault {
    fn from(fault: &Fault) -> Self {
        let mut raw = RawFault {
            first: fault.when.first,
            after: fault.when.after,
            p: fault.when.p,
            from_ms: fault.when.from.map(Ms),
            until_ms: fault.when.until.map(Ms),
            stream: fault.when.stream,
            latency_ms: fault.latency.map(Ms),
            ..RawFault::default()
        };
        let set_error = |raw: &mut RawFault, spec: &ErrorSpec| {
            raw.class = Some(spec.kind());
            raw.status = spec.status_override();
            raw.message = spec.message_override().map(str::to_owned);
            raw.code = spec.code_override().map(str::to_owned);
            raw.should_retry = spec.should_retry_header();
            raw.retry_after = spec.retry_hint().map(|h| RawRetryAfter {
                ms: Ms(h.delay()),
                form: h.hint_form(),
            });
        };
        match &fault.action {
            Action::Error(spec) => set_error(&mut raw, spec),
            Action::BreakStream {
                after_chunks,
                error,
            } => {
                raw.fault = Some(FaultName::BreakStream);
                raw.after_chunks = Some(*after_chunks);
                set_error(&mut raw, error);
            }
            Action::CutStream { after_chunks } => {
                raw.fault = Some(FaultName::CutStream);
                raw.after_chunks = Some(*after_chunks);
            }
            Action::StallBody { after_chunks } => {
                raw.fault = Some(FaultName::StallBody);
                raw.after_chunks = Some(*after_chunks);
            }
            Action::Reset => raw.fault = Some(FaultName::Reset),
            Action::StallHeaders => raw.fault = Some(FaultName::StallHeaders),
            Action::Succeed => raw.fault = Some(FaultName::Succeed),
            Action::Raw {
                status,
                headers,
                body,
            } => {
                raw.fault = Some(FaultName::Raw);
                raw.status = Some(*status);
                raw.headers = (!headers.is_empty()).then(|| headers.iter().cloned().collect());
                raw.body = Some(body.clone());
            }
            Action::OversizedBody { status, bytes } => {
                raw.fault = Some(FaultName::OversizedBody);
                raw.status = Some(*status);
                raw.bytes = Some(*bytes);
            }
            Action::EndlessStream { interval } => {
                raw.fault = Some(FaultName::EndlessStream);
                raw.interval_ms = Some(Ms(*interval));
            }
        }
        raw
    }
}
