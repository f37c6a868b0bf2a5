//! What a request says about itself, read without touching a credential: method, server,
//! redacted URL, GenAI operation, provider and model.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Request, Uri};
use opentelemetry::{KeyValue, Value};

use crate::names::*;

/// The standard method name, or `None` for an extension method (reported as `_OTHER`).
pub(crate) fn method_name(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => return None,
    })
}

/// The method attributes of the HTTP semantic conventions.
pub(crate) fn method_attributes(method: &Method, attrs: &mut impl Push) {
    match method_name(method) {
        Some(name) => attrs.push(KeyValue::new(HTTP_REQUEST_METHOD, name)),
        None => {
            attrs.push(KeyValue::new(HTTP_REQUEST_METHOD, "_OTHER"));
            let original = method.as_str().to_owned();
            attrs.push(KeyValue::new(HTTP_REQUEST_METHOD_ORIGINAL, original));
        }
    }
}

/// The value of `http.request.method` for metrics (never the original of an odd method).
pub(crate) fn method_value(method: &Method) -> &'static str {
    method_name(method).unwrap_or("_OTHER")
}

/// Host and port of the server: the URI's authority (its user-info dropped), else the `Host`
/// header; the port defaults to the scheme's.
#[cfg(test)]
pub(crate) fn server(uri: &Uri, headers: &HeaderMap) -> Option<(Arc<str>, u16)> {
    with_server(uri, headers, |host, port| (host.into(), port))
}

/// The port a URI's scheme implies.
fn default_port(uri: &Uri) -> u16 {
    match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    }
}

/// Calls `f` with the host and port of the server (see [`server`]) without copying the host.
fn with_server<R>(uri: &Uri, headers: &HeaderMap, f: impl FnOnce(&str, u16) -> R) -> Option<R> {
    let default_port = default_port(uri);
    if let Some(host) = uri.host() {
        return Some(f(bare(host), uri.port_u16().unwrap_or(default_port)));
    }
    let header = headers.get(HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = header.parse().ok()?;
    Some(f(
        bare(authority.host()),
        authority.port_u16().unwrap_or(default_port),
    ))
}

/// How many endpoints a layer describes once and remembers.
const REMEMBERED_ENDPOINTS: usize = 4;

/// The description of the first few endpoints a layer sees (most layers see one): a call to
/// one of them compares its authority with a remembered one and clones the description (a
/// reference count), instead of parsing host and port, allocating the host and looking the
/// provider up. Slots are filled once and never change, so reading one is an atomic load; any
/// further endpoint is described afresh on each call, as before, so memory stays bounded.
#[derive(Debug, Default)]
pub(crate) struct Endpoints {
    /// The configured `gen_ai.provider.name`, else guessed from the host.
    provider: Option<Value>,
    slots: [OnceLock<Remembered>; REMEMBERED_ENDPOINTS],
}

/// An endpoint and what identifies it: the URI authority without its user-info (never kept)
/// and the port the scheme implies. Host and port are a function of these two.
#[derive(Debug)]
struct Remembered {
    host_port: Box<str>,
    default_port: u16,
    endpoint: Endpoint,
}

/// A server and the provider behind it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) server: (Arc<str>, u16),
    pub(crate) provider: Option<Value>,
}

impl Endpoints {
    pub(crate) fn new(provider: Option<Value>) -> Self {
        Endpoints {
            provider,
            slots: Default::default(),
        }
    }

