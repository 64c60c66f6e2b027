//! `[auth]`: who may call, which tenants each caller may read, and each caller's own limits.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{
    bad,
    limits::{quota, weight},
};
use crate::{
    auth::{Admins, ApiKey, AuthConfig, AuthMode, CallerQuotas, Role, TenantSet},
    config::{ConfigError, keys::settings},
    limits::Quota,
    server::TlsSettings,
};

settings! {
    /// `[auth]`: the mode, the callers it knows, and their default limit.
    section struct AuthSettings in "auth." {
        /// How callers authenticate: api_key, mtls, mesh_header or none. Required outside the
        /// sandbox (keys and identities are set in the config file's [auth] section)
        key(value_name = "MODE")
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<AuthModeName>,
        /// Each caller's rate, calls per second, unless its [[auth.keys]] or
        /// [[auth.identities]] entry sets its own
        key(value_name = "RATE", default = "no caller limit")
        #[serde(skip_serializing_if = "Option::is_none")]
        caller_rps: Option<f64>,
        /// Each caller's burst, with --auth-caller-rps
        key(value_name = "N", default = "the rate, at least 1")
        #[serde(skip_serializing_if = "Option::is_none")]
        caller_burst: Option<u32>,
        /// API keys (api_key mode), one [[auth.keys]] entry each; only their hashes are written
        file_only(value_name = "ARRAY", entries = KeySettings::FIELDS)
        #[serde(skip_serializing_if = "Vec::is_empty")]
        keys: Vec<KeySettings>,
        /// Certificate or mesh identities (mtls and mesh_header modes), one [[auth.identities]]
        /// entry each
        file_only(value_name = "ARRAY", entries = IdentitySettings::FIELDS)
        #[serde(skip_serializing_if = "Vec::is_empty")]
        identities: Vec<IdentitySettings>,
    }
}

settings! {
    /// One `[[auth.keys]]` entry.
    entry struct KeySettings in "auth.keys[]." {
        /// The key's name: the caller's name in logs, metrics and limits; unique
        key(value_name = "NAME", default = "required")
        name: String,
        /// The SHA-256 of the key, 64 hex digits (cams-flows hash-key)
        key(value_name = "HEX", default = "required")
        sha256: String,
        /// The tenants the key may read: CustSpaceIds, prefixes ending in *, or * for all
        key(value_name = "PATTERNS", default = "required")
        tenants: Vec<String>,
        /// The caller's own rate, calls per second
        key(value_name = "RATE", default = "auth.caller_rps")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rps: Option<f64>,
        /// The caller's own burst
        key(value_name = "N", default = "the default caller burst, else the rate")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u32>,
        /// The caller's share of the account queue against the other callers, 0.01 to 1000
        key(value_name = "WEIGHT", default = "1")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<f64>,
        /// What the caller may do besides reading: admin lets it purge cached answers of its
        /// tenants (FlowAdminService)
        key(value_name = "ROLES", default = "none")
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roles: Vec<String>,
        /// Evaluate the caller's own limit without refusing (counted and logged, see
        /// limits.shadow)
        key(value_name = "BOOL", default = "limits.shadow")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<bool>,
    }
}

settings! {
    /// One `[[auth.identities]]` entry.
    entry struct IdentitySettings in "auth.identities[]." {
        /// The identity: a client certificate's first URI (or DNS) name, or the URI of the
        /// mesh's x-forwarded-client-cert; the caller's name in logs, metrics and limits
        key(value_name = "ID", default = "required")
        id: String,
        /// The tenants the identity may read: CustSpaceIds, prefixes ending in *, or * for all
        key(value_name = "PATTERNS", default = "required")
        tenants: Vec<String>,
        /// The caller's own rate, calls per second
        key(value_name = "RATE", default = "auth.caller_rps")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rps: Option<f64>,
        /// The caller's own burst
        key(value_name = "N", default = "the default caller burst, else the rate")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burst: Option<u32>,
        /// The caller's share of the account queue against the other callers, 0.01 to 1000
        key(value_name = "WEIGHT", default = "1")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<f64>,
        /// What the caller may do besides reading: admin lets it purge cached answers of its
        /// tenants (FlowAdminService)
        key(value_name = "ROLES", default = "none")
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roles: Vec<String>,
        /// Evaluate the caller's own limit without refusing (counted and logged, see
        /// limits.shadow)
        key(value_name = "BOOL", default = "limits.shadow")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<bool>,
    }
}

/// `auth.mode` as written. The flag used to take clap's spellings (`api-key`) and the file
/// serde's (`api_key`); both stay valid everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AuthModeName {
    None,
    #[serde(alias = "api-key")]
    ApiKey,
    Mtls,
    #[serde(alias = "mesh-header")]
    MeshHeader,
}

impl From<AuthModeName> for AuthMode {
    fn from(name: AuthModeName) -> Self {
        match name {
            AuthModeName::None => Self::None,
            AuthModeName::ApiKey => Self::ApiKey,
            AuthModeName::Mtls => Self::Mtls,
            AuthModeName::MeshHeader => Self::MeshHeader,
        }
    }
}

/// Callers' weights in the account queue, by name.
pub(super) type CallerWeights = HashMap<Arc<str>, f64>;

