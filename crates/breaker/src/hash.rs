//! The registries' hashing: cheap for keys hashed byte by byte, and a case-insensitive digest
//! of an endpoint's `host:port`.
//!
//! A key type's `Hash` may write one byte at a time (a custom key holding an
//! `http::uri::Authority` hashes case-insensitively one `write_u8` per byte), which a
//! general-purpose hasher mixes one byte at a time. [`KeyHasher`] packs bytes into words and
//! mixes once per eight bytes, so finding a key's circuit costs a few multiplications instead of
//! one per byte. It is seeded per registry from `foldhash`'s random seed, and the map still
//! compares keys for equality, so a collision costs a probe, never a wrong circuit.
//!
//! The default key, the endpoint, is not hashed through `Authority`'s `Hash` at all:
//! [`EndpointDigest`] lowercases eight bytes at a time (SWAR) while it mixes them, so the map of
//! endpoint circuits is keyed by a `u64` and a lookup compares two numbers instead of two
//! strings byte by byte, ignoring case (see `shared::Endpoints` for how a collision is kept
//! apart).

use std::hash::{BuildHasher, Hasher};

const MULTIPLE: u64 = 0x5851_f42d_4c95_7f2d;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// A random seed for one registry: a digest differs from process to process, so nobody can
/// choose endpoints that collide.
fn random_seed() -> u64 {
    foldhash::fast::RandomState::default().hash_one(0x746f_776c_696e_6521_u64)
}

/// ASCII-lowercases the eight bytes of `word` at once: adds `0x20` to every byte in `A..=Z`
/// and leaves every other byte (including non-ASCII ones) alone. No carry crosses a byte: each
/// sum below stays under `0x100`.
#[inline]
fn lowercase_word(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = word & !HIGH;
    let at_least_a = low7 + ONES * u64::from(0x80 - b'A');
    let above_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = at_least_a & !above_z & !word & HIGH;
    word | (upper >> 2)
}

/// A seeded 64-bit digest of an endpoint's `host:port` that ignores ASCII case, as
/// `Authority`'s `Eq` and `Hash` do.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointDigest {
    seed: u64,
    /// Tests: every endpoint gets the same digest, to exercise collisions.
    #[cfg(test)]
    colliding: bool,
}

impl EndpointDigest {
    pub(crate) fn random() -> Self {
        EndpointDigest {
            seed: random_seed(),
            #[cfg(test)]
            colliding: false,
        }
    }

    /// A digest under which every endpoint collides with every other.
    #[cfg(test)]
    pub(crate) fn colliding() -> Self {
        EndpointDigest {
            seed: 0,
            colliding: true,
        }
    }

    /// The digest of `bytes`, ASCII case ignored.
    #[inline]
    pub(crate) fn of(self, bytes: &[u8]) -> u64 {
        self.scan(bytes).0
    }

    /// The digest of `bytes`, ASCII case ignored, or `None` if they hold an `@` (user-info in
    /// a URI's authority): found in the same pass over the bytes.
    #[inline]
    pub(crate) fn of_without_at(self, bytes: &[u8]) -> Option<u64> {
        let (digest, at) = self.scan(bytes);
        (!at).then_some(digest)
    }

    #[inline]
    fn scan(self, bytes: &[u8]) -> (u64, bool) {
        #[cfg(test)]
        if self.colliding {
            return (7, bytes.contains(&b'@'));
        }
        let mut at = 0;
        // The length goes in first, so that zero padding of the last word cannot make two
        // lengths agree.
        let mut state = fold(self.seed ^ bytes.len() as u64, MULTIPLE);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            at |= at_bytes(word);
            state = fold(state ^ lowercase_word(word), MULTIPLE);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let word = if bytes.len() >= 8 {
                // The last eight bytes, whose top `rest.len()` are the remainder: one load
                // instead of a `memcpy` of a few bytes.
                let mut last = [0; 8];
                last.copy_from_slice(&bytes[bytes.len() - 8..]);
                u64::from_le_bytes(last) >> (8 * (8 - rest.len()))
            } else {
                rest.iter()
                    .rev()
                    .fold(0, |word, &b| (word << 8) | u64::from(b))
            };
            at |= at_bytes(word);
            state = fold(state ^ lowercase_word(word), MULTIPLE);
        }
        (fold(state, state.rotate_left(23) | 1), at != 0)
    }
}

