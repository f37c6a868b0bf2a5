use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use http::{Request, Response};
use tokio::time::Instant;
use tower_service::Service;
use towline_core::{ApiKey, Error, KeyExtractor, KeyHash};

use crate::config::{Cost, PerCall};
use crate::future::{CallInfo, ResponseFuture};
use crate::layer::Core;
use crate::store::{Admission, Ask, MemoryStore, Store, StoreStats};

/// Spends each key's budget evenly and obeys what the provider says about the key. Built by
/// [`ThrottleLayer`](crate::ThrottleLayer).
///
/// The decision for a call is taken in [`Service::call`] and, when the call must wait, inside
/// its [`ResponseFuture`]: `poll_ready` only asks the inner service, so one key's wait never
/// holds up another key. In the common case (the key has tokens and nobody waits on it) the
/// decision is a map lookup under a shard read lock and one compare-and-swap, and the inner
/// service is called at once.
///
/// ```
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use towline_throttle::ThrottleLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let svc = ServiceBuilder::new()
///     .layer(ThrottleLayer::builder().rate(100.0).burst(10).build().unwrap())
///     .service(service_fn(|_req: Request<String>| async {
///         Ok::<_, towline_core::Error>(Response::new("ok".to_string()))
///     }));
/// let req = Request::builder().header("authorization", "Bearer sk-1").body(String::new()).unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// assert_eq!(resp.body(), "ok");
/// # }
/// ```
pub struct Throttle<S, K = KeyHash, E = ApiKey, F = PerCall, St = MemoryStore<K>> {
    inner: S,
    core: Arc<Core<K, St>>,
    extractor: E,
    cost: F,
}

impl<S, K, E, F, St> Throttle<S, K, E, F, St> {
    pub(crate) fn from_parts(inner: S, core: Arc<Core<K, St>>, extractor: E, cost: F) -> Self {
        Throttle {
            inner,
            core,
            extractor,
            cost,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Live keys and waiting calls.
    pub fn stats(&self) -> StoreStats
    where
        St: Store<K>,
    {
        self.core.store.stats()
    }
}

impl<S, B, RB, K, E, F, St> Service<Request<B>> for Throttle<S, K, E, F, St>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<Error>,
    E: KeyExtractor<B, Key = K>,
    F: Cost<B>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
    St: Store<K>,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S, B, K, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = self.extractor.extract(&req);
        let now = Instant::now();
        let ask = Ask {
            now,
            cost: self.cost.cost(&req),
            quota: self.core.quota_for(key.as_ref()),
            deadline: self.core.max_wait.and_then(|w| now.checked_add(w)),
            reject_only: self.core.reject_only,
        };
        let mut admit = self.core.store.admit(key.as_ref(), &ask, None);
        let call = CallInfo::new(Arc::clone(&self.core), key, ask);
        // The in-memory store answers at once; asking here lets the common case call the inner
        // service directly, without cloning it. Polling with a no-op waker is fine: a store
        // that is not ready is polled again, with the task's waker, by the response future.
        match Pin::new(&mut admit).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Admission::Go(grant)) => {
                ResponseFuture::go(call, grant, &mut self.inner, req)
            }
            Poll::Ready(admission) => {
                ResponseFuture::decided(call, admission, take_ready(&mut self.inner), req)
            }
            Poll::Pending => {
                ResponseFuture::admitting(call, admit, take_ready(&mut self.inner), req)
            }
        }
    }
}

/// The service that was polled ready goes with the call; a clone stays for the next one.
fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

impl<S: Clone, K, E: Clone, F: Clone, St> Clone for Throttle<S, K, E, F, St> {
    fn clone(&self) -> Self {
        Throttle {
            inner: self.inner.clone(),
            core: Arc::clone(&self.core),
            extractor: self.extractor.clone(),
            cost: self.cost.clone(),
        }
    }
}

impl<S: fmt::Debug, K, E, F, St: fmt::Debug> fmt::Debug for Throttle<S, K, E, F, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("inner", &self.inner)
            .field("core", &*self.core)
            .finish()
    }
}
