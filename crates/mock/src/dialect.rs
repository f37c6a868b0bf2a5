use std::fmt;
use std::str::FromStr;

use towline_core::ErrorKind;

/// The error dialect a scripted key speaks: the JSON shape, type/code names, messages, status
/// codes and headers of one provider's errors.
///
/// Successful answers are OpenAI-compatible chat completions in every dialect (that is what the
/// gateways and compatible APIs serve); only errors differ. kimi-free-api has a single
/// rate-limit code, -2005 ("a stream is already being pushed"), so every rate limit of a
/// kimi-free-api script (scripted, or from a server-side [`RateLimit`](crate::RateLimit)) is sent
/// as -2005.
///
/// | dialect | error body |
/// |---|---|
/// | [`OpenAi`](Dialect::OpenAi) | `{"error":{"message","type","param","code"}}` |
/// | [`Moonshot`](Dialect::Moonshot) | `{"error":{"message","type"}}` (Kimi; field order as in the seed's examples) |
/// | [`Mimo`](Dialect::Mimo) | `{"error":{"code","message","type":"error"}}` |
/// | [`KaikoV2`](Dialect::KaikoV2) | `{"error":{"type","code","message","param","request_id"}}` |
/// | [`Aiapi`](Dialect::Aiapi) | `{"code","message","data"}` (aiapi.services) |
/// | [`KimiFreeApi`](Dialect::KimiFreeApi) | `{"code":-2001,"message","data":null}` **with HTTP 200** (what the server really sends) |
/// | [`KimiFreeApiDocumented`](Dialect::KimiFreeApiDocumented) | `{"errcode":-2002,"errmsg","data":null}` with 4xx/5xx (what the article documents) |
/// | [`Anthropic`](Dialect::Anthropic) | `{"type":"error","error":{"type","message"},"request_id"}` (529 `overloaded_error`) |
/// | [`Gemini`](Dialect::Gemini) | `{"error":{"code","message","status","details"}}` (`RetryInfo`, `QuotaFailure`) |
///
/// Names parse case-insensitively, with `-` or `_`, and a few aliases (`kimi` for Moonshot,
/// `claude` for Anthropic, ...):
///
/// ```
/// use towline_mock::Dialect;
///
/// assert_eq!("kimi-free-api".parse::<Dialect>(), Ok(Dialect::KimiFreeApi));
/// assert_eq!("kaiko_v2".parse::<Dialect>(), Ok(Dialect::KaikoV2));
/// assert_eq!(Dialect::Aiapi.as_str(), "aiapi");
/// assert!("kimi2".parse::<Dialect>().unwrap_err().to_string().contains("moonshot"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// OpenAI and the many APIs that copy it (DeepSeek, Groq, ...).
    #[default]
    OpenAi,
    /// Moonshot AI / Kimi (`api.moonshot.ai`).
    Moonshot,
    /// Xiaomi MiMo.
    Mimo,
    /// Kaiko V2.
    KaikoV2,
    /// The aiapi.services gateway.
    Aiapi,
    /// kimi-free-api as its server really answers: HTTP 200 with a negative `code`.
    KimiFreeApi,
    /// kimi-free-api as the error-handling article documents it: 4xx/5xx with `errcode`.
    KimiFreeApiDocumented,
    /// Anthropic (Claude).
    Anthropic,
    /// Google Gemini.
    Gemini,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 9] = [
        Dialect::OpenAi,
        Dialect::Moonshot,
        Dialect::Mimo,
        Dialect::KaikoV2,
        Dialect::Aiapi,
        Dialect::KimiFreeApi,
        Dialect::KimiFreeApiDocumented,
        Dialect::Anthropic,
        Dialect::Gemini,
    ];

    /// The canonical name, as scripts and the `towline mock --dialect` flag spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Moonshot => "moonshot",
            Dialect::Mimo => "mimo",
            Dialect::KaikoV2 => "kaiko_v2",
            Dialect::Aiapi => "aiapi",
            Dialect::KimiFreeApi => "kimi_free_api",
            Dialect::KimiFreeApiDocumented => "kimi_free_api_documented",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
        }
    }

    /// The error classes this dialect has a native way to say: rendering one of them and
    /// normalizing the answer gives the same class back. Other classes still render (as the
    /// closest thing the provider sends), but may normalize to another class.
    ///
    /// ```
    /// use towline_core::ErrorKind;
    /// use towline_mock::Dialect;
    ///
    /// assert!(Dialect::Anthropic.native_kinds().contains(&ErrorKind::Overloaded));
    /// assert!(!Dialect::KimiFreeApi.native_kinds().contains(&ErrorKind::ContentFiltered));
    /// ```
    pub fn native_kinds(self) -> &'static [ErrorKind] {
        use ErrorKind::*;
        match self {
            Dialect::OpenAi => &[
                Authentication,
                PermissionDenied,
                QuotaExhausted,
                RateLimited,
                Overloaded,
                InvalidRequest,
                ContextLengthExceeded,
                ContentFiltered,
                NotFound,
                Conflict,
                PayloadTooLarge,
                Server,
                Timeout,
            ],
            Dialect::Moonshot => &[
                Authentication,
                PermissionDenied,
                QuotaExhausted,
                RateLimited,
                Overloaded,
                InvalidRequest,
                ContextLengthExceeded,
                ContentFiltered,
                NotFound,
                Server,
                Timeout,
            ],
            Dialect::Mimo => &[
                Authentication,
                PermissionDenied,
                QuotaExhausted,
                RateLimited,
                Overloaded,
                InvalidRequest,
                ContentFiltered,
                NotFound,
                Server,
            ],
            Dialect::KaikoV2 => &[
                Authentication,
                PermissionDenied,
                RateLimited,
                InvalidRequest,
                NotFound,
                Conflict,
                PayloadTooLarge,
                Server,
            ],
            Dialect::Aiapi => &[
                Authentication,
                QuotaExhausted,
                RateLimited,
                InvalidRequest,
                ContentFiltered,
                NotFound,
                Server,
            ],
            Dialect::KimiFreeApi | Dialect::KimiFreeApiDocumented => &[
                Authentication,
                QuotaExhausted,
                RateLimited,
                InvalidRequest,
                NotFound,
                PayloadTooLarge,
                Server,
            ],
            Dialect::Anthropic => &[
                Authentication,
                PermissionDenied,
                QuotaExhausted,
                RateLimited,
                Overloaded,
                InvalidRequest,
                ContextLengthExceeded,
                NotFound,
                PayloadTooLarge,
                Server,
            ],
            Dialect::Gemini => &[
                Authentication,
                PermissionDenied,
                QuotaExhausted,
                RateLimited,
                Overloaded,
                InvalidRequest,
                NotFound,
                Conflict,
                Server,
                Timeout,
            ],
        }
    }

    /// The header that carries the request id in this dialect.
    pub const fn request_id_header(self) -> &'static str {
        match self {
            Dialect::Anthropic => "request-id",
            _ => "x-request-id",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`Dialect`] from a name none has.
