//! The default credential chain, in the official SDKs' order: environment → OIDC (RRSA) → aliyun
//! CLI profile → credentials file → ECS RAM role → credentials URI. The first provider that is
//! configured wins, and a configured provider that fails does not hand over to the next one: on
//! an ACK node with RRSA, falling through to the metadata service would quietly run the gateway
//! as the node's role. When nothing yields credentials, the error lists every provider tried and
//! why it did not apply or failed.

use std::sync::Arc;

use super::{
    CredentialSource, CredentialsConfig, CredentialsError, CredentialsProvider, ProviderChoice,
    StaticCredentials, Tried, Vars, ecs, env, file,
    oidc::OidcFetch,
    plan::{Context, Plan, Probe, RoleToAssume},
    profile,
    refresh::Refreshing,
    uri::{self, UriFetch},
};
use crate::clock::SharedClock;

/// The credentials the configuration calls for, with their first fetch done: a provider that
/// fails here fails the start (`serve` exits 2 with the list of what was tried).
pub async fn resolve(
    config: &CredentialsConfig,
    vars: &Vars,
    clock: SharedClock,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    let cx = Context {
        vars: config.overlay(vars),
        clock,
        sts_timeouts: config.sts_timeouts(),
        metadata_timeouts: config.metadata_timeouts(),
    };
    let order: &[ProviderChoice] = match config.provider {
        ProviderChoice::Chain => &ProviderChoice::CHAIN,
        ref one => std::slice::from_ref(one),
    };
    let mut tried = Vec::new();
    for choice in order {
        let provider = choice.source().unwrap_or(CredentialSource::Environment);
        let failed = |tried: &mut Vec<Tried>, error: &CredentialsError| {
            tried.push(Tried {
                provider,
                outcome: format!("failed: {}", with_causes(error)),
            });
        };
        let (plan, tentative) = match probe(*choice, &cx) {
            Ok(Probe::Skip(why)) => {
                tried.push(Tried {
                    provider,
                    outcome: format!("does not apply: {why}"),
                });
                continue;
            }
            Ok(Probe::Use { plan, tentative }) => (plan, tentative),
            Err(error) => {
                failed(&mut tried, &error);
                return Err(CredentialsError::NoProvider { tried });
            }
        };
        let plan = match assume_role(plan, config, &cx) {
            Ok(plan) => plan,
            Err(error) => {
                failed(&mut tried, &error);
                return Err(CredentialsError::NoProvider { tried });
            }
        };
        match start(plan, config, &cx).await {
            Ok(provider) => return Ok(provider),
            Err(error) if tentative && unreachable(&error) => tried.push(Tried {
                provider,
                outcome: format!("does not apply: {error}"),
            }),
            Err(error) => {
                failed(&mut tried, &error);
                return Err(CredentialsError::NoProvider { tried });
            }
        }
    }
    Err(CredentialsError::NoProvider { tried })
}

/// The error and its causes, each once: the startup message is all an operator sees.
fn with_causes(error: &CredentialsError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn unreachable(error: &CredentialsError) -> bool {
    match error {
        CredentialsError::Source(inner) => inner.is_unreachable(),
        other => other.is_unreachable(),
    }
}

fn probe(choice: ProviderChoice, cx: &Context) -> Result<Probe, CredentialsError> {
    match choice {
        ProviderChoice::Chain => Ok(Probe::Skip("the chain is not one provider".to_owned())),
        ProviderChoice::Env => Ok(
            match env::from_lookup(|n| cx.vars.get(n).map(str::to_owned)) {
                Ok(credentials) => Probe::Use {
                    plan: Plan::Static(credentials),
                    tentative: false,
                },
                Err(CredentialsError::MissingVariables { missing }) => {
                    Probe::Skip(format!("{} not set", missing.join(" and ")))
                }
                Err(other) => return Err(other),
            },
        ),
        ProviderChoice::Oidc => match OidcFetch::from_env(&cx.vars) {
            Err(unset) => Ok(Probe::Skip(unset.to_string())),
            Ok(settings) => {
                let sts = cx.sts(None, None)?;
                let fetch = OidcFetch::new(&settings, &cx.vars, sts, &cx.clock)?;
                Ok(Probe::Use {
                    plan: Plan::Fetch(Box::new(fetch)),
                    tentative: false,
                })
            }
        },
        ProviderChoice::CliProfile => profile::probe(cx),
        ProviderChoice::CredentialsFile => file::probe(cx),
        ProviderChoice::EcsRamRole => {
            if cx.vars.flag(ecs::ENV_DISABLED) {
                return Ok(Probe::Skip(format!("{} is true", ecs::ENV_DISABLED)));
            }
            let fetch = cx.ecs(None)?;
            let tentative = !fetch.role_named();
            Ok(Probe::Use {
                plan: Plan::Fetch(Box::new(fetch)),
                tentative,
            })
        }
        ProviderChoice::CredentialsUri => match cx.vars.get(uri::ENV_URI) {
            None => Ok(Probe::Skip(format!("{} not set", uri::ENV_URI))),
            Some(value) => {
                let fetch = UriFetch::new(value, cx.sts_timeouts, Arc::clone(&cx.clock))?;
                Ok(Probe::Use {
                    plan: Plan::Fetch(Box::new(fetch)),
                    tentative: false,
                })
            }
        },
    }
}

/// `credentials.assume_role_arn`: AssumeRole on top of what was found.
fn assume_role(
    plan: Plan,
    config: &CredentialsConfig,
    cx: &Context,
) -> Result<Plan, CredentialsError> {
    let Some(role) = &config.assume_role else {
        return Ok(plan);
    };
    cx.assume_role(
        plan,
        &RoleToAssume {
            role_arn: &role.role_arn,
            session_name: role.session_name.as_deref(),
            external_id: role.external_id.as_deref(),
            ..RoleToAssume::default()
        },
    )
}

async fn start(
    plan: Plan,
    config: &CredentialsConfig,
    cx: &Context,
) -> Result<Arc<dyn CredentialsProvider>, CredentialsError> {
    match plan {
        Plan::Static(credentials) => Ok(Arc::new(StaticCredentials::new(credentials))),
        Plan::Fetch(fetch) => {
            let first = fetch.fetch().await?;
            if first.expires_at().is_none() {
                // Fetched but never expiring (an STS token from a profile): nothing to refresh.
                return Ok(Arc::new(StaticCredentials::new(first)));
            }
            Ok(Arc::new(Refreshing::new(
                fetch,
                first,
                Arc::clone(&cx.clock),
                config.refresh,
            )))
        }
    }
}

#[cfg(all(test, feature = "sandbox"))]
#[path = "chain_tests.rs"]
mod tests;
