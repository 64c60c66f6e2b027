//! Server TLS and mutual TLS through real gRPC clients over loopback, and certificate reload,
//! with certificates generated here.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::support::{
    certs::{CLIENT_DNS, Ca, SPIFFE_ID},
    tls::{TlsFiles, client_tls, replace},
    wait,
};
use cams_flows::server::{ConnInfo, PeerIdentity, TlsError, TlsServer, incoming};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::{
    Request, Status,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint, Identity, Server},
};
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};

/// Every wait in these tests is bounded by this, so a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- a server with the health service and a record of each call's ConnInfo ----

struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Option<ConnInfo>>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    async fn start(tls: Option<Arc<TlsServer>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let health = InterceptedService::new(health, move |request: Request<()>| {
            let info = request.extensions().get::<ConnInfo>().cloned();
            record.lock().expect("lock").push(info);
            Ok::<_, Status>(request)
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(incoming(listener, tls), async {
                    let _ = stopped.await;
                })
                .await
                .expect("serve");
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    fn last_conn_info(&self) -> ConnInfo {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a call was made")
            .expect("ConnInfo is in the request extensions")
    }

    /// A health check through tonic's own client over TLS, trusting `ca`.
    async fn check(&self, ca: &Ca, identity: Option<Identity>) -> Result<(), String> {
        let tls = client_tls(&ca.pem, identity);
        let endpoint = Endpoint::from_shared(format!("https://{}", self.addr))
            .expect("uri")
            .tls_config(tls)
            .expect("tls config")
            .connect_timeout(PATIENCE)
            .timeout(PATIENCE);
        check_on(endpoint).await
    }

    async fn check_plaintext(&self) -> Result<(), String> {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect_timeout(PATIENCE)
            .timeout(PATIENCE);
        check_on(endpoint).await
    }

    /// The certificate the server presents to a new connection, read by a rustls client.
    async fn presented_certificate(&self, ca: &Ca) -> Result<CertificateDer<'static>, String> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).expect("root");
        let mut config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = TlsConnector::from(Arc::new(config));
        let handshake = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let name = ServerName::try_from("localhost").expect("name");
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (_, session) = tls.get_ref();
            assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
            session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| leaf.clone().into_owned())
                .ok_or_else(|| "no server certificate".to_owned())
        };
        tokio::time::timeout(PATIENCE, handshake)
            .await
            .map_err(|_| "handshake timed out".to_owned())?
    }
}

async fn check_on(endpoint: Endpoint) -> Result<(), String> {
    let call = async {
        let channel: Channel = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|e| format!("{e:?}"))?
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
        Ok(())
    };
    tokio::time::timeout(PATIENCE, call)
        .await
        .map_err(|_| "call timed out".to_owned())?
}

/// Polls until the server presents `expected` to new connections; bounded by PATIENCE.
async fn wait_for_certificate(server: &TestServer, ca: &Ca, expected: &CertificateDer<'_>) {
    wait::until(
        PATIENCE,
        "the new certificate served to new connections",
        || async {
            server.presented_certificate(ca).await.map(|der| {
                if der == *expected {
                    "the new certificate"
                } else {
                    "another certificate"
                }
            })
        },
        |presented| *presented == Ok("the new certificate"),
    )
    .await
    .expect("presented");
}

// ---- TLS and mTLS ----