///
/// ```
/// let err = "acme".parse::<towline_mock::Dialect>().unwrap_err();
/// assert!(err.to_string().starts_with("unknown dialect `acme`"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown dialect `{0}`; expected one of openai, moonshot, mimo, kaiko_v2, aiapi, \
     kimi_free_api, kimi_free_api_documented, anthropic, gemini"
)]
pub struct UnknownDialect(String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase().replace(['-', '.', ' '], "_");
        let dialect = match name.as_str() {
            "openai" | "open_ai" => Dialect::OpenAi,
            "moonshot" | "kimi" => Dialect::Moonshot,
            "mimo" | "xiaomi_mimo" => Dialect::Mimo,
            "kaiko_v2" | "kaiko" | "kaikov2" => Dialect::KaikoV2,
            "aiapi" | "aiapi_services" => Dialect::Aiapi,
            "kimi_free_api" => Dialect::KimiFreeApi,
            "kimi_free_api_documented" => Dialect::KimiFreeApiDocumented,
            "anthropic" | "claude" => Dialect::Anthropic,
            "gemini" | "google" => Dialect::Gemini,
            _ => return Err(UnknownDialect(s.to_owned())),
        };
        Ok(dialect)
    }
}

impl serde::Serialize for Dialect {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Dialect {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for dialect in Dialect::ALL {
            assert_eq!(dialect.as_str().parse::<Dialect>(), Ok(dialect));
            assert_eq!(
                dialect.as_str().replace('_', "-").parse::<Dialect>(),
                Ok(dialect)
            );
        }
    }

    #[test]
    fn every_dialect_has_native_kinds_that_a_provider_can_send() {
        for dialect in Dialect::ALL {
            let kinds = dialect.native_kinds();
            assert!(kinds.len() >= 7, "{dialect}");
            assert!(kinds.iter().all(|k| !k.is_local()), "{dialect}");
        }
    }
}
