//! `[admin]` and `[tracing]`: what operators see of the gateway.

use std::net::SocketAddr;

use super::bad;
use crate::config::{ConfigError, settings::AdminSettings};

/// `None` when left out, empty, or `off` (which turns off a listener the image's environment
/// sets).
pub(super) fn admin_listen(s: &AdminSettings) -> Result<Option<SocketAddr>, ConfigError> {
    match s.listen.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(off) if off.eq_ignore_ascii_case("off") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|e| {
            bad(
                "admin.listen",
                format!("{text:?} is not an address (IP:port, or off): {e}"),
            )
        }),
    }
}
