use http::Response;

/// How many attempts a successful call took, in the response's extensions.
///
/// The retry layer inserts it only when the call took more than one attempt, so that the
/// common path allocates nothing; [`Attempts::of`] reads it, counting 1 when it is absent.
/// (A failed call reports its attempts through the
/// [`Event::RetryStopped`](towline_core::Event::RetryStopped) event, and
/// [`GaveUp::attempts`](towline_core::GaveUp::attempts) when the layer gave up on a deadline or
/// budget.)
///
/// ```
/// use towline_retry::Attempts;
///
/// let mut response = http::Response::new(());
/// assert_eq!(Attempts::of(&response), 1);
/// response.extensions_mut().insert(Attempts(3));
/// assert_eq!(Attempts::of(&response), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempts(pub u32);

impl Attempts {
    /// The attempts the call behind `response` took.
    pub fn of<B>(response: &Response<B>) -> u32 {
        response.extensions().get::<Attempts>().map_or(1, |a| a.0)
    }
}