#[tokio::test]
async fn tls_without_client_auth_serves_a_tonic_client() {
    let ca = Ca::new("server CA");
    let files = TlsFiles::new(&ca.server_leaf("server"), None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let server = TestServer::start(Some(tls)).await;

    server.check(&ca, None).await.expect("TLS call");
    let info = server.last_conn_info();
    assert_eq!(info.peer, None);
    assert!(info.remote_addr.is_some_and(|a| a.ip().is_loopback()));

    // A client that does not trust the server's CA refuses it.
    let other = Ca::new("other CA");
    assert!(server.check(&other, None).await.is_err());
}

#[tokio::test]
async fn mtls_accepts_a_client_from_the_ca_and_reports_its_sans() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = TlsFiles::new(&server_ca.server_leaf("server"), Some(&client_ca));
    let tls = TlsServer::load(files.settings(true)).expect("load");
    let server = TestServer::start(Some(tls)).await;

    server
        .check(&server_ca, Some(client_ca.client_leaf().identity()))
        .await
        .expect("mTLS call");
    let info = server.last_conn_info();
    assert_eq!(
        info.peer,
        Some(PeerIdentity {
            uri_sans: vec![SPIFFE_ID.to_owned()],
            dns_sans: vec![CLIENT_DNS.to_owned()],
        })
    );
    assert!(info.remote_addr.is_some());
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_or_from_another_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = TlsFiles::new(&server_ca.server_leaf("server"), Some(&client_ca));
    let tls = TlsServer::load(files.settings(true)).expect("load");
    let server = TestServer::start(Some(tls)).await;

    let without = server.check(&server_ca, None).await;
    assert!(without.is_err(), "no client certificate: {without:?}");

    // Another CA, and one that copies the trusted CA's name but not its key.
    for stranger in [Ca::new("another CA"), Ca::new("client CA")] {
        let foreign = server
            .check(&server_ca, Some(stranger.client_leaf().identity()))
            .await;
        assert!(foreign.is_err(), "certificate from another CA: {foreign:?}");
    }

    // The server presented its certificate to a client with none, but no call got through.
    assert!(server.seen.lock().expect("lock").is_empty());
    // And it still serves a trusted client.
    server
        .check(&server_ca, Some(client_ca.client_leaf().identity()))
        .await
        .expect("trusted client after refused ones");
}

