//! The simulated identity services beside the simulated CAMS, on a listener of their own: STS
//! (`AssumeRoleWithOIDC`, `AssumeRole` at `/`, see [`super::sts`]) and the ECS metadata service
//! (`/latest/...`, see [`super::metadata`]). They issue short-lived keys into the keyring the
//! simulated CAMS shares, so that a gateway on RRSA or an ECS role runs end to end locally.
//!
//! Control endpoints, sandbox only: `GET /_sandbox/identity` (what was asked), `GET
//! /_sandbox/issued` (the keys issued, secrets included, for tests that search logs for them),
//! `POST /_sandbox/fault?service=sts|metadata&fault=...` (see [`Fault`]).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::State as Extract,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinHandle};

use super::{Keyring, endpoint_of, keyring::Issued, metadata, sts};
use crate::clock::{self, SharedClock};

/// Enough history for any test without growing without bound.
const LOG_CAPACITY: usize = 1000;

/// What the identity services issue and accept.
#[derive(Clone)]
pub struct IdentityConfig {
    /// Shared with the simulated CAMS, which accepts what is issued here.
    pub keyring: Arc<Keyring>,
    pub clock: SharedClock,
    /// How long issued keys live, whatever `DurationSeconds` asks for: short, to exercise
    /// refreshes.
    pub lifetime: Duration,
    /// The RAM role attached to the simulated ECS instance.
    pub role_name: String,
    /// Long-lived keys that may sign AssumeRole (id, secret), besides the issued ones.
    pub signers: Vec<(String, SecretString)>,
    /// The metadata service answers only with a session token (IMDSv2 only, "hardened mode").
    pub hardened: bool,
}

impl IdentityConfig {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self {
            keyring,
            clock: clock::system(),
            lifetime: Duration::from_secs(900),
            role_name: "cams-flows-sandbox".to_owned(),
            signers: Vec::new(),
            hardened: false,
        }
    }
}

impl fmt::Debug for IdentityConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityConfig")
            .field("lifetime", &self.lifetime)
            .field("role_name", &self.role_name)
            .field(
                "signers",
                &self.signers.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .field("hardened", &self.hardened)
            .finish_non_exhaustive()
    }
}

/// A fault a service answers every call with until it is cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 503 with a `ServiceUnavailable` envelope.
    Unavailable,
    /// This error envelope (for the metadata service, `{"Code": code}`).
    Error { status: u16, code: String },
    /// HTTP 200 with a truncated JSON body.
    Garbage,
    /// Keys that expired a minute ago.
    Expired,
    /// The metadata service refuses session tokens (`PUT /latest/api/token` answers 403).
    TokenRefused,
    /// The metadata service hands out session tokens but refuses reads that carry one (401).
    TokenRejected,
}

/// One STS call as the simulated STS saw it. The OIDC token only as a SHA-256 prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StsCall {
    pub action: String,
    pub role_arn: String,
    pub session_name: String,
    pub token_sha256: Option<String>,
    pub signer: Option<String>,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataCall {
    pub method: String,
    pub path: String,
    pub with_token: bool,
    pub status: u16,
}

/// `GET /_sandbox/identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityStats {
    pub sts: Vec<StsCall>,
    pub metadata: Vec<MetadataCall>,
}

pub(super) struct State {
    pub config: IdentityConfig,
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    stats: IdentityStats,
    sts_fault: Option<Fault>,
    metadata_fault: Option<Fault>,
    /// Metadata session tokens handed out (no `Debug` on the books).
    session_tokens: HashSet<String>,
    /// AssumeRole nonces seen, oldest first.
    nonces: VecDeque<String>,
}

impl State {
    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn sts_fault(&self) -> Option<Fault> {
        self.books().sts_fault.clone()
    }

    pub(super) fn metadata_fault(&self) -> Option<Fault> {
        self.books().metadata_fault.clone()
    }

    pub(super) fn record_sts(&self, call: StsCall) {
        push(&mut self.books().stats.sts, call);
    }

    pub(super) fn record_metadata(&self, call: MetadataCall) {
        push(&mut self.books().stats.metadata, call);
    }

    pub(super) fn new_session_token(&self) -> String {
        let token = format!("imds-{}", uuid::Uuid::new_v4().simple());
        self.books().session_tokens.insert(token.clone());
        token
    }

    pub(super) fn known_session_token(&self, token: &str) -> bool {
        self.books().session_tokens.contains(token)
    }

    /// False when the nonce was seen already.
    pub(super) fn fresh_nonce(&self, nonce: &str) -> bool {
        let mut books = self.books();
        if books.nonces.iter().any(|n| n == nonce) {
            return false;
        }
        if books.nonces.len() >= LOG_CAPACITY {
            books.nonces.pop_front();
        }
        books.nonces.push_back(nonce.to_owned());
        true
    }

