//! The flags of `towline soak`. Their names and meanings are a contract (see the README).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// How the soak reports at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    /// One JSON object on stdout; progress on stderr.
    Json,
    /// A readable table on stdout (the default).
    Table,
}

/// `towline soak`: send load through the full stack.
#[derive(Debug, Clone, Args)]
pub(crate) struct SoakArgs {
    /// Base URL of an OpenAI-compatible API; requests go to `POST {URL}/chat/completions`.
    /// Default: start the embedded mock provider with a mixed fault script.
    #[arg(long, value_name = "URL")]
    pub(crate) target: Option<String>,

    /// API key (repeatable): logical request i uses key i mod (number of keys) as
    /// `Authorization: Bearer KEY`. Never printed.
    #[arg(long = "api-key", value_name = "KEY")]
    pub(crate) api_keys: Vec<String>,

    /// Logical requests in all.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub(crate) requests: u64,

    /// Logical requests in flight at once.
    #[arg(long, value_name = "C", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,

    /// When S > 0, request i carries `x-session-id: s{i mod S}`.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub(crate) sessions: u64,

    /// Per-key token bucket rate, requests per second. Default: no fixed rate (the throttle
    /// still obeys the provider's hints and learns the key's rate).
    #[arg(long, value_name = "R")]
    pub(crate) rate: Option<f64>,

    /// Per-key token bucket size (requires --rate; default 1).
    #[arg(long, value_name = "B", requires = "rate")]
    pub(crate) burst: Option<u32>,

    /// Retries per logical request.
    #[arg(long = "max-retries", value_name = "M", default_value_t = 3)]
    pub(crate) max_retries: u32,

    /// Retries allowed as a fraction of requests (shared retry budget), in [0, 1].
    #[arg(long = "retry-budget", value_name = "F", default_value_t = 0.2)]
    pub(crate) retry_budget: f64,

    /// Per-attempt timeout in milliseconds.
    #[arg(long, value_name = "MS")]
    pub(crate) timeout: Option<u64>,

    /// How long the circuit breaker stays open before a probe, in milliseconds (up to a day).
    #[arg(long = "breaker-open-ms", value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub(crate) breaker_open_ms: Option<u64>,

    /// Ask for SSE (`"stream": true`) and read each stream to its end.
    #[arg(long)]
    pub(crate) stream: bool,

    /// `json`: print one JSON object on stdout at the end; progress goes to stderr.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = ReportFormat::Table)]
    pub(crate) report: ReportFormat,

    /// Model name put in each request body.
    #[arg(long, value_name = "NAME", default_value = "kimi-k2-0711-preview")]
    pub(crate) model: String,

    /// Fault script for the embedded mock provider (JSON or TOML), instead of the built-in
    /// mixed script. Ignored with --target.
    #[arg(long, value_name = "FILE", conflicts_with = "target")]
    pub(crate) script: Option<PathBuf>,

    /// Overall deadline per logical request (attempts and waits), in milliseconds.
    #[arg(long = "deadline-ms", value_name = "MS")]
    pub(crate) deadline_ms: Option<u64>,

    /// Seed for retry jitter and the mock's random faults, for reproducible runs.
    #[arg(long, value_name = "N", default_value_t = 7)]
    pub(crate) seed: u64,
}
