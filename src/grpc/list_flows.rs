//! `ListFlows`'s business: the request checked (its page token against its other fields), then
//! the gateway, then the page's token for the next one.

use super::{
    call::{Answered, Call, Exchange, Handle, Logged, Outcome, Reply, Rpc, may_read},
    page_token::Binding,
    unexpected,
};
use crate::{
    domain::{Action, Data, ListPage, Read, TenantId, What, check_flow_name},
    error::{Error, FieldViolation},
    gateway::Gateway,
    pb,
};

/// Flows per page when the caller asks for none, and at most.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 20;
pub(crate) const MAX_PAGE_SIZE: u32 = 100;

/// `cams.flows.v1.FlowService/ListFlows`.
pub(crate) struct ListFlowsRpc;

impl Exchange for ListFlowsRpc {
    type Request = pb::ListFlowsRequest;
    type Response = pb::ListFlowsResponse;
}

impl Rpc for ListFlowsRpc {
    const ACTION: Action = Action::ListFlow;
}

impl Logged for pb::ListFlowsRequest {
    fn tenant(&self) -> &str {
        &self.cust_space_id
    }

    fn flow_id(&self) -> Option<&str> {
        None
    }
}

impl Answered for pb::ListFlowsResponse {
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

pub(crate) struct ListFlows {
    pub gateway: Gateway,
}

/// The read a request asks for, every bad field named.
fn read(request: &pb::ListFlowsRequest) -> Result<Read, Error> {
    let mut violations = Vec::new();
    let mut bad = |field, description: String| {
        violations.push(FieldViolation { field, description });
    };
    let tenant = TenantId::parse(request.cust_space_id.as_str())
        .map_err(|e| bad("cust_space_id", e.to_string()))
        .ok();
    if let Err(e) = check_flow_name(&request.flow_name) {
        bad("flow_name", e.to_string());
    }
    let size = match request.page_size {
        0 => Some(DEFAULT_PAGE_SIZE),
        n => u32::try_from(n)
            .ok()
            .filter(|n| *n <= MAX_PAGE_SIZE)
            .or_else(|| {
                bad(
                    "page_size",
                    format!("must be between 0 (the default, {DEFAULT_PAGE_SIZE}) and {MAX_PAGE_SIZE}, got {n}"),
                );
                None
            }),
    };
    let (Some(tenant), Some(size), true) = (tenant, size, violations.is_empty()) else {
        return Err(Error::InvalidArgument(violations));
    };
    let binding = Binding {
        tenant: &tenant,
        flow_name: &request.flow_name,
        page_size: size,
    };
    let Some(index) = binding.index(&request.page_token) else {
        return Err(Error::InvalidArgument(vec![FieldViolation {
            field: "page_token",
            description: "is not a token this request was given: tokens are good only with the \
                          cust_space_id, flow_name and page_size of the page they came with"
                .to_owned(),
        }]));
    };
    Ok(Read {
        tenant,
        what: What::List(ListPage {
            flow_name: request.flow_name.clone(),
            index,
            size,
        }),
    })
}

impl Handle<ListFlowsRpc> for ListFlows {
    async fn handle(&self, call: &Call<pb::ListFlowsRequest>) -> Outcome<pb::ListFlowsResponse> {
        let caller = call.admitted_caller(self.gateway.shadow()).await?;
        let query = read(&call.message)?;
        may_read(caller, &query.tenant)?;
        let served = self
            .gateway
            .read(&query, &caller.name, call.budget.answer_by(), &call.noted)
            .await?;
        let (Data::List(flows), What::List(page)) = (&served.answer.data, &query.what) else {
            return Err(unexpected().into());
        };
        // CAMS says nothing of what follows: a full page may have a next one, a short one has
        // none (an empty last page is possible when the flows fill whole pages).
        let next_index = page
            .index
            .checked_add(1)
            .filter(|_| flows.len() >= page.size as usize);
        let next_page_token = if let Some(next_index) = next_index {
            Binding {
                tenant: &query.tenant,
                flow_name: &page.flow_name,
                page_size: page.size,
            }
            .token(next_index)
        } else {
            String::new()
        };
        Ok(Reply {
            message: pb::ListFlowsResponse {
                flows: flows.iter().map(pb::FlowSummary::from).collect(),
                next_page_token,
                request_id: served.answer.request_id.clone(),
            },
            source: served.source,
        })
    }
}
