//! What the `[credentials]` section decides: the default chain or one pinned provider, settings
//! that stand in for the standard variables, AssumeRole on top, and the timeouts.

use std::{fmt, time::Duration};

use super::{CredentialSource, RefreshPolicy, Vars, http::Timeouts};

/// The chain, or the one provider it is pinned to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProviderChoice {
    /// The official SDKs' order; the first provider that is configured wins.
    #[default]
    Chain,
    Env,
    Oidc,
    CliProfile,
    CredentialsFile,
    EcsRamRole,
    CredentialsUri,
}

impl ProviderChoice {
    /// The chain in the official SDKs' order.
    pub(crate) const CHAIN: [ProviderChoice; 6] = [
        Self::Env,
        Self::Oidc,
        Self::CliProfile,
        Self::CredentialsFile,
        Self::EcsRamRole,
        Self::CredentialsUri,
    ];

    /// The names `credentials.provider` takes.
    pub const NAMES: [&'static str; 7] = [
        "chain",
        "env",
        "oidc",
        "cli_profile",
        "credentials_file",
        "ecs_ram_role",
        "credentials_uri",
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "chain" => Self::Chain,
            "env" => Self::Env,
            "oidc" => Self::Oidc,
            "cli_profile" => Self::CliProfile,
            "credentials_file" => Self::CredentialsFile,
            "ecs_ram_role" => Self::EcsRamRole,
            "credentials_uri" => Self::CredentialsUri,
            _ => return None,
        })
    }

    pub(crate) fn source(self) -> Option<CredentialSource> {
        Some(match self {
            Self::Chain => return None,
            Self::Env => CredentialSource::Environment,
            Self::Oidc => CredentialSource::OidcRoleArn,
            Self::CliProfile => CredentialSource::CliProfile,
            Self::CredentialsFile => CredentialSource::CredentialsFile,
            Self::EcsRamRole => CredentialSource::EcsRamRole,
            Self::CredentialsUri => CredentialSource::CredentialsUri,
        })
    }
}

impl fmt::Display for ProviderChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = match self {
            Self::Chain => 0,
            Self::Env => 1,
            Self::Oidc => 2,
            Self::CliProfile => 3,
            Self::CredentialsFile => 4,
            Self::EcsRamRole => 5,
            Self::CredentialsUri => 6,
        };
        f.write_str(Self::NAMES[index])
    }
}

/// AssumeRole on top of whatever the chain or the pinned provider yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleConfig {
    pub role_arn: String,
    pub session_name: Option<String>,
    pub external_id: Option<String>,
}

/// The validated `[credentials]` section. Its `Default` (the chain) is the section's defaults
/// (`config::sections::credentials`).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialsConfig {
    pub provider: ProviderChoice,
    /// Standard variables set by `[credentials]` keys, which win over the environment's. None of
    /// the keys holds a secret.
    pub variables: Vec<(String, String)>,
    pub assume_role: Option<AssumeRoleConfig>,
    pub sts_connect_timeout: Duration,
    /// Bound on one whole STS (or credentials URI) exchange.
    pub sts_timeout: Duration,
    /// Bound on connecting to, and on each exchange with, the metadata service.
    pub metadata_timeout: Duration,
    pub refresh: RefreshPolicy,
}

/// The variables by name only: a credentials URI may carry a token in its query.
impl fmt::Debug for CredentialsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("provider", &self.provider)
            .field(
                "variables",
                &self
                    .variables
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("assume_role", &self.assume_role)
            .field("sts_connect_timeout", &self.sts_connect_timeout)
            .field("sts_timeout", &self.sts_timeout)
            .field("metadata_timeout", &self.metadata_timeout)
            .field("refresh", &self.refresh)
            .finish()
    }
}

impl CredentialsConfig {
    /// The environment with the `[credentials]` settings over it.
    pub(crate) fn overlay(&self, vars: &Vars) -> Vars {
        let mut vars = vars.clone();
        for (name, value) in &self.variables {
            vars.set(name.clone(), value.clone());
        }
        vars
    }

    pub(crate) fn sts_timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.sts_connect_timeout,
            request: self.sts_timeout,
        }
    }

    pub(crate) fn metadata_timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.metadata_timeout,
            request: self.metadata_timeout,
        }
    }
}
