/// A validated GetFlow call: which tenant asks for which flow. It is also the key of the cache,
/// of coalescing and of refreshes, so tenants never share an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowQuery {
    pub tenant: super::TenantId,
    pub flow_id: super::FlowId,
}