    /// The server and provider of a request, `None` when it names no server.
    pub(crate) fn of(&self, uri: &Uri, headers: &HeaderMap) -> Option<Endpoint> {
        // A relative URI names its server in `Host`: rare for a client, described each time.
        let Some(authority) = uri.authority() else {
            return with_server(uri, headers, |host, port| self.describe(host, port));
        };
        let host_port = without_user_info(authority.as_str());
        let default_port = default_port(uri);
        for slot in &self.slots {
            match slot.get() {
                Some(known)
                    if known.default_port == default_port && *known.host_port == *host_port =>
                {
                    return Some(known.endpoint.clone());
                }
                Some(_) => continue,
                None => {
                    let endpoint =
                        with_server(uri, headers, |host, port| self.describe(host, port))?;
                    // Another thread may have filled the slot meanwhile: then this endpoint is
                    // simply not remembered.
                    let _ = slot.set(Remembered {
                        host_port: host_port.into(),
                        default_port,
                        endpoint: endpoint.clone(),
                    });
                    return Some(endpoint);
                }
            }
        }
        with_server(uri, headers, |host, port| self.describe(host, port))
    }

    /// The provider of a request that names no server: the configured one, if any.
    pub(crate) fn provider(&self) -> Option<&Value> {
        self.provider.as_ref()
    }

    fn describe(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            server: (host.into(), port),
            provider: self
                .provider
                .clone()
                .or_else(|| provider_for_host(host).map(Value::from)),
        }
    }
}

