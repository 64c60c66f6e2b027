//! A caller's `flow_id` and `cust_space_id` are either refused with INVALID_ARGUMENT or reach
//! CAMS as exactly one `FlowId` (and at most one `CustSpaceId`) with the literal values: never as
//! extra parameters, never altered.
//!
//! Input: `flow_id`, a 0xFF byte, `cust_space_id`. 0xFF never occurs in UTF-8, so the split
//! costs no string the gateway could receive, and seeds stay readable.
#![no_main]

use cams_flows::{
    acs::v3::{canonical_query, parse_query},
    domain::{FlowId, Read, TenantId},
    error::Error,
    grpc::status::to_status,
    pb,
};
use libfuzzer_sys::fuzz_target;

/// The limit the gateway promises (`domain::ids::MAX_ID_BYTES`, private there); repeated here so
/// that a change to it is a visible decision, not a silent one.
const MAX_ID_BYTES: usize = 128;

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fuzz_target!(|data: &[u8]| {
    let (flow, space) = match data.iter().position(|&b| b == 0xFF) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    // prost refuses a request whose strings are not UTF-8, so the validator only sees `String`s;
    // lossy decoding keeps every input useful instead of discarding most of them.
    let flow_id = String::from_utf8_lossy(flow).into_owned();
    let cust_space_id = String::from_utf8_lossy(space).into_owned();

    let request = pb::GetFlowRequest {
        flow_id: flow_id.clone(),
        cust_space_id: cust_space_id.clone(),
    };
    let query = match Read::try_from(&request) {
        Ok(query) => query,
        Err(Error::InvalidArgument(violations)) => {
            let fields: Vec<&str> = violations.iter().map(|v| v.field).collect();
            let expected: Vec<&str> = [
                FlowId::parse(flow_id.as_str())
                    .is_err()
                    .then_some("flow_id"),
                TenantId::parse(cust_space_id.as_str())
                    .is_err()
                    .then_some("cust_space_id"),
            ]
            .into_iter()
            .flatten()
            .collect();
            assert!(!fields.is_empty(), "refused without a reason");
            assert_eq!(fields, expected, "violations name the wrong fields");
            // tonic unwraps this conversion when it sends the refusal.
            let _ = to_status(&Error::InvalidArgument(violations)).into_http::<()>();
            return;
        }
        Err(other) => panic!("validation produced {other:?}"),
    };

    let Some(flow) = query.flow_id().map(FlowId::as_str) else {
        panic!("GetFlow read as {query:?}");
    };
    let tenant = query.tenant.as_str();
    assert_eq!(flow, flow_id, "flow id altered");
    assert_eq!(tenant, cust_space_id, "tenant altered");
    assert!(!flow.is_empty(), "empty flow id accepted");
    assert!(
        flow.len() <= MAX_ID_BYTES,
        "{} byte flow id accepted",
        flow.len()
    );
    assert!(
        tenant.len() <= MAX_ID_BYTES,
        "{} byte tenant accepted",
        tenant.len()
    );
    assert!(!has_control(flow), "control character in flow id accepted");
    assert!(!has_control(tenant), "control character in tenant accepted");

    // The same parameters, built the same way, as `SignedRead::of` sends them.
    let mut params = vec![("FlowId", flow)];
    let mut expected = vec![("FlowId".to_owned(), flow.to_owned())];
    if let Some(space) = query.tenant.cust_space_id() {
        params.push(("CustSpaceId", space));
        // Canonical order is by name: `CustSpaceId` before `FlowId`.
        expected.insert(0, ("CustSpaceId".to_owned(), space.to_owned()));
    }
    let wire = canonical_query(params);
    assert_eq!(
        parse_query(&wire),
        Some(expected),
        "CAMS would read other parameters from {wire:?}"
    );
});
