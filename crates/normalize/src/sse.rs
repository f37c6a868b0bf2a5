//! A bounded, zero-copy scanner for errors inside `text/event-stream` bodies.
//!
//! Chunks are scanned where they lie; the scanner only copies the tail of a line that crosses
//! a chunk boundary (bounded by the line limit: a longer line is skipped, never buffered
//! whole) and the data of an event that has more than one `data:` line. Single-line data is
//! kept as a `Bytes` slice of the chunk. Only events named `error` or whose data contains
//! `"error"` are parsed as JSON; ordinary content events cost a `memchr` for their newline and a
//! `memmem` for that needle.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use memchr::{memchr, memchr2, memmem};
use towline_core::ApiError;

use crate::classify::Classifier;
use crate::headers::REQUEST_ID_HEADERS;

/// An error event found in the stream.
#[derive(Debug)]
pub(crate) struct Found {
    /// Where, in the chunk just scanned, the error event's first line starts: the bytes before
    /// it are ordinary events and are delivered; the error event itself is not. Zero when the
    /// event began in an earlier chunk or was found at the end of the stream.
    pub(crate) cut: usize,
    /// The classified error (status 200).
    pub(crate) error: ApiError,
    /// How many ordinary data events came before it.
    pub(crate) data_events_before: u64,
}

/// What the scanner classifies events with: the classifier (wall clock, credential digest) and
/// the response's request-id header.
#[derive(Debug)]
pub(crate) struct EventContext {
    pub(crate) classifier: Classifier,
    pub(crate) headers: HeaderMap,
}

impl EventContext {
    /// Keeps only the request id of the response headers (what an in-band error may lack).
    pub(crate) fn new(classifier: Classifier, response_headers: &HeaderMap) -> Self {
        let mut headers = HeaderMap::new();
        for name in &REQUEST_ID_HEADERS {
            if let Some(value) = response_headers.get(name) {
                headers.insert(name.clone(), HeaderValue::clone(value));
                break;
            }
        }
        EventContext {
            classifier,
            headers,
        }
    }
}

