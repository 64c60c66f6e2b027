//! The standard Alibaba Cloud environment variables.

use secrecy::SecretString;

use super::{CredentialSource, Credentials, CredentialsError};

pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Reads the process environment; the error names what is missing.
pub fn from_env() -> Result<Credentials, CredentialsError> {
    from_lookup(|name| std::env::var(name).ok())
}

pub fn from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, CredentialsError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    match (get(ENV_ACCESS_KEY_ID), get(ENV_ACCESS_KEY_SECRET)) {
        (Some(id), Some(secret)) => Ok(Credentials::new(
            id.trim(),
            SecretString::from(secret.trim().to_owned()),
            get(ENV_SECURITY_TOKEN).map(|t| SecretString::from(t.trim().to_owned())),
        )
        .with_source(CredentialSource::Environment)),
        (id, secret) => Err(CredentialsError::MissingVariables {
            missing: [
                (id.is_none(), ENV_ACCESS_KEY_ID),
                (secret.is_none(), ENV_ACCESS_KEY_SECRET),
            ]
            .into_iter()
            .filter_map(|(missing, name)| missing.then_some(name))
            .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_are_named() {
        let err = from_lookup(|_| None).expect_err("no env").to_string();
        assert!(
            err.contains(ENV_ACCESS_KEY_ID) && err.contains(ENV_ACCESS_KEY_SECRET),
            "{err}"
        );
        let err = from_lookup(|n| (n == ENV_ACCESS_KEY_ID).then(|| "id".into()))
            .expect_err("no secret")
            .to_string();
        assert!(
            err.contains(ENV_ACCESS_KEY_SECRET) && !err.contains(&format!("{ENV_ACCESS_KEY_ID} ")),
            "{err}"
        );
        let ok = from_lookup(|n| Some(format!("v-{n}"))).expect("all set");
        assert_eq!(ok.security_token(), Some("v-ALIBABA_CLOUD_SECURITY_TOKEN"));
        assert_eq!(ok.source(), CredentialSource::Environment);
    }
}
