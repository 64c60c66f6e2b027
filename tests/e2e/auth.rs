//! Callers see only their own tenants: each auth mode end to end through a real gRPC client.

use std::collections::HashMap;

use crate::support::{TestApp, assert_failure};
use cams_flows::{
    auth::{ApiKey, AuthConfig, AuthMode, TenantSet, hash_key},
    config::Config,
    pb::GetFlowRequest,
};
use sha2::Digest;
use tonic::{Code, Request, Status};

const FLOW: &str = "100000000000002";
const BILLING_KEY: &str = "cf_billing_key_never_logged";
const OPS_KEY: &str = "cf_ops_key_never_logged";
const BILLING_ID: &str = "spiffe://cluster.local/ns/billing/sa/api";

fn tenants(patterns: &[&str]) -> TenantSet {
    TenantSet::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).expect("patterns")
}

fn key(name: &str, key: &str, patterns: &[&str]) -> ApiKey {
    ApiKey {
        name: name.into(),
        sha256: sha2::Sha256::digest(key.as_bytes()).into(),
        tenants: tenants(patterns),
    }
}

fn api_keys(config: &mut Config) {
    config.auth = AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![
            key("billing", BILLING_KEY, &["cams-a", "team-*"]),
            key("ops", OPS_KEY, &["*"]),
        ],
        identities: HashMap::new(),
        ..AuthConfig::none()
    };
}

fn mesh(config: &mut Config) {
    config.auth = AuthConfig {
        mode: AuthMode::MeshHeader,
        keys: Vec::new(),
        identities: HashMap::from([(BILLING_ID.to_owned(), tenants(&["cams-a"]))]),
        ..AuthConfig::none()
    };
}