/// An authority without its user-info, as `Uri::host` reads it.
fn without_user_info(authority: &str) -> &str {
    // A plain loop: an authority is a few dozen bytes, shorter than `memrchr` pays off at.
    match authority.bytes().rposition(|b| b == b'@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    }
}

/// An IPv6 literal without its URI brackets, as `server.address` wants it.
fn bare(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Query parameters whose values are kept in `url.full` by default: they select an API version
/// or a response format and cannot be credentials.
pub(crate) const DEFAULT_KEPT_QUERY: [&str; 3] = ["api-version", "alt", "beta"];

/// Query parameter names that carry credentials somewhere (Gemini `key`, Azure `api-key`, OAuth
/// `access_token`, signed URLs): never kept, whatever the configuration says.
pub(crate) const CREDENTIAL_QUERY: [&str; 14] = [
    "key",
    "api-key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "auth",
    "authorization",
    "code",
    "password",
    "secret",
    "sig",
    "signature",
    "x-goog-signature",
];

/// `url.full` as the HTTP semantic conventions want it: user-info replaced by
/// `REDACTED:REDACTED`, and every query value replaced by `REDACTED` except those of the `kept`
/// parameters. `None` for a relative URI.
pub(crate) fn redacted_url(uri: &Uri, kept: &[Cow<'static, str>]) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let host_port = without_user_info(authority);
    // Exact without a query (the usual LLM URL), so that turning it into an attribute value
    // (a boxed `str`) does not reallocate it.
    let user_info = if host_port.len() != authority.len() {
        "REDACTED:REDACTED@".len()
    } else {
        0
    };
    let query = uri.query().map_or(0, |q| q.len() + 32);
    let len = scheme.len() + "://".len() + user_info + host_port.len() + uri.path().len() + query;
    let mut url = String::with_capacity(len);
    url.push_str(scheme);
    url.push_str("://");
    if host_port.len() != authority.len() {
        url.push_str("REDACTED:REDACTED@");
    }
    url.push_str(host_port);
    url.push_str(uri.path());
    if let Some(query) = uri.query() {
        url.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                url.push('&');
            }
            match pair.split_once('=') {
                Some((name, value)) => {
                    url.push_str(name);
                    url.push('=');
                    if is_kept(name, kept) {
                        url.push_str(value);
                    } else {
                        url.push_str("REDACTED");
                    }
                }
                // A bare token may be a credential itself.
                None if pair.is_empty() => {}
                None => url.push_str("REDACTED"),
            }
        }
    }
    Some(url)
}

fn is_kept(name: &str, kept: &[Cow<'static, str>]) -> bool {
    kept.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// Whether `name` is a query parameter known to carry credentials.
pub(crate) fn is_credential_query(name: &str) -> bool {
    CREDENTIAL_QUERY
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// The GenAI operation a request path asks for, when it is one of the well-known ones.
pub(crate) fn operation(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    // `memrchr` rather than `rsplit_once(':')`: a byte search, no `char` searcher to set up.
    let action = memchr::memrchr(b':', path.as_bytes()).map(|i| &path[i + 1..]);
    if let Some(action) = action.filter(|a| !a.as_bytes().contains(&b'/')) {
        // Gemini: /v1beta/models/{model}:generateContent
        return match action {
            "generateContent" | "streamGenerateContent" => Some("generate_content"),
            "embedContent" | "batchEmbedContents" => Some("embeddings"),
            _ => None,
        };
    }
    // `/messages`: Anthropic's Messages API.
    let chat = ["/chat/completions", "/responses", "/messages"];
    if chat.iter().any(|suffix| path.ends_with(suffix)) {
        Some("chat")
    } else if path.ends_with("/completions") {
        Some("text_completion")
    } else if path.ends_with("/embeddings") {
        Some("embeddings")
    } else {
        None
    }
}

/// Whether the path asks for a streamed answer by itself (Gemini's `streamGenerateContent`).
pub(crate) fn path_streams(path: &str) -> bool {
    path.ends_with(":streamGenerateContent")
}

/// The model named in the path: Gemini `/models/{model}:action`, Azure
/// `/openai/deployments/{deployment}/...`.
pub(crate) fn path_model(path: &str) -> Option<&str> {
    // Plain byte loops: paths are short, and most (`/v1/chat/completions`) name no model;
    // `str::split` sets up a `char` searcher per segment, `memchr` costs more than it saves.
    // `/` and `:` are ASCII, so every index found is a `char` boundary.
    let len = path.len();
    let mut start = 0;
    while start <= len {
        let end = (path[start..].bytes().position(|b| b == b'/')).map_or(len, |n| start + n);
        let segment = &path[start..end];
        if segment == "models" || segment == "deployments" {
            let next = path.get(end + 1..)?;
            let stop = (next.bytes().position(|b| b == b'/' || b == b':')).unwrap_or(next.len());
            let model = &next[..stop];
            return (!model.is_empty()).then_some(model);
        }
        start = end + 1;
    }
    None
}

/// `gen_ai.provider.name` for the hosts of well-known providers: the semantic conventions'
/// values where they define one, the provider's own lower-case name otherwise.
pub(crate) fn provider_for_host(host: &str) -> Option<&'static str> {
    const EXACT: [(&str, &str); 19] = [
        ("api.openai.com", "openai"),
        ("api.anthropic.com", "anthropic"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("api.deepseek.com", "deepseek"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.groq.com", "groq"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("api.cohere.com", "cohere"),
        ("api.cohere.ai", "cohere"),
        ("api.moonshot.ai", "moonshot"),
        ("api.moonshot.cn", "moonshot"),
        ("openrouter.ai", "openrouter"),
        ("open.bigmodel.cn", "zhipu"),
        ("dashscope.aliyuncs.com", "dashscope"),
        ("dashscope-intl.aliyuncs.com", "dashscope"),
        ("api.xiaomimimo.com", "mimo"),
        ("api.kaiko.ai", "kaiko"),
        ("aiapi.services", "aiapi"),
    ];
    const SUFFIX: [(&str, &str); 4] = [
        (".openai.azure.com", "azure.ai.openai"),
        (".services.ai.azure.com", "azure.ai.inference"),
        ("aiplatform.googleapis.com", "gcp.vertex_ai"),
        (".amazonaws.com", "aws.bedrock"),
    ];
    let host = host.trim_end_matches('.');
    if let Some((_, name)) = EXACT.iter().find(|(h, _)| h.eq_ignore_ascii_case(host)) {
        return Some(name);
    }
    SUFFIX
        .iter()
        .find(|(suffix, _)| {
            host.len() >= suffix.len()
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                && (!suffix.ends_with("amazonaws.com") || host.contains("bedrock"))
        })
        .map(|(_, name)| *name)
}

/// Response headers carrying the provider's request id, in order of preference.
const REQUEST_ID_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("request-id"),
    HeaderName::from_static("apim-request-id"),
    HeaderName::from_static("mistral-correlation-id"),
];

/// The provider's request id from response headers, if it is a short printable token.
///
/// One pass over the response's header names, each compared by length first, rather than one
/// hashed lookup per candidate name: a response has few headers, and most have none of these.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    let rank = |name: &HeaderName| {
        let name = name.as_str();
        REQUEST_ID_HEADERS
            .iter()
            .position(|candidate| candidate.as_str() == name)
    };
    let mut best: Option<(usize, &HeaderName)> = None;
    for name in headers.keys() {
        if let Some(r) = rank(name)
            && best.is_none_or(|(b, _)| r < b)
        {
            best = Some((r, name));
        }
    }
    // The first value, as `HeaderMap::get` gives it.
    headers
        .get(best?.1)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_safe_token(id))
}

/// A short printable identifier: what request ids, error types and codes look like.
pub(crate) fn is_safe_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// An owned attribute value from a borrowed identifier.
pub(crate) fn value_of(s: &str) -> Value {
    Value::String(s.to_owned().into())
}

/// `server.address` and `server.port`, when the server is known.
pub(crate) fn server_attributes(server: Option<&(Arc<str>, u16)>, attrs: &mut impl Push) {
    if let Some((host, port)) = server {
        attrs.push(KeyValue::new(SERVER_ADDRESS, host.clone()));
        attrs.push(KeyValue::new(SERVER_PORT, i64::from(*port)));
    }
}

/// A list of attributes: a span's `Vec` or a metric point's `SmallVec`.
pub(crate) trait Push {
    fn push(&mut self, attr: KeyValue);
}

impl Push for Vec<KeyValue> {
    fn push(&mut self, attr: KeyValue) {
        Vec::push(self, attr);
    }
}

impl<A: smallvec::Array<Item = KeyValue>> Push for smallvec::SmallVec<A> {
    fn push(&mut self, attr: KeyValue) {
        smallvec::SmallVec::push(self, attr);
    }
}

/// How many model names a layer keeps shared copies of.
const REMEMBERED_MODELS: usize = 8;

/// Shared copies of the first few model names a layer sees: a call naming one of them clones
/// it (a reference count) rather than allocating its own copy for its attributes. Filled once,
/// never changed; other names get their own copy, as before.
#[derive(Debug, Default)]
pub(crate) struct Models {
    slots: [OnceLock<Arc<str>>; REMEMBERED_MODELS],
}

impl Models {
    /// `name`, shared.
    pub(crate) fn intern(&self, name: &str) -> Arc<str> {
        for slot in &self.slots {
            let known = slot.get_or_init(|| name.into());
            if **known == *name {
                return known.clone();
            }
        }
        name.into()
    }
}

/// Summary of the request the span and metrics describe, computed once per call.
#[derive(Debug, Clone)]
pub(crate) struct CallInfo {
    pub(crate) method: &'static str,
    pub(crate) server: Option<(Arc<str>, u16)>,
    pub(crate) operation: Option<&'static str>,
    pub(crate) provider: Option<Value>,
    pub(crate) model: Option<Arc<str>>,
    pub(crate) stream: Option<bool>,
}

impl CallInfo {
    /// Attributes describing the server, shared by spans and metrics.
    pub(crate) fn server_attributes(&self, attrs: &mut impl Push) {
        server_attributes(self.server.as_ref(), attrs);
    }

    /// The GenAI attributes known for this call.
    pub(crate) fn gen_ai_attributes(&self, attrs: &mut impl Push) {
        if let Some(op) = self.operation {
            attrs.push(KeyValue::new(GEN_AI_OPERATION_NAME, op));
        }
        if let Some(provider) = &self.provider {
            attrs.push(KeyValue::new(GEN_AI_PROVIDER_NAME, provider.clone()));
        }
        if let Some(model) = &self.model {
            attrs.push(KeyValue::new(GEN_AI_REQUEST_MODEL, model.clone()));
        }
    }

    /// The span name: `{operation} {model}` for GenAI calls, the method otherwise.
    pub(crate) fn span_name(&self) -> Cow<'static, str> {
        match (self.operation, &self.model) {
            // Pushed rather than `format!`ed: the formatting machinery costs several times more.
            (Some(op), Some(model)) => {
                let mut name = String::with_capacity(op.len() + 1 + model.len());
                name.push_str(op);
                name.push(' ');
                name.push_str(model);
                name.into()
            }
            (Some(op), None) => op.into(),
            _ => self.method.into(),
        }
    }
}

