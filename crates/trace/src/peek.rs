//! A cheap look at a buffered JSON request body for its top-level `"model"` and `"stream"`.
//!
//! Not a parser: it walks the top-level object only, skipping nested values and strings with
//! `memchr`, and never allocates. It reads at most `limit` bytes from the front and, when the
//! body is longer, at most `limit` bytes from the back, because SDKs disagree on where `model`
//! goes: some serialize it first, others (the OpenAI Python SDK, async-openai) after a
//! `messages` array that can be hundreds of kilobytes long. JSON read right to left is as
//! unambiguous as left to right (an unescaped quote is preceded by an even number of
//! backslashes), so the back window is walked the same way, from the closing brace.
//!
//! Only a model name that is a plain JSON string (no escapes), 1 to 256 bytes of printable
//! UTF-8, is reported; anything else is treated as absent. Invalid JSON yields nothing, never
//! a wrong answer for valid JSON.

/// What the peek found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Peeked<'a> {
    pub(crate) model: Option<&'a str>,
    pub(crate) stream: Option<bool>,
}

impl Peeked<'_> {
    /// Whether the scan can stop: the model found, and the stream flag too if it is wanted.
    fn is_complete(&self, want_stream: bool) -> bool {
        self.model.is_some() && (self.stream.is_some() || !want_stream)
    }
}

/// The longest model name reported.
pub(crate) const MAX_MODEL_LEN: usize = 256;

/// Looks at `body`'s top-level `model` and `stream`, reading at most `limit` bytes from each
/// end.
pub(crate) fn peek(body: &[u8], limit: usize) -> Peeked<'_> {
    scan(body, limit, true)
}

/// Looks at `body`'s top-level `model` only: the scan stops at the model instead of walking
/// the rest of the object for a `stream` that nobody will read (no span records it).
pub(crate) fn peek_model(body: &[u8], limit: usize) -> Option<&str> {
    model_first(&body[..body.len().min(limit)]).or_else(|| scan(body, limit, false).model)
}

/// The model of a body that starts `{"model":"name"`, as many clients write it, without
/// walking the object: the walk would stop at this same first key with this same token.
/// `None` when the body starts otherwise or the name is not plain (then the walk decides).
fn model_first(front: &[u8]) -> Option<&str> {
    const START: &[u8] = br#"{"model":""#;
    let rest = front.strip_prefix(START)?;
    let close = rest
        .iter()
        .take(MAX_MODEL_LEN + 1)
        .position(|b| *b == b'"')?;
    // The token with its quotes; a backslash in it (an escape) makes `model_name` refuse it.
    model_name(&front[START.len() - 1..START.len() + close + 1])
}

fn scan(body: &[u8], limit: usize, want_stream: bool) -> Peeked<'_> {
    let mut found = Peeked::default();
    if limit == 0 || body.is_empty() {
        return found;
    }
    let whole = body.len() <= limit;
    let front = &body[..body.len().min(limit)];
    let finished = Forward::new(front, want_stream).scan(&mut found);
    if whole || finished || found.is_complete(want_stream) {
        return found;
    }
    let back_start = body.len() - limit.min(body.len());
    Backward::new(body, back_start, want_stream).scan(&mut found);
    found
}

fn record<'a>(found: &mut Peeked<'a>, key: &[u8], value: &'a [u8]) {
    match key {
        b"model" if found.model.is_none() => found.model = model_name(value),
        b"stream" if found.stream.is_none() => {
            found.stream = match value {
                b"true" => Some(true),
                b"false" => Some(false),
                _ => None,
            }
        }
        _ => {}
    }
}

/// `value` is a whole JSON value token; a model name is a string without escapes.
fn model_name(value: &[u8]) -> Option<&str> {
    let inner = value.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let name = std::str::from_utf8(inner).ok()?;
    is_model_name(name).then_some(name)
}

