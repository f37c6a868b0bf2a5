//! The wordings the classifier looks for in a message, all found in one pass.
//!
//! Why an automaton: the decision asks up to five questions of a message ("does it say
//! quota?", "context length?", "content filter?", "overloaded?", "quota but not rate?"), and
//! answering each with `str::contains` over a lowercased copy meant up to fifty scans and an
//! allocation per classified error. One Aho-Corasick DFA (the `aho-corasick` crate, built once
//! per process) over the message as it is, ASCII case folded by the automaton, answers all of
//! them in a single pass. "Contains `p`" is exactly "some match of `p` ends somewhere", which
//! is what an overlapping (standard semantics) scan reports, and ASCII case folding of the
//! automaton is exactly `to_ascii_lowercase` of the message: the answers are the same.

use std::sync::LazyLock;

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};

/// Phrases that only a quota uses. Not "billing" alone: OpenAI's rate-limit message links to
/// the billing page.
const QUOTA: &[&str] = &[
    "exceeded your current quota",
    "exceeded current quota",
    "exceeded the current quota",
    "quota exceeded",
    "quota exhausted",
    "quota has been exhausted",
    "insufficient quota",
    "quota is not enough",
    "out of quota",
    "token plan",
    "token-plan",
    "insufficient balance",
    "balance is insufficient",
    "insufficient credit",
    "out of credits",
    "arrears",
    "欠费",
    "余额不足",
];

const CONTEXT_LENGTH: &[&str] = &[
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "input token length too long",
    "token length too long",
    "exceeded model token limit",
    "exceeds the maximum number of tokens",
    "prompt is too long",
    "too many tokens",
    "reduce the length of the messages",
];

const CONTENT_FILTER: &[&str] = &[
    "content filter",
    "content_filter",
    "content management policy",
    "content policy",
    "high risk",
    "inappropriate content",
    "flagged",
    "moderation",
    "sensitive content",
    "data_inspection",
];

const OVERLOADED: &[&str] = &[
    "overloaded",
    "high load",
    "over capacity",
    "at capacity",
    "capacity exceeded",
    "server is busy",
    "too busy",
];

/// Which groups of phrases a message contains (a bit per group).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Wording(u8);

impl Wording {
    const QUOTA: u8 = 1;
    const QUOTA_WORD: u8 = 1 << 1;
    const RATE_WORD: u8 = 1 << 2;
    const CONTEXT_LENGTH: u8 = 1 << 3;
    const CONTENT_FILTER: u8 = 1 << 4;
    const OVERLOADED: u8 = 1 << 5;
    const ALL: u8 = (1 << 6) - 1;

    /// A quota phrase, or the word "quota" without the word "rate".
    pub(crate) fn says_quota(self) -> bool {
        self.has(Self::QUOTA) || (self.has(Self::QUOTA_WORD) && !self.has(Self::RATE_WORD))
    }

    pub(crate) fn says_context_length(self) -> bool {
        self.has(Self::CONTEXT_LENGTH)
    }

    pub(crate) fn says_content_filter(self) -> bool {
        self.has(Self::CONTENT_FILTER)
    }

    pub(crate) fn says_overloaded(self) -> bool {
        self.has(Self::OVERLOADED)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// The automaton and, per pattern, the group bit it sets.
struct Finder {
    dfa: DFA,
    groups: Vec<u8>,
}

static FINDER: LazyLock<Finder> = LazyLock::new(|| {
    let groups: [(&[&str], u8); 6] = [
        (QUOTA, Wording::QUOTA),
        (&["quota"], Wording::QUOTA_WORD),
        (&["rate"], Wording::RATE_WORD),
        (CONTEXT_LENGTH, Wording::CONTEXT_LENGTH),
        (CONTENT_FILTER, Wording::CONTENT_FILTER),
        (OVERLOADED, Wording::OVERLOADED),
    ];
    let (patterns, bits): (Vec<&str>, Vec<u8>) = groups
        .iter()
        .flat_map(|(phrases, bit)| phrases.iter().map(move |p| (*p, *bit)))
        .unzip();
    let dfa = DFA::builder()
        .match_kind(MatchKind::Standard)
        .ascii_case_insensitive(true)
        // No prefilter: then only match states are special, and the scan below is a table
        // lookup per byte.
        .prefilter(false)
        .build(&patterns)
        .expect("the phrase automaton builds");
    Finder { dfa, groups: bits }
});

/// The groups of phrases `message` contains, ASCII case insensitively.
pub(crate) fn scan(message: &str) -> Wording {
    let finder = &*FINDER;
    let dfa = &finder.dfa;
    let Ok(mut state) = dfa.start_state(Anchored::No) else {
        return slow_scan(message);
    };
    let mut found = 0;
    for &byte in message.as_bytes() {
        state = dfa.next_state(Anchored::No, state, byte);
        if dfa.is_special(state) && dfa.is_match(state) {
            for i in 0..dfa.match_len(state) {
                found |= finder.groups[dfa.match_pattern(state, i).as_usize()];
            }
            if found == Wording::ALL {
                break;
            }
        }
    }
    Wording(found)
}

/// The same answer with `str::contains`, for the (unreachable) case of an automaton without
/// an unanchored start state, and for the tests.
fn slow_scan(message: &str) -> Wording {
    let lower = message.to_ascii_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    let mut found = 0;
    for (phrases, bit) in [
        (QUOTA, Wording::QUOTA),
        (&["quota"][..], Wording::QUOTA_WORD),
        (&["rate"][..], Wording::RATE_WORD),
        (CONTEXT_LENGTH, Wording::CONTEXT_LENGTH),
        (CONTENT_FILTER, Wording::CONTENT_FILTER),
        (OVERLOADED, Wording::OVERLOADED),
    ] {
        if says(phrases) {
            found |= bit;
        }
    }
    Wording(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_phrases() -> Vec<&'static str> {
        [
            QUOTA,
            CONTEXT_LENGTH,
            CONTENT_FILTER,
            OVERLOADED,
            &["quota", "rate"],
        ]
        .concat()
    }

    #[test]
    fn every_phrase_in_any_case() {
        for phrase in all_phrases() {
            let upper = phrase.to_ascii_uppercase();
            for text in [
                phrase.to_string(),
                format!("x {upper} y"),
                format!("{phrase}{phrase}"),
            ] {
                assert_eq!(scan(&text), slow_scan(&text), "{text}");
                assert_ne!(scan(&text), Wording::default(), "{text}");
            }
        }
        assert_eq!(scan("Rate limit reached"), Wording(Wording::RATE_WORD));
        assert!(scan("You exceeded your current QUOTA").says_quota());
        assert!(!scan("quota of the rate").says_quota());
        assert!(scan("欠费").says_quota());
        assert_eq!(scan(""), Wording::default());
    }

    fn text_with_phrases() -> impl Strategy<Value = String> {
        let phrases = all_phrases();
        let piece = prop_oneof![
            proptest::sample::select(phrases).prop_map(str::to_string),
            "[a-zA-Z _\\-]{0,12}",
            ".{0,6}",
        ];
        proptest::collection::vec((piece, any::<bool>()), 0..8).prop_map(|pieces| {
            pieces
                .into_iter()
                .map(|(p, upper)| if upper { p.to_ascii_uppercase() } else { p })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, .. ProptestConfig::default() })]

        #[test]
        fn one_pass_agrees_with_contains(text in text_with_phrases()) {
            prop_assert_eq!(scan(&text), slow_scan(&text));
        }
    }
}