/// Reads the cheap parts of `req`'s description (everything but the model).
pub(crate) fn call_info<B>(req: &Request<B>, endpoints: &Endpoints) -> CallInfo {
    let (server, provider) = match endpoints.of(req.uri(), req.headers()) {
        Some(endpoint) => (Some(endpoint.server), endpoint.provider),
        None => (None, endpoints.provider().cloned()),
    };
    CallInfo {
        method: method_value(req.method()),
        operation: operation(req.uri().path()),
        stream: path_streams(req.uri().path()).then_some(true),
        server,
        provider,
        model: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Vec<Cow<'static, str>> {
        DEFAULT_KEPT_QUERY
            .iter()
            .map(|k| Cow::Borrowed(*k))
            .collect()
    }

    #[test]
    fn url_hides_user_info_and_query_values() {
        let uri: Uri = "https://bob:hunter2@api.example.com:8443/v1/chat?key=sk-secret&api-version=2024-10-21&bare"
            .parse()
            .unwrap();
        let url = redacted_url(&uri, &kept()).unwrap();
        assert_eq!(
            url,
            "https://REDACTED:REDACTED@api.example.com:8443/v1/chat?key=REDACTED&api-version=2024-10-21&REDACTED"
        );
        assert_eq!(redacted_url(&"/relative".parse().unwrap(), &kept()), None);
    }

    proptest::proptest! {
        #[test]
        fn url_never_shows_a_query_value_or_password(
            names in proptest::collection::vec("[a-z_-]{1,8}", 0..4),
            secret in "S3CR[A-Za-z0-9]{8,16}",
            kept_name in "[0-9]{1,6}",
        ) {
            // Every parameter, and the user-info, carries the secret; one kept parameter does
            // not.
            let mut query: Vec<String> = names.iter().map(|n| format!("{n}={secret}")).collect();
            query.push(secret.clone());
            query.push(format!("{kept_name}=v1"));
            let uri: Uri = format!("https://u:{secret}@h.example/p?{}", query.join("&")).parse().unwrap();
            let kept = [Cow::Owned(kept_name.clone())];
            let url = redacted_url(&uri, &kept).unwrap();
            proptest::prop_assert!(!url.contains(&secret), "{}", url);
            let kept_pair = format!("{kept_name}=v1");
            proptest::prop_assert!(url.contains(&kept_pair), "{}", url);
        }
    }

    #[test]
    fn server_from_uri_or_host_header() {
        let empty = HeaderMap::new();
        let (host, port) =
            server(&"https://u:p@api.openai.com/v1".parse().unwrap(), &empty).unwrap();
        assert_eq!((&*host, port), ("api.openai.com", 443));
        let (_, port) = server(&"http://127.0.0.1/x".parse().unwrap(), &empty).unwrap();
        assert_eq!(port, 80);
        let (host, port) = server(&"http://[::1]:9000/x".parse().unwrap(), &empty).unwrap();
        assert_eq!((&*host, port), ("::1", 9000));
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "localhost:8080".parse().unwrap());
        let (host, port) = server(&"/v1".parse().unwrap(), &headers).unwrap();
        assert_eq!((&*host, port), ("localhost", 8080));
    }

    #[test]
    fn endpoints_are_remembered_by_authority_and_scheme() {
        let endpoints = Endpoints::new(None);
        let empty = HeaderMap::new();
        let of = |uri: &str| {
            let e = endpoints.of(&uri.parse().unwrap(), &empty).unwrap();
            (e.server.0.to_string(), e.server.1, e.provider)
        };
        let first = of("https://api.openai.com/v1/chat/completions");
        assert_eq!(
            first,
            ("api.openai.com".into(), 443, Some(Value::from("openai")))
        );
        // Remembered: the same description, whatever the user-info or the path.
        assert_eq!(of("https://u:p@api.openai.com/v1/embeddings"), first);
        // The scheme's port is part of what identifies an endpoint.
        assert_eq!(of("http://api.openai.com/v1").1, 80);
        assert_eq!(of("https://api.openai.com:8443/v1").1, 8443);
        // More endpoints than slots are still described right.
        for port in 1..=REMEMBERED_ENDPOINTS as u16 + 2 {
            let (host, p, provider) = of(&format!("http://[::1]:{port}/v1"));
            assert_eq!((host.as_str(), p, provider), ("::1", port, None));
        }
        assert_eq!(of("https://api.openai.com/v1"), first);
        // A configured provider names every endpoint.
        let named = Endpoints::new(Some(Value::from("gateway")));
        let e = named.of(&"http://localhost:4000/v1".parse().unwrap(), &empty);
        assert_eq!(e.unwrap().provider, Some(Value::from("gateway")));
        assert_eq!(
            named.of(&"/v1".parse().unwrap(), &empty).map(|e| e.server),
            None
        );
    }

    #[test]
    fn model_names_are_shared_once_known() {
        let models = Models::default();
        let a = models.intern("kimi-k2");
        assert!(Arc::ptr_eq(&a, &models.intern("kimi-k2")));
        for i in 0..REMEMBERED_MODELS + 2 {
            assert_eq!(&*models.intern(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(&*models.intern("kimi-k2"), "kimi-k2");
    }

    #[test]
    fn operations_of_well_known_paths() {
        assert_eq!(operation("/v1/chat/completions"), Some("chat"));
        assert_eq!(operation("/v1/completions"), Some("text_completion"));
        assert_eq!(operation("/v1/embeddings"), Some("embeddings"));
        assert_eq!(operation("/v1/messages"), Some("chat"));
        assert_eq!(operation("/v1/responses"), Some("chat"));
        assert_eq!(
            operation("/v1beta/models/gemini-2.0-flash:streamGenerateContent"),
            Some("generate_content")
        );
        assert_eq!(operation("/v1/models"), None);
    }

    #[test]
    fn models_in_paths() {
        assert_eq!(
            path_model("/v1beta/models/gemini-2.0-flash:generateContent"),
            Some("gemini-2.0-flash")
        );
        assert_eq!(
            path_model("/openai/deployments/gpt4o-prod/chat/completions"),
            Some("gpt4o-prod")
        );
        assert_eq!(path_model("/v1/chat/completions"), None);
        assert_eq!(path_model("/v1/models"), None);
        assert_eq!(path_model("/v1/models/"), None);
        assert_eq!(path_model("models/m1/x"), Some("m1"));
        assert_eq!(path_model("/deployments/d:x/y"), Some("d"));
        assert_eq!(path_model(""), None);
    }

    #[test]
    fn providers_of_well_known_hosts() {
        assert_eq!(provider_for_host("api.openai.com"), Some("openai"));
        assert_eq!(provider_for_host("API.Moonshot.cn"), Some("moonshot"));
        assert_eq!(
            provider_for_host("my-res.openai.azure.com"),
            Some("azure.ai.openai")
        );
        assert_eq!(
            provider_for_host("bedrock-runtime.us-east-1.amazonaws.com"),
            Some("aws.bedrock")
        );
        assert_eq!(provider_for_host("s3.amazonaws.com"), None);
        assert_eq!(provider_for_host("localhost"), None);
    }

    #[test]
    fn request_ids_must_be_plain_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert("request-id", "req_123".parse().unwrap());
        assert_eq!(request_id(&headers), Some("req_123"));
        headers.insert("x-request-id", "has space".parse().unwrap());
        assert_eq!(request_id(&headers), None);
    }
}
