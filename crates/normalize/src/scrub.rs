//! Removing credentials from provider messages.
//!
//! Providers sometimes echo the key they were sent ("Incorrect API key provided: sk-…"). An
//! [`ApiError`](towline_core::ApiError) ends up in logs, spans and user-facing reports, so the
//! classifier replaces such echoes with `[redacted]`. Two rules:
//!
//! - anything shaped like an API key: `sk-…`/`sk_…` (OpenAI, Moonshot, DeepSeek, aiapi),
//!   `kaiko_live_…`/`kaiko_test_…`, `AIza…` (Google), and the token after `Bearer `;
//! - an exact echo of the request's own credential, whatever its shape. The layer does not keep
//!   the credential for this: it keeps its length, a 64-bit digest ([`KeyHash`]) and two
//!   bytes (its first XOR its last, its second XOR its last but one), and compares the digest
//!   of each same-length window of the message whose two bytes match. So the response future never holds a secret,
//!   and the search is paid on the error path only.

use std::borrow::Cow;
use std::num::NonZeroUsize;

use towline_core::KeyHash;

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

/// Prefixes that start an API-key-shaped token.
const KEY_PREFIXES: [&[u8]; 6] = [
    b"sk-",
    b"sk_",
    b"kaiko_live_",
    b"kaiko_test_",
    b"AIza",
    b"Bearer ",
];

/// How many token characters after a prefix make it a key rather than a word ("sk-learn").
const MIN_KEY_TAIL: usize = 8;

/// Credentials shorter than this are not searched for: a 3-byte "key" would redact words.
const MIN_CREDENTIAL_LEN: usize = 8;

/// The request's credential, kept as a digest: what [`redact_with`] needs to find an exact echo.
///
/// ```
/// use towline_normalize::scrub::Credential;
/// let c = Credential::of(b"sk-proj-secret-1234567890");
/// assert!(!format!("{c:?}").contains("secret"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// Not zero (at least [`MIN_CREDENTIAL_LEN`]), which lets `Option<Credential>` use the
    /// niche: the option the response future carries stays 24 bytes with the `edge` added.
    len: NonZeroUsize,
    digest: KeyHash,
    /// The credential's first byte XOR its last, and its second XOR its last but one: a window
    /// of the message is only digested when its own pair matches (one window of English text
    /// in a few hundred). Equal bytes give equal values, so every echo is still found and
    /// confirmed by the digest. It costs four loads to take (the success path pays for it)
    /// and says next to nothing about the key.
    edge: [u8; 2],
}

impl Credential {
    /// The digest of `credential`, or `None` for one too short to search for safely.
    pub fn of(credential: &[u8]) -> Option<Self> {
        let len =
            NonZeroUsize::new(credential.len()).filter(|len| len.get() >= MIN_CREDENTIAL_LEN)?;
        Some(Credential {
            len,
            digest: KeyHash::of(credential),
            edge: edge(credential),
        })
    }
}

/// `[first ^ last, second ^ last but one]` of `bytes` (which has at least
/// [`MIN_CREDENTIAL_LEN`] of them).
fn edge(bytes: &[u8]) -> [u8; 2] {
    let n = bytes.len();
    [bytes[0] ^ bytes[n - 1], bytes[1] ^ bytes[n - 2]]
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({} bytes, {})", self.len, self.digest)
    }
}

/// Replaces API-key-shaped tokens (`sk-…`, `kaiko_live_…`, `AIza…`, `Bearer …`) with
/// `[redacted]`. Borrows when there is nothing to replace.
///
/// ```
/// use towline_normalize::scrub::redact;
/// assert_eq!(
///     redact("Incorrect API key provided: sk-proj-********abcd. You can find your key ..."),
///     "Incorrect API key provided: [redacted]. You can find your key ..."
/// );
/// assert_eq!(redact("use scikit (sk-learn)"), "use scikit (sk-learn)");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    redact_with(text, None)
}