/// Non-zero if a byte of `word` is `@` (the classic has-zero-byte test on `word ^ "@@@@@@@@"`:
/// exact about whether one exists, which is all that is asked).
#[inline]
fn at_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (ONES * u64::from(b'@'));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// A hasher for keys that are already digests: the map's hash is the digest itself.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with this; any other input still spreads, if slowly.
        for &byte in bytes {
            self.0 = fold(self.0 ^ u64::from(byte), MULTIPLE);
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`KeyHasher`]s with one random seed.
#[derive(Debug, Clone)]
pub(crate) struct RandomKeyState {
    seed: u64,
}

impl Default for RandomKeyState {
    fn default() -> Self {
        RandomKeyState {
            seed: random_seed(),
        }
    }
}

impl BuildHasher for RandomKeyState {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            state: self.seed,
            pending: 0,
            filled: 0,
        }
    }
}

/// Packs bytes into words; mixes whole words.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    state: u64,
    pending: u64,
    filled: u32,
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = fold(self.state ^ word, MULTIPLE);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.pending |= u64::from(byte) << (8 * self.filled);
        self.filled += 1;
        if self.filled == 8 {
            let word = self.pending;
            self.mix(word);
            self.pending = 0;
            self.filled = 0;
        }
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        for &byte in chunks.remainder() {
            self.write_u8(byte);
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let tail = self.pending ^ (u64::from(self.filled) << 59);
        let state = fold(self.state ^ tail, MULTIPLE);
        fold(state, state.rotate_left(23) | 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn equal_keys_hash_equal_and_distinct_keys_spread() {
        let state = RandomKeyState::default();
        let a: http::uri::Authority = "API.Example.com:443".parse().unwrap();
        let b: http::uri::Authority = "api.example.com:443".parse().unwrap();
        assert_eq!(
            state.hash_one(&a),
            state.hash_one(&b),
            "case-insensitive like Authority's Eq"
        );
        let hashes: HashSet<u64> = (0..10_000)
            .map(|i| state.hash_one(format!("host-{i}.example.com")))
            .collect();
        assert_eq!(hashes.len(), 10_000);
        // The low bits pick hashbrown's bucket and the high bits its control byte: both vary.
        let low: HashSet<u64> = (0..256).map(|i| state.hash_one(i as u64) & 0xff).collect();
        let high: HashSet<u64> = (0..256).map(|i| state.hash_one(i as u64) >> 57).collect();
        assert!(
            low.len() > 150 && high.len() > 100,
            "{} {}",
            low.len(),
            high.len()
        );
    }

    #[test]
    fn lowercasing_a_word_touches_only_capitals() {
        for byte in 0..=255u8 {
            let word = u64::from_le_bytes([byte, b'Q', 0xC3, b'@', b'[', b'z', b'Z', byte]);
            let expected = u64::from_le_bytes(
                [byte, b'Q', 0xC3, b'@', b'[', b'z', b'Z', byte].map(|b| b.to_ascii_lowercase()),
            );
            assert_eq!(lowercase_word(word), expected, "byte {byte:#04x}");
        }
    }

    #[test]
    fn endpoint_digests_ignore_case_only() {
        let digest = EndpointDigest::random();
        assert_eq!(
            digest.of(b"API.Moonshot.AI:443"),
            digest.of(b"api.moonshot.ai:443")
        );
        assert_ne!(
            digest.of(b"api.moonshot.ai"),
            digest.of(b"api.moonshot.ai:443")
        );
        // The length is mixed in: zero padding cannot make these two agree.
        assert_ne!(digest.of(b"a"), digest.of(b"a\0"));
        let digests: HashSet<u64> = (0..10_000)
            .map(|i| digest.of(format!("host-{i}.example.com:{}", i % 7).as_bytes()))
            .collect();
        assert_eq!(digests.len(), 10_000);
    }

    #[test]
    fn an_at_sign_is_found_anywhere() {
        let digest = EndpointDigest::random();
        for len in 1..=20 {
            let clean = "h".repeat(len);
            assert_eq!(
                digest.of_without_at(clean.as_bytes()),
                Some(digest.of(clean.as_bytes()))
            );
            for at in 0..len {
                let mut with_at = clean.clone().into_bytes();
                with_at[at] = b'@';
                assert_eq!(digest.of_without_at(&with_at), None, "len {len}, @ at {at}");
            }
        }
        // Bytes just around `@` (0x40) are no `@`.
        assert!(digest.of_without_at(b"?A\x41\x3f\xc0").is_some());
    }

    #[test]
    fn seeds_differ_between_registries() {
        let (a, b) = (RandomKeyState::default(), RandomKeyState::default());
        assert_ne!(a.hash_one("api.moonshot.ai"), b.hash_one("api.moonshot.ai"));
    }
}
