//! Who is calling, and which tenants they may read. The gateway holds credentials that can read
//! every sub-customer's flows, so each caller is limited to its own CustSpaceIds.

mod roles;
mod tenants;
mod xfcc;

use std::{collections::HashMap, fmt, sync::Arc};

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

pub use roles::{Admins, Role};
pub use tenants::{PatternError, TenantSet};
use xfcc::forwarded_uri;

use crate::{
    limits::{CallerLimit, CallerLimits, CallerQuotaMap, Quota},
    server::ConnInfo,
};

/// How callers prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Nobody is asked; every caller may read every tenant. Only when chosen explicitly.
    None,
    /// `authorization: Bearer <key>`; the configuration holds SHA-256 hashes of the keys.
    ApiKey,
    /// The client certificate's URI SAN (SPIFFE ID) or DNS SAN, verified by the gateway's TLS.
    Mtls,
    /// The `URI=` of `x-forwarded-client-cert`, set by a mesh sidecar that verified the peer.
    MeshHeader,
}

impl AuthMode {
    /// The mode as `auth.mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey => "api_key",
            Self::Mtls => "mtls",
            Self::MeshHeader => "mesh_header",
        }
    }
}

/// An authenticated caller.
#[derive(Debug)]
pub struct Caller {
    /// The key's name or the peer's identity; logged, never secret. Shared, because the account
    /// quota's fair queue keys its share by it.
    pub name: Arc<str>,
    pub tenants: TenantSet,
    /// The caller's own rate limit, when one is configured: its state in the callers' limits,
    /// in process or shared by the replicas.
    pub limit: Option<CallerLimit>,
    /// Whether the caller has the `admin` role: it may call `FlowAdminService`.
    pub admin: bool,
}

/// One configured API key: its name, the SHA-256 of the key, and its tenants.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub name: String,
    pub sha256: [u8; 32],
    pub tenants: TenantSet,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

/// The validated `[auth]` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub keys: Vec<ApiKey>,
    /// Peer identities (mtls, mesh_header) and their tenants.
    pub identities: HashMap<String, TenantSet>,
    pub callers: CallerQuotas,
    /// The keys and identities with the `admin` role.
    pub admins: Admins,
    /// Whether the anonymous caller of `none` mode has the `admin` role: only under
    /// `serve --sandbox`, whose callers are the developer's own (see `config::sections::auth`).
    pub anonymous_admin: bool,
}

/// Callers' own rate limits, by key name or identity; `default` for every other caller
/// (`anonymous` included). No limit where neither applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallerQuotas {
    pub default: Option<Quota>,
    pub by_name: HashMap<String, Quota>,
    /// Callers whose own entry says whether their limit is in shadow (evaluated, never
    /// refusing), either way: `false` keeps a caller enforced under `limits.shadow`.
    pub shadowed: HashMap<String, bool>,
}

impl CallerQuotas {
    /// The quota of the caller named `name`, if it has one.
    fn quota(&self, name: &str) -> Option<Quota> {
        self.by_name.get(name).or(self.default.as_ref()).copied()
    }
}

/// The name every caller has in `none` mode.
const ANONYMOUS: &str = "anonymous";

impl AuthConfig {
    pub fn none() -> Self {
        Self {
            mode: AuthMode::None,
            keys: Vec::new(),
            identities: HashMap::new(),
            callers: CallerQuotas::default(),
            admins: Admins::default(),
            anonymous_admin: false,
        }
    }

    /// The quota of every caller the configuration knows and limits (its keys, its identities,
    /// `anonymous`), from which the callers' limits are built. A verified identity it does not
    /// name may read no tenant and is not limited.
    pub fn caller_quotas(&self) -> CallerQuotaMap {
        self.keys
            .iter()
            .map(|key| key.name.as_str())
            .chain(self.identities.keys().map(String::as_str))
            .chain([ANONYMOUS])
            .filter_map(|name| Some((Arc::from(name), self.callers.quota(name)?)))
            .collect()
    }
}

/// Why a call was not authenticated. The texts go to callers: they never echo a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing credential: send `authorization: Bearer <key>`")]
    MissingKey,
    #[error("the API key is not valid")]
    BadKey,
    #[error("no verified client certificate with a URI or DNS name")]
    NoPeerCertificate,
    #[error("missing or malformed x-forwarded-client-cert (no URI=)")]
    NoForwardedIdentity,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingKey | Self::NoPeerCertificate | Self::NoForwardedIdentity => {
                "MISSING_CREDENTIAL"
            }
            Self::BadKey => "INVALID_CREDENTIAL",
        }
    }
}