/// Like [`redact`], and also replaces every exact echo of `credential`.
///
/// ```
/// use towline_normalize::scrub::{redact_with, Credential};
/// let key = Credential::of(b"kimi-free-token-0123456789");
/// assert_eq!(
///     redact_with("token kimi-free-token-0123456789 expired", key),
///     "token [redacted] expired"
/// );
/// ```
pub fn redact_with(text: &str, credential: Option<Credential>) -> Cow<'_, str> {
    let mut spans = key_shaped_spans(text.as_bytes());
    if let Some(credential) = credential {
        spans.extend(echo_spans(text, credential));
        spans.sort_unstable();
    }
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        let start = start.max(at);
        out.push_str(&text[at..start]);
        if !out.ends_with(REDACTED) {
            out.push_str(REDACTED);
        }
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'.' | b'~' | b'+' | b'/' | b'=')
}

/// Byte ranges of key-shaped tokens. The prefix must start a token (not `desk-…`).
fn key_shaped_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut starts = PrefixStarts::new(bytes);
    let mut i = 0;
    while let Some(at) = starts.next_from(i) {
        i = at;
        let at_token_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let prefix = if at_token_start {
            KEY_PREFIXES.iter().find(|p| bytes[i..].starts_with(p))
        } else {
            None
        };
        let Some(prefix) = prefix else {
            i += 1;
            continue;
        };
        let tail_start = i + prefix.len();
        let mut end = tail_start;
        while end < bytes.len() && is_token_byte(bytes[end]) {
            end += 1;
        }
        // A trailing dot ends a sentence, not a key.
        while end > tail_start && bytes[end - 1] == b'.' {
            end -= 1;
        }
        if end - tail_start >= MIN_KEY_TAIL {
            // Keep "Bearer " itself; redact the token after it.
            let start = if *prefix == b"Bearer " { tail_start } else { i };
            spans.push((start, end));
            i = end;
        } else {
            i = tail_start;
        }
    }
    spans
}

/// Where a key prefix may start: the positions of `s`, `k`, `A` (`sk-`, `sk_`, `kaiko_…`,
/// `AIza`) and `B` (`Bearer `), found with `memchr` (SIMD) rather than by testing every
/// position of the message. `B` is rare, so its next position is searched for separately and
/// kept until passed.
struct PrefixStarts<'a> {
    bytes: &'a [u8],
    /// The next `B` at or after the last position asked for, if it was searched for.
    next_bearer: Option<Option<usize>>,
}

