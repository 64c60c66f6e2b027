//! `[credentials]`: the chain or one pinned provider; keys that stand in for the standard
//! `ALIBABA_CLOUD_*` variables (and win over them); AssumeRole on top; timeouts.

use reqwest::Url;

use super::{bad, millis};
use crate::{
    config::{ConfigError, settings::CredentialsSettings},
    credentials::{AssumeRoleConfig, CredentialsConfig, ProviderChoice},
};

pub(super) fn credentials(s: &CredentialsSettings) -> Result<CredentialsConfig, ConfigError> {
    let provider = ProviderChoice::parse(&s.provider).ok_or_else(|| {
        bad(
            "credentials.provider",
            format!(
                "{:?} is not one of {}",
                s.provider,
                ProviderChoice::NAMES.join(", ")
            ),
        )
    })?;
    if let Some(secs) = s.duration_seconds
        && !(900..=43_200).contains(&secs)
    {
        return Err(bad(
            "credentials.duration_seconds",
            format!("{secs} is outside STS's 900..=43200 seconds"),
        ));
    }
    for (key, value) in [
        ("credentials.sts_endpoint", &s.sts_endpoint),
        ("credentials.metadata_endpoint", &s.metadata_endpoint),
        ("credentials.uri", &s.uri),
    ] {
        if let Some(value) = value {
            check_url(key, value, key != "credentials.uri")?;
        }
    }
    let text = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
    let switch = |v: Option<bool>| v.map(|b| b.to_string());
    let variables: Vec<(String, String)> = [
        ("ALIBABA_CLOUD_ROLE_ARN", text(&s.role_arn)),
        (
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
            text(&s.oidc_provider_arn),
        ),
        ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", text(&s.oidc_token_file)),
        (
            "ALIBABA_CLOUD_ROLE_SESSION_NAME",
            text(&s.role_session_name),
        ),
        (
            "CAMS_FLOWS_CREDENTIALS_DURATION_SECONDS",
            s.duration_seconds.map(|d| d.to_string()),
        ),
        ("CAMS_FLOWS_CREDENTIALS_POLICY", text(&s.policy)),
        ("ALIBABA_CLOUD_STS_ENDPOINT", text(&s.sts_endpoint)),
        ("ALIBABA_CLOUD_STS_REGION", text(&s.sts_region)),
        (
            "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED",
            switch(s.sts_vpc_endpoint),
        ),
        ("ALIBABA_CLOUD_PROFILE", text(&s.profile)),
        ("ALIBABA_CLOUD_CONFIG_FILE", text(&s.cli_config_file)),
        ("ALIBABA_CLOUD_CREDENTIALS_FILE", text(&s.credentials_file)),
        ("ALIBABA_CLOUD_ECS_METADATA", text(&s.ecs_role_name)),
        (
            "ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT",
            text(&s.metadata_endpoint),
        ),
        ("ALIBABA_CLOUD_IMDSV1_DISABLED", switch(s.imdsv1_disabled)),
        ("ALIBABA_CLOUD_CREDENTIALS_URI", text(&s.uri)),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
    .collect();
    let assume_role = match text(&s.assume_role_arn) {
        Some(role_arn) => Some(AssumeRoleConfig {
            role_arn,
            session_name: text(&s.assume_role_session_name),
            external_id: text(&s.assume_role_external_id),
        }),
        None if s.assume_role_session_name.is_some() => {
            return Err(bad(
                "credentials.assume_role_session_name",
                "needs credentials.assume_role_arn",
            ));
        }
        None if s.assume_role_external_id.is_some() => {
            return Err(bad(
                "credentials.assume_role_external_id",
                "needs credentials.assume_role_arn",
            ));
        }
        None => None,
    };
    Ok(CredentialsConfig {
        provider,
        variables,
        assume_role,
        sts_connect_timeout: millis(
            "credentials.sts_connect_timeout_ms",
            s.sts_connect_timeout_ms,
        )?,
        sts_timeout: millis("credentials.sts_timeout_ms", s.sts_timeout_ms)?,
        metadata_timeout: millis("credentials.metadata_timeout_ms", s.metadata_timeout_ms)?,
        ..CredentialsConfig::default()
    })
}

/// An http(s) URL, or (where `bare_host` allows) a host name alone, as the SDKs take endpoints.
/// The problem never quotes the value of `credentials.uri`: its query may hold a token.
fn check_url(key: &str, value: &str, bare_host: bool) -> Result<(), ConfigError> {
    if bare_host && !value.contains("://") {
        return if value.contains(['/', '?', ' ']) {
            Err(bad(key, format!("{value:?} is neither a URL nor a host")))
        } else {
            Ok(())
        };
    }
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ if bare_host => Err(bad(key, format!("{value:?} is not an http(s) URL"))),
        _ => Err(bad(key, "is not an http(s) URL")),
    }
}
