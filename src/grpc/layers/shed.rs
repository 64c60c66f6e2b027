//! Load shedding: past `server.max_in_flight` calls at once, a new one is refused at once, so
//! that a flood costs a bounded amount of memory and the calls already admitted keep their
//! latency.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::{
    error::Error,
    grpc::call::{Call, Exchange, Handle, Outcome},
};

pub(crate) struct Shed<H> {
    pub in_flight: Arc<Semaphore>,
    pub max_in_flight: usize,
    pub inner: H,
}

impl<R: Exchange, H: Handle<R>> Handle<R> for Shed<H> {
    async fn handle(&self, call: &Call<R::Request>) -> Outcome<R::Response> {
        let Ok(_admitted) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            return Err(Error::Overloaded {
                max_in_flight: self.max_in_flight,
            }
            .into());
        };
        self.inner.handle(call).await
    }
}