impl<'a> PrefixStarts<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        PrefixStarts {
            bytes,
            next_bearer: None,
        }
    }

    /// The first position at or after `from` whose byte starts one of the prefixes.
    fn next_from(&mut self, from: usize) -> Option<usize> {
        let rest = self.bytes.get(from..)?;
        let common = memchr::memchr3(b's', b'k', b'A', rest).map(|p| from + p);
        let bearer = match self.next_bearer {
            Some(Some(at)) if at >= from => Some(at),
            Some(None) => None,
            _ => {
                let at = memchr::memchr(b'B', rest).map(|p| from + p);
                self.next_bearer = Some(at);
                at
            }
        };
        match (common, bearer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Byte ranges (on char boundaries) whose digest equals the credential's, left to right, not
/// overlapping. Only a window whose `edge` matches the credential's is digested; candidates are
/// found by walking the windows' first and last bytes side by side (no bounds checks).
fn echo_spans(text: &str, credential: Credential) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let n = credential.len.get();
    let mut spans = Vec::new();
    let mut start = 0;
    while start + n <= bytes.len() {
        let firsts = &bytes[start..=bytes.len() - n];
        let lasts = &bytes[start + n - 1..];
        let Some(skip) = firsts
            .iter()
            .zip(lasts)
            .position(|(first, last)| first ^ last == credential.edge[0])
        else {
            break;
        };
        start += skip;
        let end = start + n;
        let window = &bytes[start..end];
        if edge(window) == credential.edge
            && text.is_char_boundary(start)
            && text.is_char_boundary(end)
            && KeyHash::of(window) == credential.digest
        {
            spans.push((start, end));
            start = end;
        } else {
            start += 1;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        assert_eq!(
            redact("key sk-abcdefgh1234 and kaiko_live_0123456789abc."),
            "key [redacted] and [redacted]."
        );
        assert_eq!(
            redact("Authorization: Bearer eyJhbGciOi.J9xyz end"),
            "Authorization: Bearer [redacted] end"
        );
        assert_eq!(redact("AIzaSyA-1234567890abcdefgh"), "[redacted]");
        assert_eq!(
            redact("task-abcdefghij desk-12345678901"),
            "task-abcdefghij desk-12345678901"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn exact_echo_of_any_shape_and_overlaps() {
        let c = Credential::of(b"0123456789abcdef");
        assert_eq!(
            redact_with("a 0123456789abcdef b 0123456789abcdef", c),
            "a [redacted] b [redacted]"
        );
        // The echo is also key-shaped: one replacement, not two.
        let c = Credential::of(b"sk-0123456789");
        assert_eq!(redact_with("x sk-0123456789 y", c), "x [redacted] y");
        // Non-ASCII around the echo is kept intact.
        let c = Credential::of(b"secret-token-99");
        assert_eq!(
            redact_with("令牌secret-token-99已失效", c),
            "令牌[redacted]已失效"
        );
    }

    /// The scans as first written (every position tested, every window digested): the fast
    /// ones must find exactly the same spans.
    mod reference {
        use super::super::*;

        pub(super) fn key_shaped_spans(bytes: &[u8]) -> Vec<(usize, usize)> {
            let mut spans = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let at_token_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
                let prefix = if at_token_start {
                    KEY_PREFIXES.iter().find(|p| bytes[i..].starts_with(p))
                } else {
                    None
                };
                let Some(prefix) = prefix else {
                    i += 1;
                    continue;
                };
                let tail_start = i + prefix.len();
                let mut end = tail_start;
                while end < bytes.len() && is_token_byte(bytes[end]) {
                    end += 1;
                }
                while end > tail_start && bytes[end - 1] == b'.' {
                    end -= 1;
                }
                if end - tail_start >= MIN_KEY_TAIL {
                    let start = if *prefix == b"Bearer " { tail_start } else { i };
                    spans.push((start, end));
                    i = end;
                } else {
                    i = tail_start;
                }
            }
            spans
        }

        pub(super) fn echo_spans(text: &str, credential: Credential) -> Vec<(usize, usize)> {
            let bytes = text.as_bytes();
            let mut spans = Vec::new();
            let mut start = 0;
            let len = credential.len.get();
            while start + len <= bytes.len() {
                let end = start + len;
                if text.is_char_boundary(start)
                    && text.is_char_boundary(end)
                    && KeyHash::of(&bytes[start..end]) == credential.digest
                {
                    spans.push((start, end));
                    start = end;
                } else {
                    start += 1;
                }
            }
            spans
        }
    }

    fn text_with_keys() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            proptest::sample::select(vec![
                "sk-",
                "sk_",
                "kaiko_live_",
                "kaiko_test_",
                "AIza",
                "Bearer ",
                "B",
                "s",
                "k",
                "A",
                ".",
                " ",
                "令牌",
                "abcdefgh",
                "0123456789",
                "secret-token-99",
            ])
            .prop_map(str::to_string),
            "[a-zA-Z0-9 _.\\-]{0,10}",
            ".{0,4}",
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2048, ..Default::default() })]

        #[test]
        fn fast_scans_find_the_same_spans(
            text in text_with_keys(),
            key in proptest::sample::select(vec![
                "secret-token-99", "abcdefgh", "aaaaaaaa", "sk-abcdefgh", "令牌abcdef",
            ]),
            from in 0usize..64,
        ) {
            proptest::prop_assert_eq!(
                key_shaped_spans(text.as_bytes()),
                reference::key_shaped_spans(text.as_bytes())
            );
            let c = Credential::of(key.as_bytes()).unwrap();
            proptest::prop_assert_eq!(echo_spans(&text, c), reference::echo_spans(&text, c));
            // A credential cut from the text itself is an echo wherever it occurs.
            let bytes = text.as_bytes();
            if bytes.len() >= MIN_CREDENTIAL_LEN {
                let start = from % (bytes.len() - MIN_CREDENTIAL_LEN + 1);
                let own = Credential::of(&bytes[start..start + MIN_CREDENTIAL_LEN]).unwrap();
                proptest::prop_assert_eq!(
                    echo_spans(&text, own),
                    reference::echo_spans(&text, own)
                );
            }
        }
    }

    #[test]
    fn short_credentials_are_not_searched() {
        assert!(Credential::of(b"abc").is_none());
        assert_eq!(redact_with("abc abc", Credential::of(b"abc")), "abc abc");
    }
}
