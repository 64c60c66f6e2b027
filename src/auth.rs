//! Who is calling, and which tenants they may read. The gateway holds credentials that can read
//! every sub-customer's flows, so each caller is limited to its own CustSpaceIds.

use std::{collections::HashMap, fmt, sync::Arc};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;

use crate::{domain::TenantId, server::ConnInfo};

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

/// The tenants one caller may query: exact ids, `prefix*` patterns, or `*` for all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSet {
    exact: Vec<String>,
    prefixes: Vec<String>,
    all: bool,
}

impl TenantSet {
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let mut set = Self::default();
        for p in patterns {
            if p == "*" {
                set.all = true;
            } else if let Some(prefix) = p.strip_suffix('*') {
                if prefix.contains('*') {
                    return Err(format!("{p:?}: `*` may only end a pattern"));
                }
                set.prefixes.push(prefix.to_owned());
            } else if p.contains('*') {
                return Err(format!("{p:?}: `*` may only end a pattern"));
            } else {
                TenantId::parse(p.as_str()).map_err(|e| format!("{p:?}: {e}"))?;
                set.exact.push(p.clone());
            }
        }
        Ok(set)
    }

    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    pub fn allows(&self, tenant: &TenantId) -> bool {
        let t = tenant.as_str();
        self.all
            || self.exact.iter().any(|e| e == t)
            || self.prefixes.iter().any(|p| t.starts_with(p))
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's name or the peer's identity; logged, never secret.
    pub name: String,
    pub tenants: TenantSet,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub keys: Vec<ApiKey>,
    /// Peer identities (mtls, mesh_header) and their tenants.
    pub identities: HashMap<String, TenantSet>,
}

impl AuthConfig {
    pub fn none() -> Self {
        Self {
            mode: AuthMode::None,
            keys: Vec::new(),
            identities: HashMap::new(),
        }
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

#[derive(Debug)]
pub struct Authenticator {
    config: AuthConfig,
    anonymous: Arc<Caller>,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            anonymous: Arc::new(Caller {
                name: "anonymous".to_owned(),
                tenants: TenantSet::all(),
            }),
        }
    }

    pub fn authenticate(
        &self,
        metadata: &MetadataMap,
        conn: Option<&ConnInfo>,
    ) -> Result<Arc<Caller>, AuthError> {
        match self.config.mode {
            AuthMode::None => Ok(Arc::clone(&self.anonymous)),
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

    /// A verified identity; one the configuration does not name may read no tenant.
    fn identity(&self, id: &str) -> Arc<Caller> {
        Arc::new(Caller {
            name: id.to_owned(),
            tenants: self.config.identities.get(id).cloned().unwrap_or_default(),
        })
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
        let mut found = None;
        for entry in &self.config.keys {
            if bool::from(entry.sha256.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found
            .map(|entry| {
                Arc::new(Caller {
                    name: entry.name.clone(),
                    tenants: entry.tenants.clone(),
                })
            })
            .ok_or(AuthError::BadKey)
    }
}

/// The `URI=` of the element a sidecar appended last to `x-forwarded-client-cert` (Envoy's
/// format: elements separated by `,`, pairs by `;`, values optionally quoted).
pub fn forwarded_uri(header: &str) -> Option<String> {
    let element = split_unquoted(header, ',').into_iter().last()?;
    split_unquoted(element, ';').into_iter().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("uri") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(|v| v.replace("\\\"", "\""))
            .unwrap_or_else(|| value.to_owned());
        (!value.is_empty()).then_some(value)
    })
}

fn split_unquoted(s: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(p: &[&str]) -> TenantSet {
        TenantSet::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn tenant_patterns() {
        let set = tenants(&["cams-a", "team-*", ""]);
        let t = |s: &str| TenantId::parse(s).expect("id");
        assert!(set.allows(&t("cams-a")));
        assert!(!set.allows(&t("cams-ab")));
        assert!(set.allows(&t("team-x")) && set.allows(&t("team-")));
        assert!(set.allows(&t("")));
        assert!(!set.allows(&t("other")));
        assert!(tenants(&["*"]).allows(&t("anything")));
        assert!(!TenantSet::default().allows(&t("")));
        assert!(TenantSet::parse(&["a*b".into()]).is_err());
        assert!(TenantSet::parse(&["**".into()]).is_err());
    }

    #[test]
    fn forwarded_client_cert() {
        let h = r#"By=spiffe://cluster.local/ns/gw/sa/cams;Hash=abc;Subject="CN=x,O=y";URI=spiffe://cluster.local/ns/billing/sa/api"#;
        assert_eq!(
            forwarded_uri(h).as_deref(),
            Some("spiffe://cluster.local/ns/billing/sa/api")
        );
        // The last element is the one the sidecar in front of the gateway added.
        let two = "URI=spiffe://a,By=x;URI=spiffe://b";
        assert_eq!(forwarded_uri(two).as_deref(), Some("spiffe://b"));
        assert_eq!(
            forwarded_uri(r#"uri="spiffe://q""#).as_deref(),
            Some("spiffe://q")
        );
        assert_eq!(forwarded_uri("Hash=abc"), None);
        assert_eq!(forwarded_uri("URI="), None);
        assert_eq!(forwarded_uri(""), None);
    }

    #[test]
    fn api_keys_are_matched_by_hash() {
        let key = ApiKey {
            name: "billing".into(),
            sha256: Sha256::digest(b"s3cret-key").into(),
            tenants: tenants(&["cams-a"]),
        };
        let auth = Authenticator::new(AuthConfig {
            mode: AuthMode::ApiKey,
            keys: vec![key],
            identities: HashMap::new(),
        });
        let mut md = MetadataMap::new();
        assert_eq!(auth.authenticate(&md, None), Err(AuthError::MissingKey));
        md.insert("authorization", "Bearer wrong".parse().expect("ascii"));
        assert_eq!(auth.authenticate(&md, None), Err(AuthError::BadKey));
        md.insert("authorization", "Basic s3cret-key".parse().expect("ascii"));
        assert_eq!(auth.authenticate(&md, None), Err(AuthError::BadKey));
        md.insert("authorization", "Bearer s3cret-key".parse().expect("ascii"));
        assert_eq!(
            auth.authenticate(&md, None).map(|c| c.name.clone()),
            Ok("billing".into())
        );
        assert_eq!(
            hash_key("s3cret-key"),
            hex::encode(Sha256::digest(b"s3cret-key"))
        );
    }
}
