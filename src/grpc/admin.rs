//! `cams.flows.v1.FlowAdminService`: the operators' RPCs. Not a read, so not the reads' stack of
//! layers (their metrics and spans are per CAMS action); the same authentication, caller limit,
//! tenant authorization and status mapping, and the `admin` role on top.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{
    call::{Call, Logged, may_read},
    status::to_status,
};
use crate::{
    auth::{Authenticator, Caller},
    cache::{
        FlowCache,
        purge::{Purged, Scope},
    },
    domain::{FlowId, TenantId},
    error::{Error, FieldViolation},
    gateway::Shadow,
    pb::{self, flow_admin_service_server::FlowAdminService},
    telemetry::metrics::{Metrics, PurgeOrigin},
};

/// What the call's log line and metrics say of a purge: its tenant, and no one flow.
impl Logged for pb::InvalidateFlowsRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        None
    }
}

/// Flows one purge may name: a request is bounded like every other.
pub const MAX_FLOWS: usize = 100;

/// `cams.flows.v1.FlowAdminService`.
#[derive(Clone)]
pub struct FlowAdminApi {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Arc<Authenticator>,
    /// `None` when caching is off: nothing to purge.
    cache: Option<FlowCache>,
    /// Whether the cache has a tier the replicas share, whom a purge tells.
    shared: bool,
    max_call: std::time::Duration,
    metrics: Metrics,
    /// The limits in shadow: a purge counts against its caller's limit like any call.
    shadow: Arc<Shadow>,
}

impl std::fmt::Debug for FlowAdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowAdminApi").finish_non_exhaustive()
    }
}

impl FlowAdminApi {
    pub(crate) fn new(
        auth: Arc<Authenticator>,
        cache: Option<FlowCache>,
        shared: bool,
        max_call: std::time::Duration,
        metrics: Metrics,
        shadow: Arc<Shadow>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth,
                cache,
                shared,
                max_call,
                metrics,
                shadow,
            }),
        }
    }

    async fn invalidate(&self, call: &Call<pb::InvalidateFlowsRequest>) -> Result<Purged, Error> {
        let caller = call.admitted_caller(&self.inner.shadow).await?;
        if !caller.admin {
            return Err(Error::AdminRoleRequired {
                caller: caller.name.to_string(),
            });
        }
        let scope = scope(&call.message)?;
        may_read(caller, &scope.tenant)?;
        let Some(cache) = &self.inner.cache else {
            return Ok(Purged::default());
        };
        let (purged, shared) = cache.purge(&scope).await;
        self.inner.metrics.purged(
            scope.is_tenant_wide(),
            PurgeOrigin::Local,
            purged.local,
            purged.shared,
        );
        log(caller, &scope, purged, shared.is_ok());
        shared.map_err(|error| {
            tracing::warn!(%error, "the shared cache could not be purged");
            Error::SharedCacheUnavailable
        })?;
        Ok(purged)
    }
}

fn log(caller: &Caller, scope: &Scope, purged: Purged, shared_ok: bool) {
    tracing::info!(
        caller = &*caller.name,
        tenant = scope.tenant.as_str(),
        flows = scope.flows.len(),
        local = purged.local,
        shared = purged.shared,
        shared_ok,
        "cached answers purged"
    );
}

/// The request checked into a purge's scope; every bad field is named.
fn scope(request: &pb::InvalidateFlowsRequest) -> Result<Scope, Error> {
    let mut violations = Vec::new();
    let tenant = match (request.own_space, request.cust_space_id.is_empty()) {
        (true, true) => Some(TenantId::own_space()),
        (true, false) => {
            violations.push(FieldViolation {
                field: "own_space",
                description: "must not be set with cust_space_id".into(),
            });
            None
        }
        (false, true) => {
            violations.push(FieldViolation {
                field: "cust_space_id",
                description: "must not be empty (set own_space for the account's own space)".into(),
            });
            None
        }
        (false, false) => match TenantId::parse(request.cust_space_id.as_str()) {
            Ok(tenant) => Some(tenant),
            Err(e) => {
                violations.push(FieldViolation {
                    field: "cust_space_id",
                    description: e.to_string(),
                });
                None
            }
        },
    };
    if request.flow_ids.len() > MAX_FLOWS {
        violations.push(FieldViolation {
            field: "flow_ids",
            description: format!(
                "must name at most {MAX_FLOWS} flows, got {}",
                request.flow_ids.len()
            ),
        });
    }
    let mut flows = Vec::new();
    for (i, id) in request.flow_ids.iter().enumerate().take(MAX_FLOWS) {
        match FlowId::parse(id.as_str()) {
            Ok(flow) if !flows.contains(&flow) => flows.push(flow),
            Ok(_) => {}
            Err(e) => violations.push(FieldViolation {
                field: "flow_ids",
                description: format!("[{i}] {e}"),
            }),
        }
    }
    match tenant {
        Some(tenant) if violations.is_empty() => Ok(Scope { tenant, flows }),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

#[tonic::async_trait]
impl FlowAdminService for FlowAdminApi {
    async fn invalidate_flows(
        &self,
        request: Request<pb::InvalidateFlowsRequest>,
    ) -> Result<Response<pb::InvalidateFlowsResponse>, Status> {
        let call = Call::arrived(request, &self.inner.auth, self.inner.max_call);
        match self.invalidate(&call).await {
            Ok(purged) => Ok(Response::new(pb::InvalidateFlowsResponse {
                local_entries: purged.local,
                shared_entries: purged.shared,
                peers_notified: self.inner.shared && self.inner.cache.is_some(),
            })),
            Err(error) => Err(to_status(&error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(space: &str, flows: &[&str], own: bool) -> pb::InvalidateFlowsRequest {
        pb::InvalidateFlowsRequest {
            cust_space_id: space.into(),
            flow_ids: flows.iter().map(|f| (*f).to_owned()).collect(),
            own_space: own,
        }
    }

    fn fields(error: Error) -> Vec<&'static str> {
        match error {
            Error::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn the_space_is_named_once_and_flows_are_checked() {
        let named = scope_of(&request("t", &["a", "b", "a"], false));
        assert_eq!(named.tenant.as_str(), "t");
        assert_eq!(named.flows.len(), 2, "duplicates collapse");
        let own = scope_of(&request("", &[], true));
        assert_eq!(own.tenant, TenantId::own_space());
        assert!(own.is_tenant_wide());
        assert_eq!(
            fields(scope(&request("", &[], false)).expect_err("no space")),
            ["cust_space_id"]
        );
        assert_eq!(
            fields(scope(&request("t", &[], true)).expect_err("both")),
            ["own_space"]
        );
        assert_eq!(
            fields(scope(&request("t", &["ok", ""], false)).expect_err("empty id")),
            ["flow_ids"]
        );
        let many: Vec<String> = (0..=MAX_FLOWS).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            fields(scope(&request("t", &many, false)).expect_err("too many")),
            ["flow_ids"]
        );
    }

    fn scope_of(request: &pb::InvalidateFlowsRequest) -> Scope {
        scope(request).expect("valid")
    }
}