async fn app(tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestApp {
    TestApp::builder().config(tweak).spawn().await
}

async fn call(app: &TestApp, space: &str, headers: &[(&'static str, &str)]) -> Result<(), Status> {
    let mut request = Request::new(GetFlowRequest {
        flow_id: FLOW.into(),
        cust_space_id: space.into(),
    });
    for (name, value) in headers {
        request
            .metadata_mut()
            .insert(*name, value.parse().expect("ascii header"));
    }
    app.client.clone().get_flow(request).await.map(drop)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[tokio::test]
async fn api_keys_authenticate_and_authorize() {
    let app = app(api_keys).await;
    let billing = bearer(BILLING_KEY);

    call(&app, "cams-a", &[("authorization", &billing)])
        .await
        .expect("own tenant");
    call(&app, "team-x", &[("authorization", &billing)])
        .await
        .expect("prefix pattern");
    let status = assert_failure(
        call(&app, "cams-b", &[("authorization", &billing)])
            .await
            .map(|_| Default::default()),
        Code::PermissionDenied,
        "TENANT_NOT_ALLOWED",
        "cams-flows",
    );
    assert!(status.message().contains("billing") && status.message().contains("cams-b"));
    // The account's own space is a tenant too, and billing was not given it.
    assert!(
        call(&app, "", &[("authorization", &billing)])
            .await
            .is_err()
    );
    call(&app, "cams-b", &[("authorization", &bearer(OPS_KEY))])
        .await
        .expect("ops reads all");

    // Only the allowed calls reached CAMS.
    assert_eq!(app.sandbox_stats().await.accepted, 3);
}

#[tokio::test]
async fn missing_or_wrong_keys_are_unauthenticated_and_cost_nothing() {
    let app = app(api_keys).await;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "MISSING_CREDENTIAL"),
        (
            &[("authorization", "Bearer not-a-key")],
            "INVALID_CREDENTIAL",
        ),
        (
            &[("authorization", "Basic Y2FtczpmbG93cw==")],
            "INVALID_CREDENTIAL",
        ),
        (&[("authorization", "Bearer ")], "INVALID_CREDENTIAL"),
    ];
    for (headers, reason) in cases {
        let status = assert_failure(
            call(&app, "cams-a", headers)
                .await
                .map(|_| Default::default()),
            Code::Unauthenticated,
            reason,
            "cams-flows",
        );
        assert!(
            !status.message().contains("not-a-key"),
            "{}",
            status.message()
        );
    }
    // A flood of unauthenticated calls for distinct tenants creates no limiter state.
    for i in 0..200 {
        let _ = call(
            &app,
            &format!("flood-{i}"),
            &[("authorization", "Bearer nope")],
        )
        .await;
    }
    assert_eq!(app.tenants.tracked(), 0);
    assert_eq!(app.sandbox_stats().await.accepted, 0);
}

#[tokio::test]
async fn a_forged_forwarded_cert_header_means_nothing_outside_mesh_mode() {
    let app = app(api_keys).await;
    let forged = format!("By=spiffe://gw;URI={BILLING_ID}");
    let status = call(&app, "cams-a", &[("x-forwarded-client-cert", &forged)])
        .await
        .expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn mesh_header_identity_is_authorized_by_tenant() {
    let app = app(mesh).await;
    let xfcc = format!("By=spiffe://cluster.local/ns/cams/sa/gateway;Hash=1f2e;URI={BILLING_ID}");
    call(&app, "cams-a", &[("x-forwarded-client-cert", &xfcc)])
        .await
        .expect("allowed");
    assert_failure(
        call(&app, "cams-b", &[("x-forwarded-client-cert", &xfcc)])
            .await
            .map(|_| Default::default()),
        Code::PermissionDenied,
        "TENANT_NOT_ALLOWED",
        "cams-flows",
    );
    // An identity the configuration does not name reads nothing.
    let stranger = "URI=spiffe://cluster.local/ns/other/sa/api";
    assert_eq!(
        call(&app, "cams-a", &[("x-forwarded-client-cert", stranger)])
            .await
            .expect_err("unknown")
            .code(),
        Code::PermissionDenied
    );
    // No header, or one without URI=, is unauthenticated; an API key does not help here.
    for headers in [
        vec![],
        vec![("x-forwarded-client-cert", "Hash=abc;Subject=\"CN=x\"")],
        vec![("authorization", "Bearer cf_ops_key_never_logged")],
    ] {
        assert_eq!(
            call(&app, "cams-a", &headers)
                .await
                .expect_err("no identity")
                .code(),
            Code::Unauthenticated
        );
    }
}

#[test]
fn hash_key_matches_the_configuration_format() {
    assert_eq!(
        hash_key(BILLING_KEY),
        hex::encode(sha2::Sha256::digest(BILLING_KEY.as_bytes()))
    );
    assert_eq!(hash_key(BILLING_KEY).len(), 64);
}

// ---- mTLS, with certificates made here ----

mod mtls {
    use super::*;
    use tonic::transport::{Channel, Identity};

    use crate::support::{
        certs::Ca,
        tls::{TlsFiles, client_tls},
    };

    struct Setup {
        app: TestApp,
        ca: Ca,
        _files: TlsFiles,
    }

    async fn setup() -> Setup {
        let ca = Ca::new("mesh CA");
        let files = TlsFiles::new(&ca.server_leaf("gateway"), Some(&ca));
        let client_tls = client_tls(&ca.pem, Some(ca.client_with_uri(BILLING_ID)));
        let app = TestApp::builder()
            .tls(files.settings(true), client_tls)
            .auth(AuthConfig {
                mode: AuthMode::Mtls,
                keys: Vec::new(),
                identities: HashMap::from([(BILLING_ID.to_owned(), tenants(&["cams-a"]))]),
                ..AuthConfig::none()
            })
            .spawn()
            .await;
        Setup {
            app,
            ca,
            _files: files,
        }
    }

    async fn channel(
        setup: &Setup,
        identity: Option<Identity>,
        ca_pem: &str,
    ) -> Result<Channel, String> {
        Channel::from_shared(format!("https://{}", setup.app.addr))
            .map_err(|e| e.to_string())?
            .tls_config(client_tls(ca_pem, identity))
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())
    }

    async fn get(channel: Channel, space: &str) -> Result<(), Status> {
        cams_flows::pb::flow_service_client::FlowServiceClient::new(channel)
            .get_flow(GetFlowRequest {
                flow_id: FLOW.into(),
                cust_space_id: space.into(),
            })
            .await
            .map(drop)
    }

    #[tokio::test]
    async fn the_certificate_identity_is_authorized_by_tenant() {
        let setup = setup().await;
        call(&setup.app, "cams-a", &[])
            .await
            .expect("SPIFFE identity reads its tenant");
        assert_failure(
            call(&setup.app, "cams-b", &[])
                .await
                .map(|_| Default::default()),
            Code::PermissionDenied,
            "TENANT_NOT_ALLOWED",
            "cams-flows",
        );
        // Another identity from the same CA is authenticated but has no tenants.
        let other = channel(
            &setup,
            Some(setup.ca.client_with_uri("spiffe://cluster.local/ns/x/sa/y")),
            &setup.ca.pem,
        )
        .await
        .expect("valid certificate");
        assert_eq!(
            get(other, "cams-a").await.expect_err("no tenants").code(),
            Code::PermissionDenied
        );
        assert_eq!(setup.app.sandbox_stats().await.accepted, 1);
    }

    #[tokio::test]
    async fn clients_without_a_trusted_certificate_are_refused() {
        let setup = setup().await;
        // No certificate: the handshake fails (or the first call does).
        let refused = match channel(&setup, None, &setup.ca.pem).await {
            Err(_) => true,
            Ok(ch) => get(ch, "cams-a").await.is_err(),
        };
        assert!(refused, "a client without a certificate is refused");
        // A certificate from another CA, even with the right SPIFFE ID.
        let rogue = Ca::new("rogue CA");
        let refused = match channel(
            &setup,
            Some(rogue.client_with_uri(BILLING_ID)),
            &setup.ca.pem,
        )
        .await
        {
            Err(_) => true,
            Ok(ch) => get(ch, "cams-a").await.is_err(),
        };
        assert!(refused, "an untrusted certificate is refused");
        assert_eq!(setup.app.sandbox_stats().await.accepted, 0);
        // The gateway still serves trusted clients.
        call(&setup.app, "cams-a", &[])
            .await
            .expect("trusted client");
    }
}
