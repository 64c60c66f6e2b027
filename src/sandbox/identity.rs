//! The simulated identity services beside the simulated CAMS, on a listener of their own: STS
//! (`AssumeRoleWithOIDC`, `AssumeRole` at `/`, see [`super::sts`]) and the ECS metadata service
//! (`/latest/...`, see [`super::metadata`]). They issue short-lived keys into the keyring the
//! simulated CAMS shares, so that a gateway on RRSA or an ECS role runs end to end locally.
//!
//! Control endpoints, sandbox only: `GET /_sandbox/identity` (what was asked), `GET
//! /_sandbox/issued` (the keys issued, secrets included, for tests that search logs for them),
//! `POST /_sandbox/fault?service=sts|metadata&fault=...` (see [`Fault`]).

use std::{collections::HashMap, fmt, future::Future, net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::State as Extract,
    http::{StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinHandle};

use super::{
    endpoint_of,
    issuer::{Fault, IdentityConfig, IdentityStats, State},
    metadata, sts,
};

fn router(state: Arc<State>) -> Router {
    let clock = Arc::clone(&state.config.clock);
    Router::new()
        .route("/", any(sts::handle))
        .route("/latest/api/token", any(metadata::token))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(metadata::role),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(metadata::credentials),
        )
        .route("/_sandbox/identity", get(stats))
        .route("/_sandbox/issued", get(issued))
        .route("/_sandbox/fault", post(fault))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(axum::middleware::map_response(move |response| {
            std::future::ready(super::server::dated(&clock, response))
        }))
}

async fn stats(Extract(state): Extract<Arc<State>>) -> Response {
    Json(state.stats()).into_response()
}

/// `GET /_sandbox/issued`: every secret the identity services handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedSecrets {
    pub keys: Vec<super::IssuedKey>,
    pub metadata_tokens: Vec<String>,
}

async fn issued(Extract(state): Extract<Arc<State>>) -> Response {
    Json(IssuedSecrets {
        keys: state.config.keyring.all(),
        metadata_tokens: state.session_tokens(),
    })
    .into_response()
}

/// `?service=sts|metadata&fault=unavailable|garbage|expired|token_refused|token_rejected|none`, or
/// `fault=error&status=<n>&code=<Code>`.
async fn fault(Extract(state): Extract<Arc<State>>, uri: Uri) -> Response {
    let params: HashMap<String, String> =
        crate::acs::v3::parse_query(uri.query().unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .collect();
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let fault = match param("fault") {
        "none" | "" => None,
        "unavailable" => Some(Fault::Unavailable),
        "garbage" => Some(Fault::Garbage),
        "expired" => Some(Fault::Expired),
        "token_refused" => Some(Fault::TokenRefused),
        "token_rejected" => Some(Fault::TokenRejected),
        "error" => Some(Fault::Error {
            status: param("status").parse().unwrap_or(400),
            code: param("code").to_owned(),
        }),
        _ => return (StatusCode::BAD_REQUEST, "unknown fault").into_response(),
    };
    match param("service") {
        "sts" => state.set_sts_fault(fault),
        "metadata" => state.set_metadata_fault(fault),
        _ => return (StatusCode::BAD_REQUEST, "service is sts or metadata").into_response(),
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The simulated STS and metadata service, bound and not yet running.
pub struct Identity {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
}

impl Identity {
    pub async fn bind(addr: SocketAddr, config: IdentityConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            state: Arc::new(State::new(config)),
        })
    }

    /// The URL for `ALIBABA_CLOUD_STS_ENDPOINT` and `ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Runs on a tokio task until the handle is dropped.
    pub fn spawn(self) -> IdentityHandle {
        let local_addr = self.local_addr;
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(self.run_until(std::future::pending()));
        IdentityHandle {
            local_addr,
            state,
            task,
        }
    }
}

/// A running simulated STS and metadata service; dropping it stops them.
pub struct IdentityHandle {
    local_addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<std::io::Result<()>>,
}

impl IdentityHandle {
    pub fn endpoint(&self) -> String {
        endpoint_of(self.local_addr)
    }

    pub fn set_sts_fault(&self, fault: Option<Fault>) {
        self.state.set_sts_fault(fault);
    }

    pub fn set_metadata_fault(&self, fault: Option<Fault>) {
        self.state.set_metadata_fault(fault);
    }

    pub fn stats(&self) -> IdentityStats {
        self.state.stats()
    }

    pub fn issued(&self) -> Vec<super::IssuedKey> {
        self.state.config.keyring.all()
    }
}

impl fmt::Debug for IdentityHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for IdentityHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