/// Whether `name` looks like a model name and nothing else: 1 to 256 bytes, no control
/// character, no quote or backslash.
pub(crate) fn is_model_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_MODEL_LEN {
        return false;
    }
    // Model names are ASCII: a byte test settles them without decoding characters.
    let plain = |b: &u8| matches!(b, 0x20..=0x7e) && *b != b'"' && *b != b'\\';
    if name.bytes().all(|b| plain(&b)) {
        return true;
    }
    name.chars()
        .all(|c| !c.is_control() && c != '"' && c != '\\')
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Walks a top-level object from its opening brace.
struct Forward<'a> {
    buf: &'a [u8],
    pos: usize,
    want_stream: bool,
}

impl<'a> Forward<'a> {
    fn new(buf: &'a [u8], want_stream: bool) -> Self {
        Forward {
            buf,
            pos: 0,
            want_stream,
        }
    }

    /// Returns whether the whole object was walked (its closing brace reached).
    fn scan(mut self, found: &mut Peeked<'a>) -> bool {
        self.scan_inner(found).is_some()
    }

    fn scan_inner(&mut self, found: &mut Peeked<'a>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek_byte()? == b'}' {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            let value = self.value()?;
            record(found, &key[1..key.len() - 1], value);
            if found.is_complete(self.want_stream) {
                return Some(());
            }
            match self.next_byte()? {
                b',' => continue,
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn skip_ws(&mut self) {
        while self.buf.get(self.pos).is_some_and(|b| is_ws(*b)) {
            self.pos += 1;
        }
    }

    fn peek_byte(&mut self) -> Option<u8> {
        self.skip_ws();
        self.buf.get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek_byte()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    /// A string token, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek_byte()? != b'"' {
            return None;
        }
        let start = self.pos;
        self.pos = string_end(self.buf, start)?;
        Some(&self.buf[start..self.pos])
    }

    /// One value token: a string, a nested container, or a literal.
    fn value(&mut self) -> Option<&'a [u8]> {
        let start = match self.peek_byte()? {
            b'"' => return self.string(),
            b'{' | b'[' => {
                let start = self.pos;
                self.pos = container_end(self.buf, start)?;
                start
            }
            _ => {
                let start = self.pos;
                while self
                    .buf
                    .get(self.pos)
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !is_ws(*b))
                {
                    self.pos += 1;
                }
                // A literal cut by the end of the window is not known whole.
                if self.pos == self.buf.len() {
                    return None;
                }
                start
            }
        };
        Some(&self.buf[start..self.pos])
    }
}

/// The index just past the string starting with the quote at `start`.
fn string_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        // Keys and short values (a model name) are most strings: a plain loop beats `memchr`'s
        // setup there.
        let short = buf.len().min(i + 48);
        let found = match buf[i..short].iter().position(|b| matches!(b, b'"' | b'\\')) {
            Some(n) => i + n,
            None => short + memchr::memchr2(b'"', b'\\', &buf[short..])?,
        };
        i = found;
        if buf[i] == b'\\' {
            i += 2; // the escaped byte, whatever it is
            if i > buf.len() {
                return None;
            }
        } else {
            return Some(i + 1);
        }
    }
}

