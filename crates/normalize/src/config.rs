use std::fmt;
use std::time::{Duration, SystemTime};

use crate::{ConfigError, NormalizeLayer};

/// Default [`Builder::error_body_limit`]: 64 KiB.
pub const DEFAULT_ERROR_BODY_LIMIT: usize = 64 * 1024;
/// Default [`Builder::error_body_timeout`]: 5 s.
pub const DEFAULT_ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`Builder::ok_json_limit`]: 8 KiB.
pub const DEFAULT_OK_JSON_LIMIT: usize = 8 * 1024;
/// Default [`Builder::sse_line_limit`]: 64 KiB.
pub const DEFAULT_SSE_LINE_LIMIT: usize = 64 * 1024;
/// Default [`Builder::sse_peek_limit`]: 64 KiB.
pub const DEFAULT_SSE_PEEK_LIMIT: usize = 64 * 1024;

/// The largest error body limit accepted: an error answer is a sentence, not a download.
const MAX_ERROR_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The validated settings, copied into every response future (no `Arc`, no atomics).
#[derive(Clone, Copy)]
pub(crate) struct Config {
    pub(crate) error_body_limit: usize,
    pub(crate) error_body_timeout: Duration,
    /// `Some(limit)` when the kimi-free-api HTTP-200 inspection is on.
    pub(crate) ok_json_limit: Option<usize>,
    pub(crate) sse_scan: bool,
    /// `Some(limit)` when the first SSE event is peeked before the response is returned.
    pub(crate) sse_peek_limit: Option<usize>,
    pub(crate) sse_line_limit: usize,
    pub(crate) wall_clock: fn() -> SystemTime,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            error_body_limit: DEFAULT_ERROR_BODY_LIMIT,
            error_body_timeout: DEFAULT_ERROR_BODY_TIMEOUT,
            ok_json_limit: None,
            sse_scan: true,
            sse_peek_limit: Some(DEFAULT_SSE_PEEK_LIMIT),
            sse_line_limit: DEFAULT_SSE_LINE_LIMIT,
            wall_clock: SystemTime::now,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("error_body_limit", &self.error_body_limit)
            .field("error_body_timeout", &self.error_body_timeout)
            .field("ok_json_limit", &self.ok_json_limit)
            .field("sse_scan", &self.sse_scan)
            .field("sse_peek_limit", &self.sse_peek_limit)
            .field("sse_line_limit", &self.sse_line_limit)
            .finish_non_exhaustive()
    }
}

/// Builds a [`NormalizeLayer`]; every setting is checked by [`Builder::build`].
///
/// ```
/// use std::time::Duration;
/// use towline_normalize::NormalizeLayer;
///
/// let layer = NormalizeLayer::builder()
///     .error_body_limit(16 * 1024)
///     .error_body_timeout(Duration::from_secs(2))
///     .inspect_ok_json(true)          // kimi-free-api answers errors with HTTP 200
///     .sse_peek_first_event(false)
///     .build()?;
/// # Ok::<(), towline_normalize::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
    inspect_ok_json: bool,
    ok_json_limit: usize,
    peek: bool,
    peek_limit: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config::default(),
            inspect_ok_json: false,
            ok_json_limit: DEFAULT_OK_JSON_LIMIT,
            peek: true,
            peek_limit: DEFAULT_SSE_PEEK_LIMIT,
        }
    }
}

impl Builder {
    /// How much of an error body is read for classification (default 64 KiB, at most 16 MiB).
    /// A longer body is cut there: the rest is never read, so a 10 MiB error page costs 64 KiB.
    pub fn error_body_limit(mut self, bytes: usize) -> Self {
        self.config.error_body_limit = bytes;
        self
    }

    /// How long reading an error body may take (default 5 s). A body that stalls still gives a
    /// classified error, from the status, the headers and whatever was read.
    ///
    /// Reading needs tokio's time driver (it is only started on the error path).
    pub fn error_body_timeout(mut self, timeout: Duration) -> Self {
        self.config.error_body_timeout = timeout;
        self
    }

