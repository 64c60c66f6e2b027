//! What the end-to-end tests share: the test app (the real gateway against a simulated CAMS, see
//! [`app`]), certificates and TLS files, the real binary as a child process, the bounded wait for
//! work done in the background ([`wait::until`]), Redis as platform teams run it (standalone,
//! [`sentinel`], [`cluster`], behind a [`proxy`] that misbehaves), and the assertions every
//! module makes about failures.

mod app;
pub mod certs;
pub mod cluster;
pub mod otlp;
pub mod poll;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod replica;
pub mod resp;
pub mod sentinel;
pub mod tls;
pub mod wait;

pub use app::{
    TestApp, TestAppBuilder, json_asset_with_source, preview_url_with_source, spawn_app,
};
use cams_flows::pb::GetFlowResponse;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub const DOC_FLOW: &str = "926753328126430";
pub const KEY_ID: &str = "test-key-id";
pub const KEY_SECRET: &str = "test-key-secret-do-not-leak";

/// The ErrorInfo of a status, which every failure must carry.
/// How an answer was served: its `x-cams-cache` header (hit, shared, miss, coalesced, stale), or
/// `absent`.
pub fn cache_header(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get("x-cams-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("absent")
        .to_owned()
}

pub fn error_info(status: &Status) -> tonic_types::ErrorInfo {
    details(status)
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

pub fn details(status: &Status) -> ErrorDetails {
    status.get_error_details()
}

/// Asserts the code and the ErrorInfo reason and domain of a failure.
#[track_caller]
pub fn assert_failure(
    result: Result<GetFlowResponse, Status>,
    code: Code,
    reason: &str,
    domain: &str,
) -> Status {
    let status = match result {
        Ok(r) => panic!("expected {code:?}/{reason}, got success {r:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, domain, "{status:?}");
    status
}

/// Every call of the quiet tenants' tasks succeeded; how many there were.
pub async fn all_quiet_calls_served(
    quiet: Vec<tokio::task::JoinHandle<Vec<Result<(), Status>>>>,
) -> usize {
    let mut calls = 0;
    for task in quiet {
        for result in task.await.expect("quiet task") {
            calls += 1;
            if let Err(status) = result {
                panic!("a quiet tenant's call failed: {status:?}");
            }
        }
    }
    calls
}
