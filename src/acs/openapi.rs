//! Facts of Alibaba Cloud's OpenAPI calls to CAMS that the client and the simulated CAMS both
//! speak: what the Flow reads name and carry, and the header an answer uses to say when to come
//! back. They live here, below both sides, so that the simulation checks the calls against the
//! same facts the client sends, without either importing the other.

/// The CAMS API version every call names (`x-acs-version`).
pub const API_VERSION: &str = "2020-06-06";
/// The Flow reads (`x-acs-action`). `GetFlowJSONAssest` is how CAMS spells it.
pub const ACTION_GET_FLOW: &str = "GetFlow";
pub const ACTION_LIST_FLOW: &str = "ListFlow";
pub const ACTION_GET_FLOW_PREVIEW_URL: &str = "GetFlowPreviewUrl";
pub const ACTION_GET_FLOW_JSON_ASSET: &str = "GetFlowJSONAssest";
/// The query parameter naming the flow (every read but ListFlow).
pub const FLOW_ID_PARAM: &str = "FlowId";
/// The query parameter naming the tenant's CAMS space, when it has one.
pub const CUST_SPACE_ID_PARAM: &str = "CustSpaceId";
/// ListFlow's filter on the flows' names.
pub const FLOW_NAME_PARAM: &str = "FlowName";
/// ListFlow's page, sent as one compact JSON string: `{"Index":1,"Size":20}` (`Index` from 1).
pub const PAGE_PARAM: &str = "Page";
/// Response header CAMS uses to say how long to back off, in milliseconds.
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
