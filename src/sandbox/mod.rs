//! A simulated CAMS: a real HTTP/1.1 server that verifies ACS3-HMAC-SHA256 signatures, nonces,
//! dates and the quota per key and per action the way the Alibaba Cloud gateway does, then
//! answers the four Flow reads (GetFlow, ListFlow, GetFlowPreviewUrl, GetFlowJSONAssest) from a
//! fixed table of sample and fault-injecting flows (see [`flows`]) and a catalogue per space
//! (see [`catalogue`]). It lets the gateway, its CLI and the tests run end to end without an
//! Alibaba Cloud account.
//!
//! Control endpoints, unsigned and only here: `GET /_sandbox/stats`, `GET /_sandbox/requests`,
//! `POST /_sandbox/reset`.

mod action;
mod catalogue;
mod envelope;
mod flows;
mod identity;
mod issuer;
mod keyring;
mod metadata;
mod nonces;
mod samples;
mod server;
mod stats;
mod sts;
mod throttle;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use identity::{Identity, IdentityHandle, IssuedSecrets};
pub use issuer::{Fault, IdentityConfig, IdentityStats, MetadataCall, StsCall};
pub use keyring::{IssuedKey, Keyring};
pub use stats::{ActionStats, RecordedRequest, SandboxStats};

use crate::clock::{self, SharedClock};

/// The simulated Alibaba Cloud account (its UID) that every key of the simulated services
/// belongs to: what the simulated STS answers `GetCallerIdentity` with, and the account
/// `serve --sandbox` names its state in Redis after.
pub const ACCOUNT_ID: &str = "1234567890123456";

/// The credentials the simulated CAMS accepts and its quota.
#[derive(Clone)]
pub struct SandboxConfig {
    pub access_key_id: String,
    pub access_key_secret: SecretString,
    /// When Some, requests must carry this STS token (x-acs-security-token) and x-acs-accesskey-id.
    pub security_token: Option<SecretString>,
    /// Accepted calls per sliding second per AccessKeyId and per action before Throttling.User
    /// (CAMS: 5 for each Flow read).
    pub rps_per_key: u32,
    /// Temporary keys the simulated STS and metadata service issued, accepted until they expire.
    pub keyring: Arc<Keyring>,
    /// The simulated CAMS's own clock: it checks `x-acs-date` against it (within 15 minutes),
    /// expires issued keys by it, sends it as `Date` and dates `PreviewUrlExpires` by it.
    /// [`SandboxConfig::clock_offset_ms`] runs it ahead of the host's or behind.
    pub clock: SharedClock,
}

/// CAMS's documented quota of each Flow read.
const CAMS_RPS_PER_KEY: u32 = 5;

impl SandboxConfig {
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: SecretString::from(access_key_secret.into()),
            security_token: None,
            rps_per_key: CAMS_RPS_PER_KEY,
            keyring: Arc::default(),
            clock: clock::system(),
        }
    }

    /// Runs the simulated CAMS's clock `ms` milliseconds ahead of the host's (negative: behind),
    /// as a CAMS would look to a gateway whose host clock is that far off.
    pub fn clock_offset_ms(&mut self, ms: i64) {
        self.clock = clock::offset(clock::system(), ms);
    }

    /// Fresh random credentials, so a sandbox started from the CLI is not guessable by default.
    pub fn generated() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let secret = uuid::Uuid::new_v4().simple().to_string();
        Self::new(format!("sandbox-{}", &id[..8]), secret)
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"[REDACTED]")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("rps_per_key", &self.rps_per_key)
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

/// A bound, not yet running simulated CAMS.
pub struct Sandbox {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<server::State>,
}

impl Sandbox {
    pub async fn bind(addr: SocketAddr, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Sandbox {
            listener,
            local_addr,
            state: Arc::new(server::State::new(config)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL a client should use: a wildcard bind address is not connectable everywhere,
    /// so it is replaced by loopback.
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    /// Serves until `shutdown` completes. Calls held open on purpose (`sim:hang`, `sim:slow`) are
    /// cut short then, otherwise the graceful shutdown would wait for them forever.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let router = server::router(self.state);
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                state.close();
            })
            .await
    }

    /// Runs on a tokio task until the handle is dropped.
    pub fn spawn(self) -> SandboxHandle {
        let local_addr = self.local_addr;
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(self.run_until(std::future::pending()));
        SandboxHandle {
            local_addr,
            state,
            task,
        }
    }
}

fn endpoint_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// A running sandbox; dropping it stops the server.
pub struct SandboxHandle {
    local_addr: SocketAddr,
    state: Arc<server::State>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SandboxHandle {
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl fmt::Debug for SandboxHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        // Connections run on their own tasks and outlive the aborted accept loop; closing ends
        // the bodies that would otherwise stay open forever.
        self.state.close();
        self.task.abort();
    }
}
