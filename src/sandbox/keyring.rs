//! Temporary keys issued by the simulated STS and metadata service. The simulated CAMS accepts
//! them (with their STS token) until they expire and refuses them after, as
//! `InvalidSecurityToken.Expired`; the simulated STS accepts them as AssumeRole signers.

use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// Keys expired this long ago are forgotten (and then unknown, as on the real service).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub struct Keyring {
    keys: Mutex<HashMap<String, Issued>>,
}

/// One issued key. No `Debug`: it holds the secret and the token.
#[derive(Clone)]
pub(crate) struct Issued {
    pub secret: SecretString,
    pub token: SecretString,
    pub expires_at: SystemTime,
    /// Whose key it is: what the simulated STS answers `GetCallerIdentity` with.
    pub role: RoleSession,
}

/// The role session an issued key belongs to (in the simulated account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleSession {
    pub role_name: String,
    pub session_name: String,
}

/// `GET /_sandbox/issued`: what was issued, secrets included, so that tests can search logs for
/// them. The sandbox's own logs never show them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct IssuedKey {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    pub expiration: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("issued", &self.lock().len())
            .finish()
    }
}

impl Keyring {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new key valid for at least `lifetime` from `now`, until the next whole second as STS
    /// writes expiries (so that what the client reads is exactly when it stops working, and a
    /// lifetime of a few seconds is not shortened by most of one).
    pub(crate) fn issue(
        &self,
        now: SystemTime,
        lifetime: Duration,
        role: RoleSession,
    ) -> (String, Issued) {
        let expires = now.checked_add(lifetime).unwrap_or(now);
        let since_epoch = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
        let expires_at = UNIX_EPOCH + Duration::from_secs(secs);
        let id = format!("STS.{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
        let issued = Issued {
            secret: SecretString::from(uuid::Uuid::new_v4().simple().to_string()),
            token: SecretString::from(format!(
                "CAIS{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )),
            expires_at,
            role,
        };
        let mut keys = self.lock();
        keys.retain(|_, k| {
            now.duration_since(k.expires_at)
                .map_or(true, |ago| ago < FORGET_AFTER)
        });
        keys.insert(id.clone(), issued.clone());
        (id, issued)
    }

    pub(crate) fn get(&self, access_key_id: &str) -> Option<Issued> {
        self.lock().get(access_key_id).cloned()
    }

    pub(crate) fn all(&self) -> Vec<IssuedKey> {
        self.lock()
            .iter()
            .map(|(id, k)| IssuedKey {
                access_key_id: id.clone(),
                access_key_secret: k.secret.expose_secret().to_owned(),
                security_token: k.token.expose_secret().to_owned(),
                expiration: crate::acs::format_timestamp(k.expires_at),
            })
            .collect()
    }
}
