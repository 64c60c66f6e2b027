//! The project's own vocabulary: identifiers parsed once at the edge, and the flow as CAMS
//! describes it. Nothing here knows protobuf, HTTP or JSON.

mod flow;
mod ids;
mod query;
mod served;

pub use flow::{Flow, FlowCategory, FlowStatus};
pub use ids::{FlowId, IdError, TenantId, as_logged};
pub use query::FlowQuery;
pub use served::CacheResult;
