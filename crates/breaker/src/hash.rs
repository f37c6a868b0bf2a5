//! The registry's hasher: cheap for keys hashed byte by byte.
//!
//! `http::uri::Authority` (the default key) hashes case-insensitively one `write_u8` per byte,
//! which a general-purpose hasher mixes one byte at a time. This hasher packs bytes into words
//! and mixes once per eight bytes, so finding a key's circuit costs a few multiplications
//! instead of one per byte. It is seeded per registry from `foldhash`'s random seed, and the
//! map still compares keys for equality, so a collision costs a probe, never a wrong circuit.

use std::hash::{BuildHasher, Hasher};

const MULTIPLE: u64 = 0x5851_f42d_4c95_7f2d;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Builds [`KeyHasher`]s with one random seed.
#[derive(Debug, Clone)]
pub(crate) struct RandomKeyState {
    seed: u64,
}

impl Default for RandomKeyState {
    fn default() -> Self {
        RandomKeyState {
            seed: foldhash::fast::RandomState::default().hash_one(0x746f_776c_696e_6521_u64),
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
    fn seeds_differ_between_registries() {
        let (a, b) = (RandomKeyState::default(), RandomKeyState::default());
        assert_ne!(a.hash_one("api.moonshot.ai"), b.hash_one("api.moonshot.ai"));
    }
}
