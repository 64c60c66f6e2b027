//! pb <-> domain conversions, done once at the edge.

use std::time::SystemTime;

use crate::{
    domain::{Flow, FlowCategory, FlowId, FlowStatus, FlowSummary, Read, TenantId, What},
    error::{Error, FieldViolation},
    pb,
};

/// A read of one flow from a request's raw fields, each checked: every bad field is named.
/// By reference: the request's raw ids stay with the caller, for the call's log line whether or
/// not they are valid.
pub(super) fn flow_read(
    flow_id: &str,
    cust_space_id: &str,
    what: fn(FlowId) -> What,
) -> Result<Read, Error> {
    let flow_id = FlowId::parse(flow_id);
    let tenant = TenantId::parse(cust_space_id);
    match (flow_id, tenant) {
        (Ok(flow_id), Ok(tenant)) => Ok(Read {
            tenant,
            what: what(flow_id),
        }),
        (flow_id, tenant) => {
            let mut violations = Vec::new();
            if let Err(e) = flow_id {
                violations.push(FieldViolation {
                    field: "flow_id",
                    description: e.to_string(),
                });
            }
            if let Err(e) = tenant {
                violations.push(FieldViolation {
                    field: "cust_space_id",
                    description: e.to_string(),
                });
            }
            Err(Error::InvalidArgument(violations))
        }
    }
}

impl TryFrom<&pb::GetFlowRequest> for Read {
    type Error = Error;

    fn try_from(request: &pb::GetFlowRequest) -> Result<Self, Error> {
        flow_read(&request.flow_id, &request.cust_space_id, What::Flow)
    }
}

impl From<FlowStatus> for pb::FlowStatus {
    fn from(status: FlowStatus) -> Self {
        match status {
            FlowStatus::Unrecognized => Self::Unspecified,
            FlowStatus::Draft => Self::Draft,
            FlowStatus::Published => Self::Published,
            FlowStatus::Deprecated => Self::Deprecated,
            FlowStatus::Blocked => Self::Blocked,
            FlowStatus::Throttled => Self::Throttled,
        }
    }
}

impl From<FlowCategory> for pb::FlowCategory {
    fn from(category: FlowCategory) -> Self {
        match category {
            FlowCategory::Unrecognized => Self::Unspecified,
            FlowCategory::SignUp => Self::SignUp,
            FlowCategory::SignIn => Self::SignIn,
            FlowCategory::AppointmentBooking => Self::AppointmentBooking,
            FlowCategory::LeadGeneration => Self::LeadGeneration,
            FlowCategory::ContactUs => Self::ContactUs,
            FlowCategory::CustomerSupport => Self::CustomerSupport,
            FlowCategory::Survey => Self::Survey,
            FlowCategory::Other => Self::Other,
            FlowCategory::Shopping => Self::Shopping,
        }
    }
}

pub(super) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    // prost's conversion handles times before the epoch too.
    prost_types::Timestamp::from(t)
}

impl From<&Flow> for pb::Flow {
    fn from(flow: &Flow) -> Self {
        Self {
            flow_id: flow.flow_id.clone(),
            flow_name: flow.flow_name.clone(),
            status: pb::FlowStatus::from(flow.status()).into(),
            categories: flow
                .categories()
                .map(|c| pb::FlowCategory::from(c).into())
                .collect(),
            json_version: flow.json_version.clone(),
            data_api_version: flow.data_api_version.clone(),
            preview_url: flow.preview_url.clone(),
            preview_url_expire_time: flow.preview_url_expires.map(timestamp),
            endpoint_uri: flow.endpoint_uri.clone(),
            raw_status: flow.raw_status.clone(),
            raw_categories: flow.raw_categories.clone(),
        }
    }
}

impl From<&FlowSummary> for pb::FlowSummary {
    fn from(flow: &FlowSummary) -> Self {
        Self {
            flow_id: flow.flow_id.clone(),
            flow_name: flow.flow_name.clone(),
            categories: flow
                .raw_categories
                .iter()
                .map(|c| pb::FlowCategory::from(FlowCategory::from_cams(c)).into())
                .collect(),
            raw_categories: flow.raw_categories.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_fields_are_reported() {
        let err = Read::try_from(&pb::GetFlowRequest {
            flow_id: String::new(),
            cust_space_id: "a\nb".into(),
        })
        .expect_err("invalid");
        let Error::InvalidArgument(violations) = err else {
            panic!("wrong error")
        };
        let fields: Vec<_> = violations.iter().map(|v| v.field).collect();
        assert_eq!(fields, ["flow_id", "cust_space_id"]);
    }
}
