//! The call's deadline, as the gateway answers it: whatever is still running at the budget's
//! answer time ends in DEADLINE_EXCEEDED with its details, before the caller's own timer (and
//! the transport's bare answer) fires. The gateway's own waits end earlier, each at its bound
//! from the same budget.

use crate::{
    error::Error,
    grpc::call::{Call, Exchange, Handle, Outcome},
};

pub(crate) struct Bounded<H> {
    pub inner: H,
}

impl<R: Exchange, H: Handle<R>> Handle<R> for Bounded<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        tokio::time::timeout_at(call.budget.answer_by(), self.inner.handle(call))
            .await
            .unwrap_or_else(|_| Err(Error::DeadlineExceeded.into()))
    }
}
