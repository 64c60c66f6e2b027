//! The end of the drain: once it has run out, every call still running is answered
//! UNAVAILABLE/SHUTTING_DOWN by the gateway, not cut off by a closed connection.

use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    grpc::call::{Call, Exchange, Handle, Outcome},
};

pub(crate) struct Drained<H> {
    pub expired: CancellationToken,
    pub inner: H,
}

impl<R: Exchange, H: Handle<R>> Handle<R> for Drained<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        tokio::select! {
            biased;
            outcome = self.inner.handle(call) => outcome,
            () = self.expired.cancelled() => Err(Error::ShuttingDown.into()),
        }
    }
}
