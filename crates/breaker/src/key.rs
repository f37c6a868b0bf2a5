//! How a circuit's key is named in transition callbacks and snapshots.

use std::borrow::Cow;
use std::sync::Arc;

use http::uri::Authority;
use towline_core::KeyHash;

/// Names a breaker key for the [`on_transition`](crate::BreakerBuilder::on_transition) callback
/// and for [`BreakerHandle::circuits`](crate::BreakerHandle::circuits).
///
/// The name is computed once, when a key is first seen, never per call. It is deliberately not
/// the key's `Debug`: a key type's `Debug` may print more than its owner wants in an alert. The
/// default key, the endpoint's [`Authority`] (`host:port`), is not a secret and is named as it
/// is; a [`KeyHash`] is named by its hex digest. Implement this for your own key type (a model
/// name, a route) to choose what an alert shows.
///
/// ```
/// use towline_breaker::DescribeKey;
///
/// let endpoint: http::uri::Authority = "api.moonshot.ai".parse().unwrap();
/// assert_eq!(endpoint.describe(), "api.moonshot.ai");
/// assert_eq!((endpoint, "kimi-k2".to_owned()).describe(), "api.moonshot.ai/kimi-k2");
/// ```
pub trait DescribeKey {
    /// The key's name.
    fn describe(&self) -> Cow<'_, str>;
}

impl DescribeKey for Authority {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed(self.as_str())
    }
}

impl DescribeKey for KeyHash {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_string())
    }
}

impl DescribeKey for String {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl DescribeKey for &'static str {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl DescribeKey for Box<str> {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl DescribeKey for Arc<str> {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed(self)
    }
}

impl DescribeKey for () {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Borrowed("*")
    }
}

macro_rules! describe_numbers {
    ($($t:ty),*) => {$(
        impl DescribeKey for $t {
            fn describe(&self) -> Cow<'_, str> {
                Cow::Owned(self.to_string())
            }
        }
    )*};
}

describe_numbers!(u8, u16, u32, u64, usize, i32, i64);

impl<T: DescribeKey> DescribeKey for Option<T> {
    fn describe(&self) -> Cow<'_, str> {
        match self {
            Some(inner) => inner.describe(),
            None => Cow::Borrowed("-"),
        }
    }
}

impl<A: DescribeKey, B: DescribeKey> DescribeKey for (A, B) {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Owned(format!("{}/{}", self.0.describe(), self.1.describe()))
    }
}

impl<A: DescribeKey, B: DescribeKey, C: DescribeKey> DescribeKey for (A, B, C) {
    fn describe(&self) -> Cow<'_, str> {
        Cow::Owned(format!(
            "{}/{}/{}",
            self.0.describe(),
            self.1.describe(),
            self.2.describe()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_keys_are_named_by_digest_only() {
        let hash = KeyHash::of(b"sk-live-secret");
        let name = hash.describe();
        assert_eq!(name.len(), 16);
        assert!(!name.contains("secret"));
    }

    #[test]
    fn composite_keys_join_their_parts() {
        let key = (Some(7u32), (), None::<u8>);
        assert_eq!(key.describe(), "7/*/-");
    }
}
