use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use tower_service::Service;
use towline_core::event::{self, Event, Observer};
use towline_core::{Endpoint, Error, KeyExtractor};

use crate::body::ResponseBody;
use crate::circuit::Admission;
use crate::future::ResponseFuture;
use crate::handle::BreakerHandle;
use crate::key::DescribeKey;
use crate::permit::Permit;
use crate::shared::{Node, Shared};

/// The circuit breaker service: keeps one circuit per key and refuses calls to keys whose
/// circuit is open. Built by [`BreakerLayer`](crate::BreakerLayer).
///
/// Every clone, and every service built by the same layer, shares the same circuits.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use towline_breaker::BreakerLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(BreakerLayer::new())
///     .service(service_fn(|_req: http::Request<()>| async {
///         Ok::<_, towline_core::Error>(http::Response::new(Full::new(Bytes::from("ok"))))
///     }));
/// let req = http::Request::builder().uri("https://api.moonshot.ai/v1/chat/completions").body(()).unwrap();
/// let response = svc.oneshot(req).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub struct Breaker<S, X = Endpoint> {
    inner: S,
    extractor: X,
    shared: Arc<Shared>,
}

impl<S, X> Breaker<S, X> {
    pub(crate) fn new(inner: S, extractor: X, shared: Arc<Shared>) -> Self {
        Breaker {
            inner,
            extractor,
            shared,
        }
    }

    /// A handle to inspect the circuits this breaker shares with its clones and its layer.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.shared))
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, without the breaker.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, X: Clone> Clone for Breaker<S, X> {
    fn clone(&self) -> Self {
        Breaker {
            inner: self.inner.clone(),
            extractor: self.extractor.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, X: fmt::Debug> fmt::Debug for Breaker<S, X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("extractor", &self.extractor)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, X> Breaker<S, X> {
    /// With the default [`Endpoint`] extractor, the circuit of the request's URI authority,
    /// found from the URI's bytes: what [`Endpoint`] extracts (the same `host:port`, the same
    /// circuit), without cloning the `Authority` only to hash and drop it. `None` for every
    /// other extractor, and for the rare requests [`Endpoint`] has to rewrite (user-info in the
    /// URI, a relative URI), which take the general path.
    #[inline]
    fn endpoint_node<B>(&self, req: &Request<B>) -> Option<Arc<Node>>
    where
        X: 'static,
    {
        // Decided at compile time: the type test folds to a constant.
        if !(&self.extractor as &dyn Any).is::<Endpoint>() {
            return None;
        }
        self.shared.authority_node(req.uri().authority()?.as_str())
    }
}

impl<S, X, B, ResBody> Service<Request<B>> for Breaker<S, X>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<Error>,
    X: KeyExtractor<B>,
    X::Key: DescribeKey,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Admission is per key, so it is decided in `call`: one open endpoint must never make
        // the service unready for the others.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let node = match self.endpoint_node(&req) {
            Some(node) => node,
            None => match self.extractor.extract(&req) {
                Some(key) => self.shared.node(key),
                None => match self.shared.unkeyed_node() {
                    Some(node) => node,
                    None => return ResponseFuture::called(self.inner.call(req), None),
                },
            },
        };
        let env = &node.env;
        match node.circuit.admit(&env.policy, || env.now_nanos()) {
            Admission::Rejected { retry_after } => {
                event::emit(req.extensions(), || Event::BreakerRejected { retry_after });
                ResponseFuture::rejected(Error::circuit_open(retry_after))
            }
            Admission::Admitted {
                generation,
                probe,
                change,
            } => {
                let observer = req.extensions().get::<Observer>().cloned();
                if let Some(change) = change {
                    env.report(node.circuit.key(), change, observer.as_ref());
                }
                let permit = Permit::new(node, generation, probe, observer);
                ResponseFuture::called(self.inner.call(req), Some(permit))
            }
        }
    }
}
