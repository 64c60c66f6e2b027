//! A profile of the aliyun CLI's `~/.aliyun/config.json` (`ALIBABA_CLOUD_CONFIG_FILE` to name
//! another file; `ALIBABA_CLOUD_PROFILE`, else the file's `current`). Read only; the modes
//! without an interactive login: AK, StsToken, RamRoleArn, EcsRamRole, OIDC and
//! ChainableRamRoleArn (whose `source_profile` is resolved the same way, to any depth without a
//! cycle).

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::{
    CredentialSource, Credentials, CredentialsError, http,
    oidc::{OidcFetch, OidcSettings},
    plan::{Context, Plan, Probe, RoleToAssume},
    vars::expand_home,
};

pub(crate) const ENV_CONFIG_FILE: &str = "ALIBABA_CLOUD_CONFIG_FILE";
pub(crate) const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub(crate) const ENV_DISABLED: &str = "ALIBABA_CLOUD_CLI_PROFILE_DISABLED";

/// Deeper source chains than this are a cycle or a mistake.
const MAX_DEPTH: usize = 8;

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    current: Option<String>,
    #[serde(default)]
    profiles: Vec<Profile>,
}

/// One profile. No `Debug`: it holds the AccessKey secret.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Profile {
    name: String,
    mode: String,
    access_key_id: Option<String>,
    access_key_secret: Option<String>,
    sts_token: Option<String>,
    ram_role_arn: Option<String>,
    ram_session_name: Option<String>,
    expired_seconds: Option<u64>,
    sts_region: Option<String>,
    enable_vpc: Option<bool>,
    source_profile: Option<String>,
    ram_role_name: Option<String>,
    oidc_token_file: Option<String>,
    oidc_provider_arn: Option<String>,
    policy: Option<String>,
    external_id: Option<String>,
}

/// A field's value, if it has one: the CLI writes every field of a profile, the unused ones as
/// `""` (and `expired_seconds` as `0`), and the SDKs read those as unset.
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

pub(crate) fn probe(cx: &Context) -> Result<Probe, CredentialsError> {
    if cx.vars.flag(ENV_DISABLED) {
        return Ok(Probe::Skip(format!("{ENV_DISABLED} is true")));
    }
    let explicit = cx.vars.get(ENV_CONFIG_FILE);
    let path = match (explicit, cx.vars.home()) {
        (Some(path), _) => expand_home(path, &cx.vars),
        (None, Some(home)) => home.join(".aliyun").join("config.json"),
        (None, None) => return Ok(Probe::Skip("HOME not set".to_owned())),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {
            return Ok(Probe::Skip(format!("{} does not exist", path.display())));
        }
        Err(source) => {
            return Err(CredentialsError::Read {
                what: "the aliyun CLI configuration",
                path,
                source,
            });
        }
    };
    let config: ConfigJson =
        serde_json::from_str(&text).map_err(|e| CredentialsError::BadFile {
            path: path.clone(),
            problem: http::json_problem(&e),
        })?;
    let Some(name) = cx
        .vars
        .get(ENV_PROFILE)
        .map(str::to_owned)
        .or_else(|| config.current.clone().filter(|c| !c.is_empty()))
    else {
        return Ok(Probe::Skip(format!(
            "{} names no current profile and {ENV_PROFILE} is not set",
            path.display()
        )));
    };
    let Some(profile) = config.profiles.iter().find(|p| p.name == name) else {
        return Ok(Probe::Skip(format!(
            "profile {name:?} is not in {}",
            path.display()
        )));
    };
    let plan = Resolver {
        cx,
        path: &path,
        profiles: &config.profiles,
    }
    .plan(profile, 0)?;
    Ok(Probe::Use {
        plan,
        tentative: false,
    })
}

struct Resolver<'a> {
    cx: &'a Context,
    path: &'a Path,
    profiles: &'a [Profile],
}

