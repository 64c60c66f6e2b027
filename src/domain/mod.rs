//! The project's own vocabulary: identifiers parsed once at the edge, and the flow as CAMS
//! describes it. Nothing here knows protobuf, HTTP or JSON.

mod action;
mod answer;
mod flow;
mod ids;
mod read;
mod served;

pub use action::Action;
pub use answer::{Answer, Data, FlowSummary, JsonAsset, PreviewUrl};
pub use flow::{Flow, FlowCategory, FlowStatus};
pub use ids::{FlowId, IdError, TenantId, as_logged, check_flow_name};
pub use read::{ListPage, Read, What};
pub use served::CacheResult;
