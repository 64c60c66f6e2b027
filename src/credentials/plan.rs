//! What the chain and the file-based providers share: what a provider found ([`Plan`]), whether
//! it applies ([`Probe`]), and what providers read and reach their services with ([`Context`]).

use std::sync::Arc;

use super::{
    Credentials, CredentialsError, Fetch, Unchanging, Vars,
    assume_role::AssumeRoleFetch,
    ecs::EcsFetch,
    http::Timeouts,
    sts::{Session, StsClient, StsSettings},
};
use crate::clock::SharedClock;

/// What a provider found: credentials at hand, or a way to fetch them again and again.
#[derive(Debug)]
pub(crate) enum Plan {
    Static(Credentials),
    Fetch(Box<dyn Fetch>),
}

impl Plan {
    /// As the source of an AssumeRole.
    pub(crate) fn into_fetch(self) -> Box<dyn Fetch> {
        match self {
            Self::Static(credentials) => Box::new(Unchanging(credentials)),
            Self::Fetch(fetch) => fetch,
        }
    }
}

/// What one provider makes of the environment.
#[derive(Debug)]
pub(crate) enum Probe {
    /// Not configured, and why.
    Skip(String),
    /// Configured. `tentative` when only a first fetch can tell whether it applies: an unnamed
    /// ECS role on a host that may have no metadata service.
    Use { plan: Plan, tentative: bool },
}

/// What the providers read, and how they reach their services.
pub(crate) struct Context {
    pub vars: Vars,
    pub clock: SharedClock,
    pub sts_timeouts: Timeouts,
    pub metadata_timeouts: Timeouts,
}

impl Context {
    /// An STS client; a profile passes its own region and VPC switch.
    pub(crate) fn sts(
        &self,
        region: Option<&str>,
        vpc: Option<bool>,
    ) -> Result<Arc<StsClient>, CredentialsError> {
        let settings = StsSettings::from_vars(&self.vars, region, vpc, self.sts_timeouts)?;
        Ok(Arc::new(StsClient::new(
            &settings,
            Arc::clone(&self.clock),
        )?))
    }

    pub(crate) fn ecs(&self, role: Option<&str>) -> Result<EcsFetch, CredentialsError> {
        EcsFetch::new(
            &self.vars,
            role,
            self.metadata_timeouts,
            Arc::clone(&self.clock),
        )
    }

    /// The AssumeRole session of a role (see [`Session::new`]).
    pub(crate) fn session(
        &self,
        role_arn: &str,
        session_name: Option<&str>,
        duration: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Session, CredentialsError> {
        Session::new(
            &self.vars,
            &self.clock,
            role_arn,
            session_name,
            duration,
            policy,
        )
    }
}

/// A role to assume (AssumeRole), as a profile, a file section or `[credentials]` names it.
#[derive(Debug, Default)]
pub(crate) struct RoleToAssume<'a> {
    pub role_arn: &'a str,
    pub session_name: Option<&'a str>,
    pub duration: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub external_id: Option<&'a str>,
    /// A profile's own STS region and VPC switch.
    pub sts_region: Option<&'a str>,
    pub sts_vpc: Option<bool>,
}

impl Context {
    /// AssumeRole into `role` with whatever `source` yields, fetched again at each refresh.
    pub(crate) fn assume_role(
        &self,
        source: Plan,
        role: &RoleToAssume<'_>,
    ) -> Result<Plan, CredentialsError> {
        let session = self.session(role.role_arn, role.session_name, role.duration, role.policy)?;
        Ok(Plan::Fetch(Box::new(AssumeRoleFetch::new(
            source.into_fetch(),
            self.sts(role.sts_region, role.sts_vpc)?,
            session,
            role.external_id.map(str::to_owned),
        ))))
    }
}
