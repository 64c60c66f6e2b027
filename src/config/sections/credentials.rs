//! `[credentials]`: the chain or one pinned provider; keys that stand in for the standard
//! `ALIBABA_CLOUD_*` variables (and win over them); AssumeRole on top; timeouts.

use reqwest::Url;

use super::{bad, millis, valid_defaults};
use crate::{
    config::{ConfigError, keys::settings},
    credentials::{AssumeRoleConfig, CredentialsConfig, ProviderChoice, RefreshPolicy},
};

settings! {
    /// `[credentials]`: the chain or one provider, and settings that stand in for the standard
    /// `ALIBABA_CLOUD_*` variables (none of them a secret: keys stay in the environment or
    /// files).
    section struct CredentialsSettings in "credentials." {
        /// Where CAMS credentials come from: chain (the Alibaba Cloud default chain), or one
        /// provider pinned: env, oidc, cli_profile, credentials_file, ecs_ram_role,
        /// credentials_uri
        key(value_name = "NAME")
        provider: String = "chain".to_owned(),
        /// RRSA role to assume with the OIDC token
        key(value_name = "ARN", stands_in_for = "ALIBABA_CLOUD_ROLE_ARN")
        #[serde(skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
        /// RRSA OIDC provider
        key(value_name = "ARN", stands_in_for = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN")
        #[serde(skip_serializing_if = "Option::is_none")]
        oidc_provider_arn: Option<String>,
        /// RRSA OIDC token file, read again at every refresh
        key(value_name = "FILE", stands_in_for = "ALIBABA_CLOUD_OIDC_TOKEN_FILE")
        #[serde(skip_serializing_if = "Option::is_none")]
        oidc_token_file: Option<String>,
        /// STS session name
        key(
            value_name = "NAME",
            stands_in_for = "ALIBABA_CLOUD_ROLE_SESSION_NAME",
            default = "cams-flows-<unix time>",
        )
        #[serde(skip_serializing_if = "Option::is_none")]
        role_session_name: Option<String>,
        /// Lifetime STS is asked for, 900 to 43200 (OIDC and AssumeRole)
        key(value_name = "SECONDS", default = "3600")
        #[serde(skip_serializing_if = "Option::is_none")]
        duration_seconds: Option<u64>,
        /// A RAM policy that narrows the STS session (OIDC and AssumeRole)
        key(value_name = "JSON")
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
        /// STS endpoint, a URL or a host
        key(
            value_name = "URL",
            stands_in_for = "ALIBABA_CLOUD_STS_ENDPOINT",
            default = "from credentials.sts_region, else sts.aliyuncs.com",
        )
        #[serde(skip_serializing_if = "Option::is_none")]
        sts_endpoint: Option<String>,
        /// STS region: sts.<region>.aliyuncs.com
        key(value_name = "REGION", stands_in_for = "ALIBABA_CLOUD_STS_REGION")
        #[serde(skip_serializing_if = "Option::is_none")]
        sts_region: Option<String>,
        /// Use sts-vpc.<region>.aliyuncs.com (needs credentials.sts_region)
        key(value_name = "BOOL", stands_in_for = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED")
        #[serde(skip_serializing_if = "Option::is_none")]
        sts_vpc_endpoint: Option<bool>,
        /// Profile of the aliyun CLI config, or section of the credentials file
        key(value_name = "NAME", stands_in_for = "ALIBABA_CLOUD_PROFILE")
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// The aliyun CLI config
        key(
            value_name = "FILE",
            stands_in_for = "ALIBABA_CLOUD_CONFIG_FILE",
            default = "~/.aliyun/config.json",
        )
        #[serde(skip_serializing_if = "Option::is_none")]
        cli_config_file: Option<String>,
        /// The credentials file
        key(
            value_name = "FILE",
            stands_in_for = "ALIBABA_CLOUD_CREDENTIALS_FILE",
            default = "~/.alibabacloud/credentials.ini",
        )
        #[serde(skip_serializing_if = "Option::is_none")]
        credentials_file: Option<String>,
        /// The ECS instance's RAM role, which saves a metadata request
        key(value_name = "NAME", stands_in_for = "ALIBABA_CLOUD_ECS_METADATA")
        #[serde(skip_serializing_if = "Option::is_none")]
        ecs_role_name: Option<String>,
        /// ECS metadata service
        key(
            value_name = "URL",
            stands_in_for = "ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT",
            default = "http://100.100.100.200",
        )
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata_endpoint: Option<String>,
        /// Never read the metadata service without a session token
        key(value_name = "BOOL", stands_in_for = "ALIBABA_CLOUD_IMDSV1_DISABLED")
        #[serde(skip_serializing_if = "Option::is_none")]
        imdsv1_disabled: Option<bool>,
        /// URL that answers temporary keys
        key(value_name = "URL", stands_in_for = "ALIBABA_CLOUD_CREDENTIALS_URI")
        #[serde(skip_serializing_if = "Option::is_none")]
        uri: Option<String>,
        /// Assume this RAM role (AssumeRole) with whatever credentials the provider yields
        key(value_name = "ARN")
        #[serde(skip_serializing_if = "Option::is_none")]
        assume_role_arn: Option<String>,
        /// Session name of credentials.assume_role_arn
        key(value_name = "NAME")
        #[serde(skip_serializing_if = "Option::is_none")]
        assume_role_session_name: Option<String>,
        /// External id of credentials.assume_role_arn
        key(value_name = "ID")
        #[serde(skip_serializing_if = "Option::is_none")]
        assume_role_external_id: Option<String>,
        /// Connect timeout towards STS and the credentials URI (the official SDKs' default)
        key(value_name = "MS")
        sts_connect_timeout_ms: u64 = 5_000,
        /// Bound on one exchange with STS or the credentials URI (the official SDKs' default)
        key(value_name = "MS")
        sts_timeout_ms: u64 = 10_000,
        /// Connect timeout towards the ECS metadata service, and bound on each exchange with it
        /// (the official SDKs' default)
        key(value_name = "MS")
        metadata_timeout_ms: u64 = 1_000,
    }
}

/// The chain, with the `[credentials]` defaults.
impl Default for CredentialsConfig {
    fn default() -> Self {
        valid_defaults("credentials", CredentialsSettings::default().validate())
    }
}

impl CredentialsSettings {
    pub(super) fn validate(&self) -> Result<CredentialsConfig, ConfigError> {
        credentials(self)
    }
}

fn credentials(s: &CredentialsSettings) -> Result<CredentialsConfig, ConfigError> {
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
        refresh: RefreshPolicy::default(),
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
