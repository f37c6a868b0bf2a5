//! Idempotency keys.

use fastrand::Rng;
use http::HeaderValue;

/// A random UUID v4 (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`), the form providers document for
/// `Idempotency-Key`.
pub(crate) fn new_key(rng: &mut Rng) -> HeaderValue {
    let (a, b) = (rng.u64(..), rng.u64(..));
    let key = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff,
    );
    HeaderValue::from_str(&key).expect("hex digits and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_uuid_v4_and_differ() {
        let mut rng = Rng::with_seed(3);
        let a = new_key(&mut rng);
        let b = new_key(&mut rng);
        assert_ne!(a, b);
        let s = a.to_str().unwrap();
        let groups: Vec<_> = s.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&s[14..15], "4", "version");
        assert!("89ab".contains(&s[19..20]), "variant");
    }
}
