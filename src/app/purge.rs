//! `cams-flows purge`: a client of `FlowAdminService/InvalidateFlows`, for operators without
//! grpcurl. It dials the gateway like any caller (an API key, TLS and a client certificate as the
//! gateway asks), and says what was dropped or why nothing was.

use std::{path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tonic::{
    Code, Request, Status,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_types::StatusExt;

use crate::{
    grpc::status::code_name,
    pb::{InvalidateFlowsRequest, InvalidateFlowsResponse, flow_admin_service_client},
};

/// What to purge, and how to reach the gateway.
#[derive(Debug, Clone)]
pub struct PurgeOrder {
    /// `host:port`, or a URL (`http://…`, `https://…`).
    pub target: String,
    /// `None`: the account's own space.
    pub tenant: Option<String>,
    /// Empty: every cached answer of the tenant.
    pub flows: Vec<String>,
    pub api_key: Option<SecretString>,
    /// The CA that signed the gateway's certificate: dial with TLS, verified by it.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, for a gateway that asks for one (`auth.mode = mtls`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the gateway's certificate must carry, when not the target's host.
    pub server_name: Option<String>,
    pub timeout: Duration,
    /// Whether an API key may go without TLS to another host (`--plaintext`).
    pub plaintext: bool,
}

/// Why the purge did not happen, in words for an operator.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The order itself is wrong (a file that cannot be read, a target that is not an address).
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the gateway at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("the gateway refused: {0}")]
    Refused(String),
}

impl PurgeError {
    /// The process's exit code: 2 for a wrong order, 1 for a purge that failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => 2,
            Self::Unreachable { .. } | Self::Refused(_) => 1,
        }
    }
}

/// Sends the purge, and the gateway's answer.
pub async fn purge(order: &PurgeOrder) -> Result<InvalidateFlowsResponse, PurgeError> {
    let channel = connect(order).await?;
    let mut client = flow_admin_service_client::FlowAdminServiceClient::new(channel);
    let mut request = Request::new(InvalidateFlowsRequest {
        cust_space_id: order.tenant.clone().unwrap_or_default(),
        flow_ids: order.flows.clone(),
        own_space: order.tenant.is_none(),
    });
    request.set_timeout(order.timeout);
    if let Some(key) = &order.api_key {
        let value = MetadataValue::try_from(format!("Bearer {}", key.expose_secret()))
            .map_err(|_| PurgeError::Usage("the API key is not valid in a header".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    client
        .invalidate_flows(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| PurgeError::Refused(describe(&status)))
}

/// A refusal as the operator reads it: the code, the gateway's reason and its message.
fn describe(status: &Status) -> String {
    let reason = status
        .get_details_error_info()
        .map(|info| format!(" ({})", info.reason))
        .unwrap_or_default();
    let hint = match status.code() {
        Code::PermissionDenied => {
            "; the key or identity needs roles = [\"admin\"] and the tenant among its tenants"
        }
        Code::Unauthenticated => "; give the key with --api-key or CAMS_FLOWS_API_KEY",
        _ => "",
    };
    format!(
        "{}{reason}: {}{hint}",
        code_name(status.code()),
        status.message()
    )
}

async fn connect(order: &PurgeOrder) -> Result<Channel, PurgeError> {
    let tls = order.ca_file.is_some() || order.target.starts_with("https://");
    let uri = if order.target.contains("://") {
        order.target.clone()
    } else if tls {
        format!("https://{}", order.target)
    } else {
        format!("http://{}", order.target)
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| PurgeError::Usage(format!("--target {:?}: {e}", order.target)))?
        .connect_timeout(order.timeout);
    let host = endpoint.uri().host().unwrap_or_default();
    if order.api_key.is_some() && !tls && !order.plaintext && !on_this_host(host) {
        // An admin key read off the wire purges every tenant it names: it goes in cleartext
        // only where nobody else can see it, or where the operator says a sidecar encrypts.
        return Err(PurgeError::Usage(format!(
            "refusing to send the API key without TLS to {host}: dial https:// or give \
             --ca-file, or --plaintext if something on the way encrypts (a mesh sidecar)"
        )));
    }
    if tls {
        let Some(ca) = &order.ca_file else {
            return Err(PurgeError::Usage(
                "an https target needs --ca-file: the CA that signed the gateway's certificate"
                    .into(),
            ));
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "--ca-file")?));
        if let Some((cert, key)) = &order.client_cert {
            config = config.identity(Identity::from_pem(
                read(cert, "--cert-file")?,
                read(key, "--key-file")?,
            ));
        }
        if let Some(name) = &order.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| PurgeError::Usage(format!("TLS: {e}")))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| PurgeError::Unreachable {
            target: order.target.clone(),
            reason: crate::telemetry::ErrorChain(&e).to_string(),
        })
}

fn read(path: &PathBuf, flag: &str) -> Result<Vec<u8>, PurgeError> {
    std::fs::read(path).map_err(|e| PurgeError::Usage(format!("{flag} {}: {e}", path.display())))
}

/// Whether `host` (a URI's host: a name, an address, `[v6]`) is this machine's loopback.
fn on_this_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(target: &str, plaintext: bool) -> PurgeOrder {
        PurgeOrder {
            target: target.into(),
            tenant: Some("t".into()),
            flows: Vec::new(),
            api_key: Some(SecretString::from("admin-key")),
            ca_file: None,
            client_cert: None,
            server_name: None,
            timeout: Duration::from_millis(200),
            plaintext,
        }
    }

    #[test]
    fn loopback_hosts_are_this_host() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "::1",
        ] {
            assert!(on_this_host(host), "{host}");
        }
        for host in ["gateway.internal", "10.0.0.7", "[2001:db8::1]", ""] {
            assert!(!on_this_host(host), "{host}");
        }
    }

    /// The key is never sent in cleartext to another host unless the operator says so; the
    /// refusal comes before any connection and does not show the key.
    #[tokio::test]
    async fn an_api_key_goes_without_tls_to_another_host_only_with_plaintext() {
        let refused = purge(&order("gateway.internal:50051", false))
            .await
            .expect_err("refused");
        let said = refused.to_string();
        assert!(matches!(refused, PurgeError::Usage(_)), "{said}");
        assert!(
            said.contains("--plaintext") && !said.contains("admin-key"),
            "{said}"
        );
        // With --plaintext it dials (and, with nothing there, cannot reach it).
        let unreachable = purge(&order("http://192.0.2.1:9", true))
            .await
            .expect_err("nothing listens there");
        assert!(
            matches!(unreachable, PurgeError::Unreachable { .. }),
            "{unreachable}"
        );
    }
}
