//! Who may call, and which tenants each caller may read.

use std::collections::HashMap;

use super::{bad, limits::quota};
use crate::{
    auth::{ApiKey, AuthConfig, AuthMode, CallerQuotas, TenantSet},
    config::{ConfigError, settings::AuthSettings},
    limits::Quota,
    server::TlsSettings,
};

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

/// `sandbox`: the sandbox's callers are local, so it needs no mode. `tls`: mtls needs client
/// certificates.
pub(super) fn auth(
    s: &AuthSettings,
    sandbox: bool,
    tls: Option<&TlsSettings>,
) -> Result<AuthConfig, ConfigError> {
    let mode = match s.mode {
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
    let default_quota = caller_quota("auth.caller_", s.caller_rps, s.caller_burst, None)?;
    let mut callers = CallerQuotas {
        default: default_quota,
        by_name: HashMap::new(),
    };
    let mut keys = Vec::new();
    for (i, k) in s.keys.iter().enumerate() {
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
        keys.push(ApiKey {
            name: k.name.clone(),
            sha256,
            tenants,
        });
    }
    let mut identities = HashMap::new();
    for (i, id) in s.identities.iter().enumerate() {
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
    Ok(AuthConfig {
        mode,
        keys,
        identities,
        callers,
    })
}
