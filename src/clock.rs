//! Where wall-clock time is read. Deadlines and rate limits run on Tokio's monotonic clock; the
//! wall clock is needed only where the time leaves the process or comes from outside it: the
//! signed `x-acs-date`, CAMS's `PreviewUrlExpires`, and cache entries shared with other
//! replicas. Reading it through one seam lets tests put the gateway's clock off by minutes.

use std::{fmt, sync::Arc, time::SystemTime};

pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The host's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The host's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}
