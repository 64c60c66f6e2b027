//! Whose credentials they are: STS `GetCallerIdentity`. The gateway asks it once at start, with
//! whatever credentials it signs with, for the Alibaba Cloud account's UID, which names the
//! account's state in Redis: the account, not the key pair, owns the CAMS quota.

use serde::Deserialize;

use super::{
    Credentials, CredentialsConfig, CredentialsError, Vars,
    sts::{SERVICE, StsClient, StsSettings},
};
use crate::clock::SharedClock;

/// The caller as `GetCallerIdentity` describes it (the official SDKs'
/// `GetCallerIdentityResponseBody`). Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The Alibaba Cloud account's UID (16 digits), whatever key, user or role asked.
    pub account_id: String,
    /// `Account`, `RAMUser` or `AssumedRoleUser`.
    pub identity_type: String,
    /// `acs:ram::<uid>:user/<name>`, `acs:ram::<uid>:assumed-role/<role>/<session>`, ...
    pub arn: String,
    pub user_id: String,
    pub principal_id: String,
    /// Only for a role's temporary keys.
    pub role_id: Option<String>,
    pub request_id: String,
}

/// The answer as sent; every field is checked in [`IdentityAnswer::into_identity`].
#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct IdentityAnswer {
    request_id: Option<String>,
    account_id: Option<String>,
    user_id: Option<String>,
    arn: Option<String>,
    principal_id: Option<String>,
    identity_type: Option<String>,
    role_id: Option<String>,
}

impl IdentityAnswer {
    /// An identity with an account: `AccountId` is what the gateway needs, and it must be a UID.
    /// The other fields are kept as given (empty when absent): they are only logged.
    pub(crate) fn into_identity(self) -> Result<CallerIdentity, CredentialsError> {
        let account_id = self.account_id.filter(|v| !v.is_empty()).ok_or_else(|| {
            CredentialsError::Malformed {
                service: SERVICE,
                detail: "AccountId is missing".to_owned(),
            }
        })?;
        if !is_account_id(&account_id) {
            return Err(CredentialsError::Malformed {
                service: SERVICE,
                detail: "AccountId is not an account's UID (digits)".to_owned(),
            });
        }
        Ok(CallerIdentity {
            account_id,
            identity_type: self.identity_type.unwrap_or_default(),
            arn: self.arn.unwrap_or_default(),
            user_id: self.user_id.unwrap_or_default(),
            principal_id: self.principal_id.unwrap_or_default(),
            role_id: self.role_id.filter(|v| !v.is_empty()),
            request_id: self.request_id.unwrap_or_default().trim().to_owned(),
        })
    }
}

/// Whether `value` has the shape of an Alibaba Cloud account's UID: digits only (16 of them
/// today; any number up to 32 is taken).
pub fn is_account_id(value: &str) -> bool {
    (1..=32).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_digit())
}

/// Asks STS whose `signer` is, once: at the endpoint `[credentials]` and the variables give STS
/// (`credentials.sts_endpoint`, `credentials.sts_region`, their `ALIBABA_CLOUD_*` variables), and
/// within the STS timeouts (`credentials.sts_connect_timeout_ms`, `credentials.sts_timeout_ms`).
pub async fn caller_identity(
    config: &CredentialsConfig,
    vars: &Vars,
    clock: SharedClock,
    signer: &Credentials,
) -> Result<CallerIdentity, CredentialsError> {
    let vars = config.overlay(vars);
    let settings = StsSettings::from_vars(&vars, None, None, config.sts_timeouts())?;
    StsClient::new(&settings, clock)?
        .get_caller_identity(signer)
        .await
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