/// The data of the current event.
#[derive(Debug, Default)]
enum Data {
    #[default]
    None,
    /// One `data:` line, sliced from its chunk.
    One(Bytes),
    /// Several lines joined with `\n` (copied, bounded by the line limit).
    Many(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct SseScanner {
    cx: EventContext,
    line_limit: usize,
    /// The start of a line that continues in the next chunk.
    carry: Vec<u8>,
    /// The current line is longer than the limit: skip to its end.
    skipping: bool,
    /// The previous chunk ended with `\r`; a leading `\n` belongs to it.
    skip_lf: bool,
    /// Any line of the current event seen.
    event_open: bool,
    /// The offset in the current chunk where the current event began, if it began there.
    event_start: Option<usize>,
    named_error: bool,
    has_data: bool,
    data: Data,
    data_events: u64,
    /// An error was found: the scanner reports nothing more.
    done: bool,
}

/// Where the bytes of a complete line are.
enum LineAt {
    /// `chunk[start..end]`.
    Chunk { start: usize, end: usize },
    /// In `carry`.
    Carry,
}

impl SseScanner {
    pub(crate) fn new(cx: EventContext, line_limit: usize) -> Self {
        SseScanner {
            cx,
            line_limit,
            carry: Vec::new(),
            skipping: false,
            skip_lf: false,
            event_open: false,
            event_start: None,
            named_error: false,
            has_data: false,
            data: Data::None,
            data_events: 0,
            done: false,
        }
    }

    /// Ordinary (non-error) events with data dispatched so far.
    pub(crate) fn data_events(&self) -> u64 {
        self.data_events
    }

    /// Scans `chunk`; returns the first error event completed in it.
    pub(crate) fn scan(&mut self, chunk: &Bytes) -> Option<Found> {
        if self.done {
            return None;
        }
        self.event_start = None;
        let bytes = &chunk[..];
        let mut pos = 0;
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            if bytes[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < bytes.len() {
            let Some(offset) = memchr2(b'\n', b'\r', &bytes[pos..]) else {
                self.carry_over(&bytes[pos..]);
                break;
            };
            let end = pos + offset;
            let at = if self.skipping {
                None
            } else if self.carry.is_empty() {
                Some(LineAt::Chunk { start: pos, end })
            } else if self.carry.len() + (end - pos) > self.line_limit {
                self.note_skipped_line();
                None
            } else {
                self.carry.extend_from_slice(&bytes[pos..end]);
                Some(LineAt::Carry)
            };
            pos = end + 1;
            if bytes[end] == b'\r' {
                match bytes.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            self.skipping = false;
            let found = match at {
                Some(at) => self.line(chunk, at),
                None => None,
            };
            self.carry.clear();
            if found.is_some() {
                self.done = true;
                return found;
            }
        }
        None
    }

    /// The stream ended: a last line without its newline and an event without its blank line
    /// are still looked at (OpenAI closes the stream right after `data: {"error":..}`), but only
    /// for errors.
    pub(crate) fn finish(&mut self) -> Option<Found> {
        if self.done {
            return None;
        }
        self.done = true;
        self.event_start = None;
        if !self.carry.is_empty() && !self.skipping {
            let found = self.line(&Bytes::new(), LineAt::Carry);
            self.carry.clear();
            if found.is_some() {
                return found;
            }
        }
        if self.event_open && (self.has_data || self.named_error) {
            return self.dispatch().map(|mut found| {
                found.cut = 0;
                found
            });
        }
        None
    }

    fn carry_over(&mut self, tail: &[u8]) {
        if self.skipping {
            return;
        }
        if self.carry.len() + tail.len() > self.line_limit {
            self.carry.extend_from_slice(&tail[..tail.len().min(4)]);
            self.note_skipped_line();
            self.skipping = true;
        } else {
            self.carry.extend_from_slice(tail);
        }
    }

    /// A line too long to keep: a `data` line still counts as content.
    fn note_skipped_line(&mut self) {
        if self.carry.starts_with(b"data") {
            self.event_open = true;
            self.has_data = true;
        }
        self.carry.clear();
        self.carry.shrink_to(self.line_limit.min(1024));
    }

    fn line(&mut self, chunk: &Bytes, at: LineAt) -> Option<Found> {
        match at {
            LineAt::Chunk { start, end } => self.process(&chunk[start..end], Some((chunk, start))),
            LineAt::Carry => {
                let carry = std::mem::take(&mut self.carry);
                let found = self.process(&carry, None);
                self.carry = carry;
                found
            }
        }
    }

    /// One complete line; `origin` is its chunk and offset when it lies whole in the chunk.
    fn process(&mut self, line: &[u8], origin: Option<(&Bytes, usize)>) -> Option<Found> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.len() > self.line_limit {
            if line.starts_with(b"data") {
                self.event_open = true;
                self.has_data = true;
            }
            return None;
        }
        if line[0] == b':' {
            return None; // comment (keep-alive, OpenRouter's "PROCESSING")
        }
        if !self.event_open {
            self.event_open = true;
            self.event_start = origin.map(|(_, start)| start);
        }
        let (field, value_start) = match memchr(b':', line) {
            Some(i) if line.get(i + 1) == Some(&b' ') => (&line[..i], i + 2),
            Some(i) => (&line[..i], i + 1),
            None => (line, line.len()),
        };
        match field {
            b"event" => self.named_error = &line[value_start..] == b"error",
            b"data" => {
                self.has_data = true;
                let value = match origin {
                    Some((chunk, start)) => chunk.slice(start + value_start..start + line.len()),
                    None => Bytes::copy_from_slice(&line[value_start..]),
                };
                self.push_data(value);
            }
            _ => {}
        }
        None
    }

    fn push_data(&mut self, value: Bytes) {
        self.data = match std::mem::take(&mut self.data) {
            Data::None => Data::One(value),
            Data::One(first) => {
                let mut joined = Vec::with_capacity(first.len() + 1 + value.len());
                joined.extend_from_slice(&first);
                joined.push(b'\n');
                joined.extend_from_slice(&value);
                Data::Many(joined)
            }
            Data::Many(mut joined) => {
                if joined.len() + 1 + value.len() <= self.line_limit {
                    joined.push(b'\n');
                    joined.extend_from_slice(&value);
                }
                Data::Many(joined)
            }
        };
    }

    /// End of an event (blank line).
    fn dispatch(&mut self) -> Option<Found> {
        let named_error = std::mem::take(&mut self.named_error);
        let has_data = std::mem::take(&mut self.has_data);
        let data = std::mem::take(&mut self.data);
        let cut = self.event_start.take().unwrap_or(0);
        self.event_open = false;
        let bytes: &[u8] = match &data {
            Data::None => &[],
            Data::One(b) => b,
            Data::Many(v) => v,
        };
        if named_error || memmem::find(bytes, b"\"error\"").is_some() {
            let event = named_error.then_some("error");
            if let Some(error) =
                self.cx
                    .classifier
                    .classify_sse_event(&self.cx.headers, event, bytes)
            {
                return Some(Found {
                    cut,
                    error,
                    data_events_before: self.data_events,
                });
            }
        }
        if has_data {
            self.data_events += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use towline_core::ErrorKind;

    fn scanner(limit: usize) -> SseScanner {
        SseScanner::new(
            EventContext::new(Classifier::now(), &HeaderMap::new()),
            limit,
        )
    }

    fn feed(s: &mut SseScanner, chunks: &[&str]) -> Option<(usize, Found)> {
        for (i, c) in chunks.iter().enumerate() {
            if let Some(f) = s.scan(&Bytes::copy_from_slice(c.as_bytes())) {
                return Some((i, f));
            }
        }
        s.finish().map(|f| (usize::MAX, f))
    }

    #[test]
    fn content_then_error_in_one_chunk_cuts_before_the_error() {
        let mut s = scanner(1024);
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n";
        let (_, found) = feed(&mut s, &[chunk]).unwrap();
        assert_eq!(
            &chunk[..found.cut],
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
        );
        assert_eq!(found.data_events_before, 1);
        assert_eq!(found.error.kind(), ErrorKind::Server);
    }

    #[test]
    fn error_split_across_chunks_and_crlf() {
        let mut s = scanner(1024);
        let parts = [
            "event: err",
            "or\r",
            "\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_",
            "error\"}}\r\n\r\n",
        ];
        let (i, found) = feed(&mut s, &parts).unwrap();
        assert_eq!(i, 3);
        assert_eq!(found.cut, 0);
        assert_eq!(found.error.kind(), ErrorKind::Overloaded);
    }

    #[test]
    fn error_without_blank_line_is_found_at_the_end() {
        let mut s = scanner(1024);
        let (i, found) = feed(
            &mut s,
            &["data: {\"error\":{\"code\":503,\"status\":\"UNAVAILABLE\"}}"],
        )
        .unwrap();
        assert_eq!(i, usize::MAX);
        assert_eq!(found.error.kind(), ErrorKind::Server);
    }

    #[test]
    fn content_mentioning_error_is_not_an_error() {
        let mut s = scanner(1024);
        let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"the \\\"error\\\" key\"}}]}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n";
        assert!(feed(&mut s, &[chunk]).is_none());
        assert_eq!(s.data_events(), 3);
    }

    #[test]
    fn long_lines_are_skipped_and_memory_stays_bounded() {
        let mut s = scanner(64);
        for _ in 0..1000 {
            assert!(s.scan(&Bytes::from(vec![b'x'; 1000])).is_none());
            assert!(s.carry.capacity() <= 1024);
        }
        let long_data = format!("data: {}\n\n", "y".repeat(200));
        assert!(s.scan(&Bytes::from(long_data)).is_none());
        assert!(feed(&mut s, &["data: {\"error\":{\"message\":\"x\"}}\n\n"]).is_some());
    }
}
