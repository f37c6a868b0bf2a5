use std::fmt;
use std::hash::Hash;

use http::header::{AUTHORIZATION, HOST};
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Request};

/// Picks the key a keyed layer partitions requests by: the API key for the throttle, the
/// conversation for the session layer, the endpoint for the breaker.
///
/// Implemented by the ready-made extractors of this module ([`ApiKey`], [`SessionHeader`],
/// [`Endpoint`]) and by any closure `Fn(&Request<B>) -> Option<K>`. `None` means "no key": the
/// throttle puts such requests in one shared bucket, the session layer lets them through.
///
/// ```
/// use http::Request;
/// use towline_core::KeyExtractor;
///
/// // Partition by a tenant header.
/// let by_tenant = |req: &Request<()>| {
///     req.headers().get("x-tenant").map(|v| v.as_bytes().to_vec())
/// };
/// let req = Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(by_tenant.extract(&req), Some(b"acme".to_vec()));
/// ```
pub trait KeyExtractor<B>: Clone + Send + Sync + 'static {
    /// The key. Keep it small and cheap to clone: it is stored once per live key.
    type Key: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static;

    /// The key of `req`, or `None` if it has none.
    fn extract(&self, req: &Request<B>) -> Option<Self::Key>;
}

impl<B, K, F> KeyExtractor<B> for F
where
    F: Fn(&Request<B>) -> Option<K> + Clone + Send + Sync + 'static,
    K: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static,
{
    type Key = K;

    fn extract(&self, req: &Request<B>) -> Option<K> {
        self(req)
    }
}

/// A 64-bit digest of a secret (an API key) or of an identifier, used as a map key.
///
/// API keys are secrets: towline never keeps one in a map, a log or a span. It keeps this digest
/// instead, computed with XXH3 and a fixed seed, so that every replica of a fleet derives the same
/// digest for the same key (the Redis store relies on that). The digest cannot be turned back
/// into the key. `Debug` and `Display` print the digest in hex.
///
/// ```
/// use towline_core::KeyHash;
///
/// let a = KeyHash::of(b"sk-secret-1");
/// assert_eq!(a, KeyHash::of(b"sk-secret-1"));
/// assert_ne!(a, KeyHash::of(b"sk-secret-2"));
/// assert!(!format!("{a:?}").contains("secret"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(u64);

impl KeyHash {
    // Fixed so that digests agree across processes and versions (XXH3 is a specified algorithm).
    const SEED: u64 = 0x746f_776c_696e_6521; // "towline!"

    /// The digest of `bytes`.
    #[inline]
    pub fn of(bytes: &[u8]) -> Self {
        KeyHash(xxhash_rust::xxh3::xxh3_64_with_seed(bytes, Self::SEED))
    }

    /// A digest of any hashable key (a throttle's or breaker's key type), stable across
    /// processes, for labelling without exposing the key. A `KeyHash` is its own digest.
    ///
    /// ```
    /// use towline_core::KeyHash;
    ///
    /// let k = KeyHash::of(b"sk-1");
    /// assert_eq!(KeyHash::digest(&k), k);
    /// assert_eq!(KeyHash::digest(&"tenant-a"), KeyHash::digest(&"tenant-a"));
    /// ```
    pub fn digest<K: Hash + 'static>(key: &K) -> Self {
        if let Some(hash) = (key as &dyn std::any::Any).downcast_ref::<KeyHash>() {
            return *hash;
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(Self::SEED);
        key.hash(&mut hasher);
        KeyHash(std::hash::Hasher::finish(&hasher))
    }

