//! Facts of Alibaba Cloud's OpenAPI calls to CAMS that the client and the simulated CAMS both
//! speak: what a GetFlow call names and carries, and the header an answer uses to say when to
//! come back. They live here, below both sides, so that the simulation checks the calls against
//! the same facts the client sends, without either importing the other.

/// The CAMS API version every call names (`x-acs-version`).
pub const API_VERSION: &str = "2020-06-06";
/// The operation this gateway serves (`x-acs-action`).
pub const ACTION_GET_FLOW: &str = "GetFlow";
/// GetFlow's query parameter naming the flow.
pub const FLOW_ID_PARAM: &str = "FlowId";
/// GetFlow's query parameter naming the tenant's CAMS space, when it has one.
pub const CUST_SPACE_ID_PARAM: &str = "CustSpaceId";
/// Response header CAMS uses to say how long to back off, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