impl Resolver<'_> {
    fn bad(&self, profile: &Profile, problem: impl std::fmt::Display) -> CredentialsError {
        CredentialsError::BadFile {
            path: PathBuf::from(self.path),
            problem: format!("profile {:?}: {problem}", profile.name),
        }
    }

    fn need<'p>(
        &self,
        profile: &'p Profile,
        field: &str,
        value: &'p Option<String>,
    ) -> Result<&'p str, CredentialsError> {
        set(value).ok_or_else(|| self.bad(profile, format!("mode {} needs {field}", profile.mode)))
    }

    fn access_key(&self, p: &Profile, with_token: bool) -> Result<Credentials, CredentialsError> {
        let id = self.need(p, "access_key_id", &p.access_key_id)?;
        let secret = self.need(p, "access_key_secret", &p.access_key_secret)?;
        let token = if with_token {
            Some(SecretString::from(
                self.need(p, "sts_token", &p.sts_token)?.to_owned(),
            ))
        } else {
            None
        };
        Ok(
            Credentials::new(id, SecretString::from(secret.to_owned()), token)
                .with_source(CredentialSource::CliProfile),
        )
    }

    fn plan(&self, p: &Profile, depth: usize) -> Result<Plan, CredentialsError> {
        if depth > MAX_DEPTH {
            return Err(self.bad(p, "source_profile chains loop or run too deep"));
        }
        let duration = p.expired_seconds.filter(|&s| s > 0).map(|s| s.to_string());
        match p.mode.as_str() {
            "AK" => Ok(Plan::Static(self.access_key(p, false)?)),
            "StsToken" => Ok(Plan::Static(self.access_key(p, true)?)),
            "RamRoleArn" => {
                let source = Plan::Static(self.access_key(p, false)?);
                self.assume_role(p, source, duration.as_deref())
            }
            "ChainableRamRoleArn" => {
                let name = self.need(p, "source_profile", &p.source_profile)?;
                let source = self
                    .profiles
                    .iter()
                    .find(|s| s.name == name)
                    .ok_or_else(|| {
                        self.bad(p, format!("source_profile {name:?} does not exist"))
                    })?;
                let source = self.plan(source, depth + 1)?;
                self.assume_role(p, source, duration.as_deref())
            }
            "EcsRamRole" => Ok(Plan::Fetch(Box::new(self.cx.ecs(set(&p.ram_role_name))?))),
            "OIDC" => {
                let settings = OidcSettings {
                    role_arn: self.need(p, "ram_role_arn", &p.ram_role_arn)?,
                    provider_arn: self.need(p, "oidc_provider_arn", &p.oidc_provider_arn)?,
                    token_file: self.need(p, "oidc_token_file", &p.oidc_token_file)?,
                    session_name: set(&p.ram_session_name),
                    duration: duration.as_deref(),
                    policy: set(&p.policy),
                };
                let sts = self.cx.sts(set(&p.sts_region), p.enable_vpc)?;
                Ok(Plan::Fetch(Box::new(OidcFetch::new(
                    &settings,
                    &self.cx.vars,
                    sts,
                    &self.cx.clock,
                )?)))
            }
            other => Err(self.bad(
                p,
                format!(
                    "mode {other:?} is not supported (AK, StsToken, RamRoleArn, EcsRamRole, OIDC \
                     and ChainableRamRoleArn are)"
                ),
            )),
        }
    }

    fn assume_role(
        &self,
        p: &Profile,
        source: Plan,
        duration: Option<&str>,
    ) -> Result<Plan, CredentialsError> {
        self.cx.assume_role(
            source,
            &RoleToAssume {
                role_arn: self.need(p, "ram_role_arn", &p.ram_role_arn)?,
                session_name: set(&p.ram_session_name),
                duration,
                policy: set(&p.policy),
                external_id: set(&p.external_id),
                sts_region: set(&p.sts_region),
                sts_vpc: p.enable_vpc,
            },
        )
    }
}

#[cfg(all(test, feature = "sandbox"))]
#[path = "profile_tests.rs"]
mod tests;
