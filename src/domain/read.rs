//! A validated read: which tenant asks for what. It is also the key of the cache, of coalescing
//! and of refreshes, so tenants never share an answer, nor two reads of different kinds.

use super::{Action, FlowId, TenantId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read {
    pub tenant: TenantId,
    pub what: What,
}

/// What is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum What {
    /// One flow (GetFlow).
    Flow(FlowId),
    /// A flow's preview URL (GetFlowPreviewUrl).
    PreviewUrl(FlowId),
    /// Where a flow's Flow JSON file is (GetFlowJSONAssest).
    JsonAsset(FlowId),
    /// A page of a space's flows (ListFlow).
    List(ListPage),
}

/// A page of ListFlow: the name filter, and the page as CAMS counts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListPage {
    /// Empty: no filter (`FlowName` is then not sent).
    pub flow_name: String,
    /// From 1.
    pub index: u32,
    pub size: u32,
}

impl Read {
    /// GetFlow of `flow_id` in `tenant`'s space.
    pub fn flow(tenant: TenantId, flow_id: FlowId) -> Self {
        Self {
            tenant,
            what: What::Flow(flow_id),
        }
    }

    /// The CAMS operation that answers it.
    pub fn action(&self) -> Action {
        match self.what {
            What::Flow(_) => Action::GetFlow,
            What::PreviewUrl(_) => Action::GetFlowPreviewUrl,
            What::JsonAsset(_) => Action::GetFlowJsonAsset,
            What::List(_) => Action::ListFlow,
        }
    }

    /// The flow it is about, when it is about one.
    pub fn flow_id(&self) -> Option<&FlowId> {
        match &self.what {
            What::Flow(id) | What::PreviewUrl(id) | What::JsonAsset(id) => Some(id),
            What::List(_) => None,
        }
    }

    /// The GetFlow read of the same flow, whose answer carries this read's answer too (a preview
    /// URL is part of a flow); `None` for the others.
    pub fn answered_by_flow(&self) -> Option<Self> {
        match &self.what {
            What::PreviewUrl(id) => Some(Self::flow(self.tenant.clone(), id.clone())),
            _ => None,
        }
    }
}
