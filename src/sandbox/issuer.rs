//! The state of the simulated identity services: what they are configured to issue and accept,
//! the faults they are told to answer with, and what they were asked.

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{
    ACCOUNT_ID, Keyring,
    keyring::{Issued, RoleSession},
};
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
    /// The simulated account every key here belongs to, the signers' and the issued ones: what
    /// `GetCallerIdentity` answers, and what the ARNs of the issued sessions name.
    pub account_id: String,
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
            account_id: ACCOUNT_ID.to_owned(),
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
            .field("account_id", &self.account_id)
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

    /// Keys of `role` for a caller; already expired under [`Fault::Expired`].
    pub(super) fn issue(&self, fault: Option<&Fault>, role: RoleSession) -> (String, Issued) {
        let now = self.config.clock.now();
        if fault == Some(&Fault::Expired) {
            let past = now.checked_sub(Duration::from_secs(120)).unwrap_or(now);
            return self
                .config
                .keyring
                .issue(past, Duration::from_secs(60), role);
        }
        self.config.keyring.issue(now, self.config.lifetime, role)
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

impl State {
    pub(super) fn new(config: IdentityConfig) -> Self {
        Self {
            config,
            books: Mutex::default(),
        }
    }

    pub(super) fn set_sts_fault(&self, fault: Option<Fault>) {
        self.books().sts_fault = fault;
    }

    pub(super) fn set_metadata_fault(&self, fault: Option<Fault>) {
        self.books().metadata_fault = fault;
    }

    pub(super) fn stats(&self) -> IdentityStats {
        self.books().stats.clone()
    }

    pub(super) fn session_tokens(&self) -> Vec<String> {
        self.books().session_tokens.iter().cloned().collect()
    }
}