/// The index just past the container opening at `start`.
fn container_end(buf: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < buf.len() {
        match buf[i] {
            b'"' => {
                i = string_end(buf, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Walks a top-level object backwards from its closing brace, never reading before `floor`.
struct Backward<'a> {
    buf: &'a [u8],
    floor: usize,
    /// One past the next byte to read.
    pos: usize,
    want_stream: bool,
}

impl<'a> Backward<'a> {
    fn new(buf: &'a [u8], floor: usize, want_stream: bool) -> Self {
        Backward {
            buf,
            floor,
            pos: buf.len(),
            want_stream,
        }
    }

    fn scan(mut self, found: &mut Peeked<'a>) {
        let _ = self.scan_inner(found);
    }

    fn scan_inner(&mut self, found: &mut Peeked<'a>) -> Option<()> {
        self.expect(b'}')?;
        if self.peek_byte()? == b'{' {
            return Some(());
        }
        loop {
            let value = self.value()?;
            self.expect(b':')?;
            let key = self.string()?;
            record(found, &key[1..key.len() - 1], value);
            if found.is_complete(self.want_stream) {
                return Some(());
            }
            match self.next_byte()? {
                b',' => continue,
                _ => return None, // the opening brace: the front scan saw all of it
            }
        }
    }

    fn skip_ws(&mut self) {
        while self.pos > self.floor && is_ws(self.buf[self.pos - 1]) {
            self.pos -= 1;
        }
    }

    fn peek_byte(&mut self) -> Option<u8> {
        self.skip_ws();
        (self.pos > self.floor).then(|| self.buf[self.pos - 1])
    }

    fn next_byte(&mut self) -> Option<u8> {
        let b = self.peek_byte()?;
        self.pos -= 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next_byte()? == want).then_some(())
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        if self.peek_byte()? != b'"' {
            return None;
        }
        let end = self.pos;
        let start = string_start(self.buf, self.floor, end - 1)?;
        self.pos = start;
        Some(&self.buf[start..end])
    }

    fn value(&mut self) -> Option<&'a [u8]> {
        let end = self.pos;
        match self.peek_byte()? {
            b'"' => return self.string(),
            b'}' | b']' => {
                let end = self.pos;
                self.pos = container_start(self.buf, self.floor, end - 1)?;
                return Some(&self.buf[self.pos..end]);
            }
            _ => {
                while self.pos > self.floor
                    && !matches!(self.buf[self.pos - 1], b':' | b',' | b'[' | b'{')
                    && !is_ws(self.buf[self.pos - 1])
                {
                    self.pos -= 1;
                }
                if self.pos == self.floor {
                    return None;
                }
            }
        }
        let start = self.pos;
        let token = &self.buf[start..end];
        Some(token.trim_ascii_end())
    }
}

/// Whether the quote at `i` is a delimiter: preceded by an even number of backslashes.
/// (The run of backslashes may start before the window; reading it is harmless.)
fn unescaped(buf: &[u8], i: usize) -> bool {
    let backslashes = buf[..i].iter().rev().take_while(|b| **b == b'\\').count();
    backslashes % 2 == 0
}

/// The index of the opening quote of the string whose closing quote is at `close`.
fn string_start(buf: &[u8], floor: usize, close: usize) -> Option<usize> {
    let mut i = close;
    loop {
        i = floor + memchr::memrchr(b'"', &buf[floor..i])?;
        if unescaped(buf, i) {
            return Some(i);
        }
    }
}

/// The index of the bracket opening the container whose closing bracket is at `close`.
fn container_start(buf: &[u8], floor: usize, close: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = close + 1;
    while i > floor {
        i -= 1;
        match buf[i] {
            b'"' => i = string_start(buf, floor, i)?,
            b'}' | b']' => depth += 1,
            b'{' | b'[' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    fn model_of(body: &str, limit: usize) -> Option<&str> {
        peek(body.as_bytes(), limit).model
    }

    #[test]
    fn finds_model_first_or_last() {
        let first = r#"{"model":"kimi-k2","messages":[{"role":"user","content":"hi"}]}"#;
        let last = r#"{ "messages" : [ {"role":"user","content":"hi"} ] , "model" : "gpt-4o" , "stream" : true }"#;
        assert_eq!(model_of(first, 1 << 20), Some("kimi-k2"));
        assert_eq!(model_of(last, 1 << 20), Some("gpt-4o"));
        assert_eq!(peek(last.as_bytes(), 1 << 20).stream, Some(true));
    }

    #[test]
    fn ignores_nested_and_quoted_models() {
        let body = r#"{"messages":[{"role":"user","content":"say \"model\": \"evil\""}],"tools":[{"model":"nested"}],"metadata":{"model":"inner"}}"#;
        assert_eq!(model_of(body, 1 << 20), None);
        let key_lookalike = r#"{"say \"model":"x","model":"real"}"#;
        assert_eq!(model_of(key_lookalike, 1 << 20), Some("real"));
    }

    #[test]
    fn long_messages_are_skipped_from_both_ends() {
        let content = "x".repeat(100_000);
        let after =
            format!(r#"{{"messages":[{{"role":"user","content":"{content}"}}],"model":"late"}}"#);
        let before =
            format!(r#"{{"model":"early","messages":[{{"role":"user","content":"{content}"}}]}}"#);
        assert_eq!(model_of(&after, 1024), Some("late"));
        assert_eq!(model_of(&before, 1024), Some("early"));
        let middle = format!(
            r#"{{"messages":[{{"content":"{content}"}}],"model":"mid","tail":[{{"content":"{content}"}}]}}"#
        );
        assert_eq!(model_of(&middle, 1024), None, "out of both windows");
        assert_eq!(model_of(&middle, 1 << 20), Some("mid"));
    }

    #[test]
    fn rejects_what_is_not_a_plain_model_name() {
        for body in [
            r#"{"model":"with\"escape"}"#,
            r#"{"model":""}"#,
            r#"{"model":123}"#,
            r#"{"model":{"name":"x"}}"#,
            r#"["model","x"]"#,
            r#"not json"#,
            r#"{"model":"unterminated"#,
        ] {
            assert_eq!(model_of(body, 1 << 20), None, "{body}");
        }
        let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(MAX_MODEL_LEN + 1));
        assert_eq!(model_of(&long, 1 << 20), None);
    }

    #[test]
    fn model_first_is_read_at_once_and_checked_like_any() {
        assert_eq!(
            peek_model(br#"{"model":"kimi-k2","messages":[]}"#, 1 << 20),
            Some("kimi-k2")
        );
        // An escape in the first model: not a plain name; a later duplicate key is the walk's.
        let escaped = br#"{"model":"a"b","model":"c"}"#;
        assert_eq!(peek_model(escaped, 1 << 20), peek(escaped, 1 << 20).model);
        // The closing quote beyond the window: not read.
        assert_eq!(peek_model(br#"{"model":"kimi-k2"}"#, 12), None);
        assert_eq!(peek_model(br#"{"model":"","x":1}"#, 1 << 20), None);
    }

    #[test]
    fn zero_limit_reads_nothing() {
        assert_eq!(peek(br#"{"model":"m"}"#, 0), Peeked::default());
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z\"\\\\{}\\[\\]:, ]{0,12}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (prop_oneof![Just("model".to_owned()), "[a-z\"]{0,6}"], inner),
                    0..4
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn object() -> impl Strategy<Value = Value> {
        let model = prop_oneof!["[a-z0-9.-]{1,16}".prop_map(Value::String), value(),];
        (
            prop::collection::vec(("[a-z\"]{1,6}", value()), 0..5),
            prop::option::of(model),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(fields, model, stream)| {
                let mut map: Map<String, Value> = fields
                    .into_iter()
                    .filter(|(k, _)| k != "model" && k != "stream")
                    .collect();
                if let Some(m) = model {
                    map.insert("model".into(), m);
                }
                if let Some(s) = stream {
                    map.insert("stream".into(), Value::Bool(s));
                }
                Value::Object(map)
            })
    }

    fn expected(v: &Value) -> (Option<String>, Option<bool>) {
        let model = v
            .get("model")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty() && !m.contains(['"', '\\']) && m.len() <= MAX_MODEL_LEN)
            .map(str::to_owned);
        (model, v.get("stream").and_then(Value::as_bool))
    }

    proptest! {
        #[test]
        fn agrees_with_serde_json(v in object(), pretty in any::<bool>(), limit in 1usize..200) {
            let text = if pretty { serde_json::to_string_pretty(&v) } else { serde_json::to_string(&v) }.unwrap();
            let (model, stream) = expected(&v);
            // Reading everything, the answer is exact.
            let full = peek(text.as_bytes(), usize::MAX);
            prop_assert_eq!(full.model.map(str::to_owned), model.clone());
            prop_assert_eq!(full.stream, stream);
            // The model alone is the same answer, whole or in windows.
            prop_assert_eq!(peek_model(text.as_bytes(), usize::MAX).map(str::to_owned), model.clone());
            if let Some(m) = peek_model(text.as_bytes(), limit) {
                prop_assert_eq!(Some(m.to_owned()), model.clone());
            }
            // Reading windows, the answer is exact or absent, never wrong.
            let part = peek(text.as_bytes(), limit);
            if let Some(m) = part.model {
                prop_assert_eq!(Some(m.to_owned()), model);
            }
            if let Some(s) = part.stream {
                prop_assert_eq!(Some(s), stream);
            }
        }
    }
}