#[tokio::test]
async fn a_plaintext_or_silent_client_does_not_stop_a_tls_server() {
    let ca = Ca::new("server CA");
    let files = TlsFiles::new(&ca.server_leaf("server"), None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let server = TestServer::start(Some(tls)).await;

    let plaintext = server.check_plaintext().await;
    assert!(plaintext.is_err(), "plaintext against TLS: {plaintext:?}");

    // A client that connects and never says anything holds only its own handshake.
    let _silent = TcpStream::connect(server.addr).await.expect("connect");
    server.check(&ca, None).await.expect("served after both");
}

#[tokio::test]
async fn plain_connections_carry_the_remote_address() {
    let server = TestServer::start(None).await;
    let ca = Ca::new("unused");
    assert!(server.check(&ca, None).await.is_err(), "TLS against plain");
    server.check_plaintext().await.expect("plaintext call");
    let info = server.last_conn_info();
    assert_eq!(info.peer, None);
    assert!(info.remote_addr.is_some_and(|a| a.ip().is_loopback()));
}

// ---- reload ----

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_connections() {
    let ca = Ca::new("server CA");
    let first = ca.server_leaf("server one");
    let files = TlsFiles::new(&first, None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let server = TestServer::start(Some(Arc::clone(&tls))).await;
    assert_eq!(
        server.presented_certificate(&ca).await,
        Ok(first.der.clone())
    );

    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    replace(&files.key, &second.key_pem);
    // Nothing watches the files here: the old certificate stays until reload().
    assert_eq!(
        server.presented_certificate(&ca).await,
        Ok(first.der.clone())
    );
    tls.reload().expect("reload");
    assert_eq!(server.presented_certificate(&ca).await, Ok(second.der));
    server.check(&ca, None).await.expect("call after reload");
}

#[tokio::test]
async fn the_reloader_picks_up_changed_files() {
    let ca = Ca::new("server CA");
    let first = ca.server_leaf("server one");
    let files = TlsFiles::new(&first, None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let reloader = tokio::spawn(tls.reloader(Duration::from_millis(100)));
    let server = TestServer::start(Some(Arc::clone(&tls))).await;
    assert_eq!(
        server.presented_certificate(&ca).await,
        Ok(first.der.clone())
    );

    // Two files, two renames: a poll may fall between them and see a key that does not match
    // yet; the next one must still pick up the pair.
    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    // pacing: two polls (every 100 ms) or more see the new certificate with the old key.
    tokio::time::sleep(Duration::from_millis(250)).await;
    replace(&files.key, &second.key_pem);
    wait_for_certificate(&server, &ca, &second.der).await;
    server.check(&ca, None).await.expect("call after rotation");

    // A broken rewrite is not taken: the working certificate stays.
    replace(&files.key, "-----BEGIN PRIVATE KEY-----\nnot a key\n");
    // pacing: what is asserted is that nothing changes, so time must pass: several polls (every
    // 100 ms) see the broken key.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.presented_certificate(&ca).await, Ok(second.der));
    reloader.abort();
}

#[tokio::test]
async fn the_reloader_notices_a_change_made_before_it_started() {
    let ca = Ca::new("server CA");
    let files = TlsFiles::new(&ca.server_leaf("server one"), None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let server = TestServer::start(Some(Arc::clone(&tls))).await;
    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    replace(&files.key, &second.key_pem);
    let reloader = tokio::spawn(tls.reloader(Duration::from_millis(100)));
    wait_for_certificate(&server, &ca, &second.der).await;
    reloader.abort();
}

#[tokio::test]
async fn the_reloader_rotates_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let old_client_ca = Ca::new("mesh CA 1");
    let files = TlsFiles::new(&server_ca.server_leaf("server"), Some(&old_client_ca));
    let tls = TlsServer::load(files.settings(true)).expect("load");
    let reloader = tokio::spawn(tls.reloader(Duration::from_millis(100)));
    let server = TestServer::start(Some(Arc::clone(&tls))).await;
    let old_client = old_client_ca.client_leaf();
    server
        .check(&server_ca, Some(old_client.identity()))
        .await
        .expect("old mesh CA");

    let new_client_ca = Ca::new("mesh CA 2");
    let new_client = new_client_ca.client_leaf();
    replace(&files.client_ca, &new_client_ca.pem);
    wait::until(
        PATIENCE,
        "a client of the new CA served",
        || server.check(&server_ca, Some(new_client.identity())),
        Result::is_ok,
    )
    .await
    .expect("served");
    assert!(
        server
            .check(&server_ca, Some(old_client.identity()))
            .await
            .is_err(),
        "a client of the retired CA is refused"
    );
    reloader.abort();
}

#[cfg(unix)]
#[tokio::test]
async fn the_reloader_reloads_on_sighup() {
    // Installing a handler first means a SIGHUP can never take the default action (ending this
    // test process), whenever the reloader's own listener gets registered.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler");
    let hangups = tokio::sync::Mutex::new(hangups);
    let ca = Ca::new("server CA");
    let first = ca.server_leaf("server one");
    let files = TlsFiles::new(&first, None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    // No polling: only the signal can make it reload.
    let reloader = tokio::spawn(tls.reloader(Duration::ZERO));
    let server = TestServer::start(Some(Arc::clone(&tls))).await;

    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    replace(&files.key, &second.key_pem);
    // The reloader may not have installed its handler when the first signal comes: signalled
    // again until it reloads.
    wait::until(
        PATIENCE,
        "a reload on SIGHUP",
        || {
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &std::process::id().to_string()])
                .status()
                .expect("kill");
            assert!(sent.success());
            let (hangups, server, ca) = (&hangups, &server, &ca);
            async move {
                let mut hangups = hangups.lock().await;
                let _ = tokio::time::timeout(Duration::from_secs(1), hangups.recv()).await;
                server.presented_certificate(ca).await
            }
        },
        |presented| *presented == Ok(second.der.clone()),
    )
    .await
    .expect("presented");
    reloader.abort();
}

#[tokio::test]
async fn the_reloader_ends_when_the_server_is_dropped() {
    let ca = Ca::new("server CA");
    let files = TlsFiles::new(&ca.server_leaf("server"), None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let reloader = tokio::spawn(tls.reloader(Duration::from_millis(20)));
    drop(tls);
    tokio::time::timeout(PATIENCE, reloader)
        .await
        .expect("the reloader ended")
        .expect("no panic");
}

// ---- bad files ----

fn assert_names(result: Result<impl Sized, TlsError>, file: &Path) -> String {
    let Err(error) = result else {
        panic!("expected an error naming {}", file.display());
    };
    let error = error.chain().to_string();
    assert!(
        error.contains(&file.display().to_string()),
        "{error:?} does not name {}",
        file.display()
    );
    error
}

#[test]
fn bad_files_at_startup_are_errors_that_name_the_file() {
    let ca = Ca::new("server CA");
    let leaf = ca.server_leaf("server");
    let other = ca.server_leaf("other");

    let files = TlsFiles::new(&leaf, Some(&ca));
    std::fs::remove_file(&files.cert).expect("rm");
    assert_names(TlsServer::load(files.settings(false)), &files.cert);

    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(&files.cert, "hello\n");
    assert_names(TlsServer::load(files.settings(false)), &files.cert);

    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(
        &files.cert,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    assert_names(TlsServer::load(files.settings(false)), &files.cert);

    let files = TlsFiles::new(&leaf, Some(&ca));
    std::fs::remove_file(&files.key).expect("rm");
    assert_names(TlsServer::load(files.settings(false)), &files.key);

    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(&files.key, &leaf.cert_pem); // a certificate where the key should be
    assert_names(TlsServer::load(files.settings(false)), &files.key);

    // A key of another certificate: the message names both, and holds no key material.
    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(&files.key, &other.key_pem);
    let error = assert_names(TlsServer::load(files.settings(false)), &files.key);
    assert!(error.contains(&files.cert.display().to_string()), "{error}");
    for line in other.key_pem.lines().chain(leaf.key_pem.lines()) {
        assert!(!error.contains(line), "{error}");
    }

    let files = TlsFiles::new(&leaf, None);
    assert_names(TlsServer::load(files.settings(true)), &files.client_ca);

    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(&files.client_ca, "");
    assert_names(TlsServer::load(files.settings(true)), &files.client_ca);

    let files = TlsFiles::new(&leaf, Some(&ca));
    replace(
        &files.client_ca,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    assert_names(TlsServer::load(files.settings(true)), &files.client_ca);

    // The good set loads, with and without client auth.
    let files = TlsFiles::new(&leaf, Some(&ca));
    TlsServer::load(files.settings(true)).expect("mTLS");
    TlsServer::load(files.settings(false)).expect("TLS");
}

#[tokio::test]
async fn a_bad_file_on_reload_keeps_the_old_certificate() {
    let ca = Ca::new("server CA");
    let first = ca.server_leaf("server one");
    let files = TlsFiles::new(&first, None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let server = TestServer::start(Some(Arc::clone(&tls))).await;

    replace(&files.cert, "garbage\n");
    assert_names(tls.reload(), &files.cert);
    assert_eq!(
        server.presented_certificate(&ca).await,
        Ok(first.der.clone())
    );

    // A complete pair with a mismatched key is refused as a whole, too.
    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    assert_names(tls.reload(), &files.key);
    assert_eq!(server.presented_certificate(&ca).await, Ok(first.der));
    server.check(&ca, None).await.expect("still serving");
}

#[test]
fn debug_output_shows_paths_not_keys() {
    let ca = Ca::new("server CA");
    let leaf = ca.server_leaf("server");
    let files = TlsFiles::new(&leaf, None);
    let tls = TlsServer::load(files.settings(false)).expect("load");
    let debug = format!("{tls:?}");
    assert!(debug.contains("tls.key"), "{debug}");
    let key_der = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    for line in leaf.key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!debug.contains(line), "{debug}");
    }
    assert!(!debug.contains(&format!("{:?}", key_der.secret_der())));
}
