//! RRSA on ACK: the pod identity webhook mounts an OIDC token (rotated by Kubernetes) and sets
//! the role and provider ARNs; STS `AssumeRoleWithOIDC` trades the token for temporary keys. The
//! token file is read afresh at every refresh, since Kubernetes replaces it while the pod runs.

use std::{path::PathBuf, sync::Arc};

use secrecy::SecretString;

use super::{
    CredentialSource, Credentials, CredentialsError, Fetch,
    error::OidcUnset,
    sts::{Session, StsClient},
    vars::{Vars, expand_home},
};
use crate::clock::SharedClock;

pub(crate) const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
pub(crate) const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
pub(crate) const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";

#[derive(Debug)]
pub(crate) struct OidcFetch {
    sts: Arc<StsClient>,
    session: Session,
    provider_arn: String,
    token_file: PathBuf,
}

/// What the three RRSA variables (or a profile's `OIDC` mode) name.
pub(crate) struct OidcSettings<'a> {
    pub role_arn: &'a str,
    pub provider_arn: &'a str,
    pub token_file: &'a str,
    pub session_name: Option<&'a str>,
    pub duration: Option<&'a str>,
    pub policy: Option<&'a str>,
}

impl OidcFetch {
    pub(crate) fn new(
        settings: &OidcSettings<'_>,
        vars: &Vars,
        sts: Arc<StsClient>,
        clock: &SharedClock,
    ) -> Result<Self, CredentialsError> {
        Ok(Self {
            sts,
            session: Session::new(
                vars,
                clock,
                settings.role_arn,
                settings.session_name,
                settings.duration,
                settings.policy,
            )?,
            provider_arn: settings.provider_arn.to_owned(),
            token_file: expand_home(settings.token_file, vars),
        })
    }

    /// The three variables when all are set; otherwise why RRSA does not apply.
    pub(crate) fn from_env<'a>(vars: &'a Vars) -> Result<OidcSettings<'a>, OidcUnset> {
        let names = [ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE];
        match names.map(|n| vars.get(n)) {
            [Some(role_arn), Some(provider_arn), Some(token_file)] => Ok(OidcSettings {
                role_arn,
                provider_arn,
                token_file,
                // From the environment and `[credentials]`, as every session (`Session::new`).
                session_name: None,
                duration: None,
                policy: None,
            }),
            values => {
                let missing = names
                    .iter()
                    .zip(values)
                    .filter_map(|(name, v)| v.is_none().then_some(*name))
                    .collect();
                Err(OidcUnset { missing })
            }
        }
    }
}

#[async_trait::async_trait]
impl Fetch for OidcFetch {
    fn source(&self) -> CredentialSource {
        CredentialSource::OidcRoleArn
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let path = &self.token_file;
        // A few hundred bytes from a local (projected) volume: read in place, no blocking pool.
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            what: "the OIDC token file",
            path: path.clone(),
            source,
        })?;
        // Kubernetes writes the token without a newline; a hand-made file often has one.
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialsError::BadFile {
                path: path.clone(),
                problem: "the OIDC token file is empty".to_owned(),
            });
        }
        let token = SecretString::from(token.to_owned());
        self.sts
            .assume_role_with_oidc(&self.session, &self.provider_arn, &token)
            .await
    }
}