    /// The digest as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for KeyHash {
    fn from(value: u64) -> Self {
        KeyHash(value)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({:016x})", self.0)
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Keys requests by their API key, hashed: `Authorization: Bearer …`, else `x-api-key`
/// (Anthropic, Kaiko), `api-key` (Azure) or `x-goog-api-key` (Gemini).
///
/// A non-bearer `Authorization` value is hashed whole. Requests with none of these headers have
/// no key.
///
/// ```
/// use http::Request;
/// use towline_core::{ApiKey, KeyExtractor, KeyHash};
///
/// let bearer = Request::builder().header("authorization", "Bearer sk-abc").body(()).unwrap();
/// let header = Request::builder().header("x-api-key", "sk-abc").body(()).unwrap();
/// assert_eq!(ApiKey.extract(&bearer), Some(KeyHash::of(b"sk-abc")));
/// assert_eq!(ApiKey.extract(&bearer), ApiKey.extract(&header));
/// assert_eq!(ApiKey.extract(&Request::new(())), None);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiKey;

impl ApiKey {
    // `HeaderName`s, not `&str`: `http` would parse a `&str` name on every lookup.
    const KEY_HEADERS: [http::HeaderName; 3] = [
        http::HeaderName::from_static("x-api-key"),
        http::HeaderName::from_static("api-key"),
        http::HeaderName::from_static("x-goog-api-key"),
    ];

    /// The raw credential of `headers`, if any. Callers must not keep or print it.
    pub fn credential(headers: &http::HeaderMap) -> Option<&[u8]> {
        if let Some(value) = headers.get(AUTHORIZATION) {
            return Some(bearer_token(value).unwrap_or(value.as_bytes()));
        }
        Self::KEY_HEADERS
            .iter()
            .find_map(|name| headers.get(name))
            .map(HeaderValue::as_bytes)
    }
}

fn bearer_token(value: &HeaderValue) -> Option<&[u8]> {
    let bytes = value.as_bytes();
    let scheme = bytes.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| bytes[7..].trim_ascii())
}

impl<B> KeyExtractor<B> for ApiKey {
    type Key = KeyHash;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<KeyHash> {
        ApiKey::credential(req.headers()).map(KeyHash::of)
    }
}

/// Keys requests by the value of one header, hashed; by default `x-session-id`.
///
/// ```
/// use http::Request;
/// use towline_core::{KeyExtractor, KeyHash, SessionHeader};
///
/// let req = Request::builder().header("x-session-id", "conv-42").body(()).unwrap();
/// assert_eq!(SessionHeader::default().extract(&req), Some(KeyHash::of(b"conv-42")));
///
/// let custom = SessionHeader::new(http::HeaderName::from_static("x-conversation"));
/// assert_eq!(custom.extract(&req), None);
/// ```
#[derive(Debug, Clone)]
pub struct SessionHeader {
    header: HeaderName,
}

impl SessionHeader {
    /// The default session header name.
    pub const DEFAULT: &'static str = "x-session-id";

    /// Keys requests by `header`.
    pub fn new(header: HeaderName) -> Self {
        SessionHeader { header }
    }
}

impl Default for SessionHeader {
    fn default() -> Self {
        SessionHeader::new(HeaderName::from_static(Self::DEFAULT))
    }
}

impl<B> KeyExtractor<B> for SessionHeader {
    type Key = KeyHash;

    #[inline]
    fn extract(&self, req: &Request<B>) -> Option<KeyHash> {
        req.headers()
            .get(&self.header)
            .map(|v| KeyHash::of(v.as_bytes()))
    }
}

/// Keys requests by the endpoint they go to: the URI's `host:port` (credentials in the URI's
/// user-info are dropped), or the `Host` header for a relative URI.
///
/// ```
/// use http::Request;
/// use towline_core::{Endpoint, KeyExtractor};
///
/// let req = Request::builder().uri("https://user:pw@api.moonshot.ai/v1/chat/completions").body(()).unwrap();
/// assert_eq!(Endpoint.extract(&req).unwrap().as_str(), "api.moonshot.ai");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Endpoint;

impl<B> KeyExtractor<B> for Endpoint {
    type Key = Authority;

    fn extract(&self, req: &Request<B>) -> Option<Authority> {
        match req.uri().authority() {
            // A clone of `Authority` shares its bytes: no allocation on the common path.
            Some(authority) if !authority.as_str().contains('@') => Some(authority.clone()),
            Some(authority) => {
                let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
                host_port.parse().ok()
            }
            None => req
                .headers()
                .get(HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, value: &str) -> Request<()> {
        Request::builder().header(name, value).body(()).unwrap()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_and_trimmed() {
        let a = ApiKey.extract(&req("authorization", "bearer  sk-1 "));
        assert_eq!(a, Some(KeyHash::of(b"sk-1")));
    }

    #[test]
    fn every_key_header_is_recognized() {
        for name in ["x-api-key", "api-key", "x-goog-api-key"] {
            assert_eq!(
                ApiKey.extract(&req(name, "k")),
                Some(KeyHash::of(b"k")),
                "{name}"
            );
        }
        let basic = ApiKey.extract(&req("authorization", "Basic dXNlcjpwdw=="));
        assert_eq!(basic, Some(KeyHash::of(b"Basic dXNlcjpwdw==")));
    }

    #[test]
    fn endpoint_falls_back_to_host_header() {
        let r = Request::builder()
            .uri("/v1/models")
            .header("host", "localhost:8080")
            .body(())
            .unwrap();
        assert_eq!(Endpoint.extract(&r).unwrap().as_str(), "localhost:8080");
        assert_eq!(Endpoint.extract(&Request::new(())), None);
    }

    #[test]
    fn digest_is_stable_across_processes() {
        // A changed digest would split a fleet's shared Redis buckets during an upgrade.
        assert_eq!(KeyHash::of(b"sk-test").to_string().len(), 16);
        assert_eq!(KeyHash::of(b"sk-test"), KeyHash::of(b"sk-test"));
        assert_eq!(
            KeyHash::of(b""),
            KeyHash(xxhash_rust::xxh3::xxh3_64_with_seed(b"", KeyHash::SEED))
        );
    }
}