/// SHA-256 of an API key, as the configuration stores it (lower-case hex).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Who the configuration knows, built once per configuration so that authenticating a call
/// allocates nothing; replaced whole when the configuration is reloaded.
#[derive(Debug)]
struct Known {
    keys: Vec<([u8; 32], Arc<Caller>)>,
    identities: HashMap<String, Arc<Caller>>,
    anonymous: Arc<Caller>,
}

impl Known {
    fn new(config: AuthConfig, limits: &Arc<dyn CallerLimits>) -> Self {
        let quotas = config.callers;
        let admins = config.admins;
        let caller = |name: &str, tenants: TenantSet, admin: bool| {
            let name: Arc<str> = Arc::from(name);
            Arc::new(Caller {
                limit: quotas.quota(&name).map(|_| {
                    CallerLimit::new(Arc::clone(&name), Arc::clone(limits))
                        .shadowed(quotas.shadowed.get(&*name).copied())
                }),
                name,
                tenants,
                admin,
            })
        };
        Self {
            keys: config
                .keys
                .into_iter()
                .map(|key| {
                    let admin = admins.keys.contains(&key.name);
                    (key.sha256, caller(&key.name, key.tenants, admin))
                })
                .collect(),
            identities: config
                .identities
                .into_iter()
                .map(|(id, tenants)| {
                    let known = caller(&id, tenants, admins.identities.contains(&id));
                    (id, known)
                })
                .collect(),
            anonymous: caller(ANONYMOUS, TenantSet::all(), config.anonymous_admin),
        }
    }
}

/// Authenticates calls against the keys and identities of the configuration, which a reload may
/// replace ([`Self::reconfigure`]); the mode is fixed at start.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    known: ArcSwap<Known>,
    limits: Arc<dyn CallerLimits>,
}

impl Authenticator {
    /// `limits` keeps the quotas of [`AuthConfig::caller_quotas`]: each caller with a quota checks
    /// its calls there.
    pub fn new(config: AuthConfig, limits: Arc<dyn CallerLimits>) -> Self {
        Self {
            mode: config.mode,
            known: ArcSwap::from_pointee(Known::new(config, &limits)),
            limits,
        }
    }

    /// Replaces the keys, the identities and the callers' quotas (a configuration reload; the
    /// mode stays). A call authenticated before keeps the caller it was given; the next one is
    /// authenticated against the new configuration.
    pub fn reconfigure(&self, config: AuthConfig) {
        self.limits.reconfigure(config.caller_quotas());
        self.known.store(Arc::new(Known::new(config, &self.limits)));
    }

    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        conn: Option<&ConnInfo>,
    ) -> Result<Arc<Caller>, AuthError> {
        match self.mode {
            AuthMode::None => Ok(Arc::clone(&self.known.load().anonymous)),
            AuthMode::ApiKey => self.by_key(metadata),
            AuthMode::Mtls => {
                let peer = conn
                    .and_then(|c| c.peer.as_ref())
                    .ok_or(AuthError::NoPeerCertificate)?;
                let id = peer
                    .uri_sans
                    .first()
                    .or(peer.dns_sans.first())
                    .ok_or(AuthError::NoPeerCertificate)?;
                Ok(self.identity(id))
            }
            AuthMode::MeshHeader => {
                let header = metadata
                    .get("x-forwarded-client-cert")
                    .and_then(|v| v.to_str().ok())
                    .ok_or(AuthError::NoForwardedIdentity)?;
                let uri = forwarded_uri(header).ok_or(AuthError::NoForwardedIdentity)?;
                Ok(self.identity(&uri))
            }
        }
    }

    /// A verified identity; one the configuration does not name may read no tenant, so it needs
    /// no limit of its own.
    fn identity(&self, id: &str) -> Arc<Caller> {
        match self.known.load().identities.get(id) {
            Some(known) => Arc::clone(known),
            None => Arc::new(Caller {
                name: Arc::from(id),
                tenants: TenantSet::default(),
                limit: None,
                admin: false,
            }),
        }
    }

    fn by_key(&self, metadata: &MetadataMap) -> Result<Arc<Caller>, AuthError> {
        let value = metadata
            .get("authorization")
            .ok_or(AuthError::MissingKey)?
            .to_str()
            .map_err(|_| AuthError::BadKey)?;
        let key = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::BadKey)?;
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Compare with every key, whatever matches first, so timing tells nothing.
        let known = self.known.load();
        let mut found = None;
        for (sha256, caller) in &known.keys {
            if bool::from(sha256.ct_eq(&presented)) {
                found = Some(caller);
            }
        }
        found.map(Arc::clone).ok_or(AuthError::BadKey)
    }
}

#[cfg(test)]
mod tests;