    /// Keys for a caller; already expired under [`Fault::Expired`].
    pub(super) fn issue(&self, fault: Option<&Fault>) -> (String, Issued) {
        let now = self.config.clock.now();
        if fault == Some(&Fault::Expired) {
            let past = now.checked_sub(Duration::from_secs(120)).unwrap_or(now);
            return self.config.keyring.issue(past, Duration::from_secs(60));
        }
        self.config.keyring.issue(now, self.config.lifetime)
    }

    /// The secret of an AssumeRole signer with its STS token if it has one; `None` if unknown.
    pub(super) fn signer(&self, id: &str) -> Option<(SecretString, Option<Issued>)> {
        if let Some((_, secret)) = self.config.signers.iter().find(|(s, _)| s == id) {
            return Some((secret.clone(), None));
        }
        let issued = self.config.keyring.get(id)?;
        Some((issued.secret.clone(), Some(issued)))
    }
}

fn push<T>(log: &mut Vec<T>, item: T) {
    if log.len() >= LOG_CAPACITY {
        log.remove(0);
    }
    log.push(item);
}

fn router(state: Arc<State>) -> Router {
    let clock = Arc::clone(&state.config.clock);
    Router::new()
        .route("/", any(sts::handle))
        .route("/latest/api/token", any(metadata::token))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(metadata::role),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(metadata::credentials),
        )
        .route("/_sandbox/identity", get(stats))
        .route("/_sandbox/issued", get(issued))
        .route("/_sandbox/fault", post(fault))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(axum::middleware::map_response(move |response| {
            std::future::ready(super::server::dated(&clock, response))
        }))
}

async fn stats(Extract(state): Extract<Arc<State>>) -> Response {
    Json(state.books().stats.clone()).into_response()
}

/// `GET /_sandbox/issued`: every secret the identity services handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedSecrets {
    pub keys: Vec<super::IssuedKey>,
    pub metadata_tokens: Vec<String>,
}

async fn issued(Extract(state): Extract<Arc<State>>) -> Response {
    Json(IssuedSecrets {
        keys: state.config.keyring.all(),
        metadata_tokens: state.books().session_tokens.iter().cloned().collect(),
    })
    .into_response()
}

/// `?service=sts|metadata&fault=unavailable|garbage|expired|token_refused|token_rejected|none`, or
/// `fault=error&status=<n>&code=<Code>`.
async fn fault(Extract(state): Extract<Arc<State>>, uri: Uri) -> Response {
    let params: HashMap<String, String> =
        crate::acs::v3::parse_query(uri.query().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .collect();
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let fault = match param("fault") {
        "none" | "" => None,
        "unavailable" => Some(Fault::Unavailable),
        "garbage" => Some(Fault::Garbage),
        "expired" => Some(Fault::Expired),
        "token_refused" => Some(Fault::TokenRefused),
        "token_rejected" => Some(Fault::TokenRejected),
        "error" => Some(Fault::Error {
            status: param("status").parse().unwrap_or(400),
            code: param("code").to_owned(),
        }),
        _ => return (StatusCode::BAD_REQUEST, "unknown fault").into_response(),
    };
    let mut books = state.books();
    match param("service") {
        "sts" => books.sts_fault = fault,
        "metadata" => books.metadata_fault = fault,
        _ => return (StatusCode::BAD_REQUEST, "service is sts or metadata").into_response(),
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The simulated STS and metadata service, bound and not yet running.
pub struct Identity {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
}

impl Identity {
    pub async fn bind(addr: SocketAddr, config: IdentityConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            state: Arc::new(State {
                config,
                books: Mutex::default(),
            }),
        })
    }

    /// The URL for `ALIBABA_CLOUD_STS_ENDPOINT` and `ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Runs on a tokio task until the handle is dropped.
    pub fn spawn(self) -> IdentityHandle {
        let local_addr = self.local_addr;
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(self.run_until(std::future::pending()));
        IdentityHandle {
            local_addr,
            state,
            task,
        }
    }
}

/// A running simulated STS and metadata service; dropping it stops them.
pub struct IdentityHandle {
    local_addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<std::io::Result<()>>,
}

impl IdentityHandle {
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    pub fn set_sts_fault(&self, fault: Option<Fault>) {
        self.state.books().sts_fault = fault;
    }

    pub fn set_metadata_fault(&self, fault: Option<Fault>) {
        self.state.books().metadata_fault = fault;
    }

    pub fn stats(&self) -> IdentityStats {
        self.state.books().stats.clone()
    }

    pub fn issued(&self) -> Vec<super::IssuedKey> {
        self.state.config.keyring.all()
    }
}

impl fmt::Debug for IdentityHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for IdentityHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