impl AuthSettings {
    /// `sandbox`: the sandbox's callers are local, so it needs no mode. `tls`: mtls needs client
    /// certificates. Also the callers' weights, which the account queue takes
    /// ([`crate::limits::LimitsConfig::callers`]).
    pub(super) fn validate(
        &self,
        sandbox: bool,
        tls: Option<&TlsSettings>,
    ) -> Result<(AuthConfig, CallerWeights), ConfigError> {
        let mode = match self.mode {
            Some(mode) => AuthMode::from(mode),
            None if sandbox => AuthMode::None,
            None => {
                return Err(bad(
                    "auth.mode",
                    "not set: choose how callers authenticate (api_key, mtls, mesh_header, or \
                     none to let every caller read every tenant)",
                ));
            }
        };
        let default_quota = caller_quota("auth.caller_", self.caller_rps, self.caller_burst, None)?;
        let mut callers = CallerQuotas {
            default: default_quota,
            ..CallerQuotas::default()
        };
        let mut weights = CallerWeights::new();
        let mut admins = Admins::default();
        let mut keys = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let key = |field: &str| format!("auth.keys[{i}].{field}");
            if k.name.trim().is_empty() || keys.iter().any(|e: &ApiKey| e.name == k.name) {
                return Err(bad(
                    key("name"),
                    format!("{:?} must be non-empty and unique", k.name),
                ));
            }
            let sha256 = hex::decode(k.sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    bad(
                        key("sha256"),
                        "must be 64 hex digits: the SHA-256 of the key (`cams-flows hash-key`)",
                    )
                })?;
            let tenants = TenantSet::parse(&k.tenants).map_err(|e| bad(key("tenants"), e))?;
            if let Some(q) = caller_quota(&key(""), k.rps, k.burst, default_quota)? {
                callers.by_name.insert(k.name.clone(), q);
            }
            if let Some(own) = k.shadow {
                callers.shadowed.insert(k.name.clone(), own);
            }
            if let Some(w) = k.weight {
                weights.insert(Arc::from(k.name.as_str()), weight(&key("weight"), w)?);
            }
            if is_admin(&key("roles"), &k.name, &k.roles)? {
                admins.keys.insert(k.name.clone());
            }
            keys.push(ApiKey {
                name: k.name.clone(),
                sha256,
                tenants,
            });
        }
        let mut identities = HashMap::new();
        for (i, id) in self.identities.iter().enumerate() {
            let key = |field: &str| format!("auth.identities[{i}].{field}");
            if id.id.trim().is_empty() || identities.contains_key(&id.id) {
                return Err(bad(
                    key("id"),
                    format!("{:?} must be non-empty and unique", id.id),
                ));
            }
            let tenants = TenantSet::parse(&id.tenants).map_err(|e| bad(key("tenants"), e))?;
            if let Some(q) = caller_quota(&key(""), id.rps, id.burst, default_quota)? {
                callers.by_name.insert(id.id.clone(), q);
            }
            if let Some(own) = id.shadow {
                callers.shadowed.insert(id.id.clone(), own);
            }
            if let Some(w) = id.weight {
                weights.insert(Arc::from(id.id.as_str()), weight(&key("weight"), w)?);
            }
            if is_admin(&key("roles"), &id.id, &id.roles)? {
                admins.identities.insert(id.id.clone());
            }
            identities.insert(id.id.clone(), tenants);
        }
        match mode {
            AuthMode::ApiKey if keys.is_empty() => {
                return Err(bad(
                    "auth.keys",
                    "api_key mode needs at least one [[auth.keys]]",
                ));
            }
            AuthMode::Mtls if tls.is_none_or(|t| t.client_ca_file.is_none()) => {
                return Err(bad(
                    "auth.mode",
                    "mtls needs tls.cert_file, tls.key_file and tls.client_ca_file",
                ));
            }
            AuthMode::Mtls | AuthMode::MeshHeader if identities.is_empty() => {
                return Err(bad(
                    "auth.identities",
                    "mtls and mesh_header modes need at least one [[auth.identities]]",
                ));
            }
            _ => {}
        }
        let auth = AuthConfig {
            mode,
            keys,
            identities,
            callers,
            admins,
            // Without authentication every caller is the same anonymous one, so an admin role
            // would be everybody's: only the sandbox, whose callers are the developer's own and
            // whose CAMS is simulated, grants it (so that purging can be tried there).
            anonymous_admin: sandbox && mode == AuthMode::None,
        };
        Ok((auth, weights))
    }
}

/// Whether `roles` (of the key or identity `who`, at `key`) holds the admin role; an unknown role
/// is a mistake the operator must hear of, not a role silently not granted.
fn is_admin(key: &str, who: &str, roles: &[String]) -> Result<bool, ConfigError> {
    let mut admin = false;
    for name in roles {
        match Role::parse(name.trim()) {
            Some(Role::Admin) => admin = true,
            None => {
                let known: Vec<&str> = Role::ALL.iter().map(|(name, _)| *name).collect();
                return Err(bad(
                    key,
                    format!(
                        "{who:?} has the unknown role {name:?} (known roles: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(admin)
}

/// A caller's quota from its `rps` and `burst`; the burst defaults to the rate (at least 1).
fn caller_quota(
    prefix: &str,
    rps: Option<f64>,
    burst: Option<u32>,
    fallback: Option<Quota>,
) -> Result<Option<Quota>, ConfigError> {
    let rps_key = format!("{prefix}rps");
    let burst_key = format!("{prefix}burst");
    match (rps, burst, fallback) {
        (None, None, fallback) => Ok(fallback),
        (None, Some(_), None) => Err(bad(burst_key, format!("needs {rps_key}"))),
        (None, Some(burst), Some(fallback)) => {
            quota(&rps_key, &burst_key, fallback.rps, burst, None).map(Some)
        }
        (Some(rps), burst, fallback) => {
            let burst = burst
                .or(fallback.map(|f| f.burst.get()))
                .unwrap_or_else(|| (rps.ceil() as u32).max(1));
            quota(&rps_key, &burst_key, rps, burst, None).map(Some)
        }
    }
}