    /// Inspect small `application/json` HTTP-200 bodies for an error answer (off by default).
    ///
    /// The real kimi-free-api server answers errors with HTTP 200 and `{"code":-2001,...}`.
    /// When on, a 200 JSON body whose length is known and at most [`Builder::ok_json_limit`] is
    /// read whole and checked with [`classify_ok_body`](crate::classify_ok_body); a success is
    /// then handed on from the buffered bytes. Reading is bounded by
    /// [`Builder::error_body_timeout`]: a body that stalls is handed on with what was read.
    /// When off, nothing is read or checked.
    pub fn inspect_ok_json(mut self, enabled: bool) -> Self {
        self.inspect_ok_json = enabled;
        self
    }

    /// The largest 200 body [`Builder::inspect_ok_json`] reads (default 8 KiB, at most 16 MiB).
    /// Longer (or chunked, length unknown) bodies are passed on without inspection.
    pub fn ok_json_limit(mut self, bytes: usize) -> Self {
        self.ok_json_limit = bytes;
        self
    }

    /// Scan `200 text/event-stream` bodies for in-band error events (on by default).
    pub fn sse_scanning(mut self, enabled: bool) -> Self {
        self.config.sse_scan = enabled;
        self
    }

    /// Before returning an event-stream response, read it up to its first `data:` event (on by
    /// default; ignored when [`Builder::sse_scanning`] is off).
    ///
    /// Why: an error that arrives as the very first event (an overloaded provider answering
    /// `200` then `event: error`) then becomes an ordinary `Err(Error::Api)` from the service,
    /// which the retry layer above can retry, since nothing was delivered yet. The bytes read
    /// ahead are delivered first, untouched. The cost is that the response future now also
    /// waits for the first event (time to first token), which a per-attempt timeout bounds.
    pub fn sse_peek_first_event(mut self, enabled: bool) -> Self {
        self.peek = enabled;
        self
    }

    /// The most bytes read ahead while peeking for the first event (default 64 KiB); past it
    /// the response is returned as it is.
    pub fn sse_peek_limit(mut self, bytes: usize) -> Self {
        self.peek_limit = bytes;
        self
    }

    /// The longest SSE line the scanner keeps across chunk boundaries (default 64 KiB, at
    /// least 64 bytes). A longer line is skipped (content events are never that long;
    /// error events are small), so an endless stream without newlines never grows memory.
    pub fn sse_line_limit(mut self, bytes: usize) -> Self {
        self.config.sse_line_limit = bytes;
        self
    }

    /// The wall clock HTTP-dates and epoch resets are measured from (default
    /// `SystemTime::now`); tests pass a fixed one.
    pub fn wall_clock(mut self, now: fn() -> SystemTime) -> Self {
        self.config.wall_clock = now;
        self
    }

    /// Checks every setting and builds the layer.
    pub fn build(self) -> Result<NormalizeLayer, ConfigError> {
        let mut config = self.config;
        if !(1..=MAX_ERROR_BODY_LIMIT).contains(&config.error_body_limit) {
            return Err(ConfigError::new(
                "error_body_limit",
                "must be between 1 byte and 16 MiB",
            ));
        }
        if config.error_body_timeout.is_zero() {
            return Err(ConfigError::new(
                "error_body_timeout",
                "must be longer than zero",
            ));
        }
        if !(1..=MAX_ERROR_BODY_LIMIT).contains(&self.ok_json_limit) {
            return Err(ConfigError::new(
                "ok_json_limit",
                "must be between 1 byte and 16 MiB",
            ));
        }
        if config.sse_line_limit < 64 {
            return Err(ConfigError::new(
                "sse_line_limit",
                "must be at least 64 bytes",
            ));
        }
        if self.peek_limit == 0 {
            return Err(ConfigError::new(
                "sse_peek_limit",
                "must be at least 1 byte",
            ));
        }
        config.ok_json_limit = self.inspect_ok_json.then_some(self.ok_json_limit);
        config.sse_peek_limit = (self.peek && config.sse_scan).then_some(self.peek_limit);
        Ok(NormalizeLayer::from_config(config))
    }
}
