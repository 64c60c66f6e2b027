//! `GetCallerIdentity` as the client sends it and reads the answer: on the wire against a server
//! that records the request and answers what each test gives it, and against the simulated STS.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    task::JoinHandle,
};

use super::*;
use crate::{
    acs::{rpc, v3::parse_query},
    clock,
};

const KEY_ID: &str = "LTAIcaller";
const SECRET: &str = "caller-secret-never-sent";
const TOKEN: &str = "CAIStoken-sent-in-the-body-only";

/// The answer of the official API reference's example (`GetCallerIdentity`, a RAM user).
const ANSWER: &str = r#"{"IdentityType":"RAMUser","AccountId":"1968132000123456","RequestId":"3C87BF47-3724-5443-ADC1-5AEAD9A03EB1","PrincipalId":"216959339000123456","UserId":"216959339000123456","Arn":"acs:ram::1968132000123456:user/admin"}"#;

fn key(token: Option<&str>) -> Credentials {
    Credentials::new(
        KEY_ID,
        SecretString::from(SECRET.to_owned()),
        token.map(|t| SecretString::from(t.to_owned())),
    )
}

/// A one-request HTTP server: answers `status` with `body`, and hands back the request it read.
async fn answering(status: u16, body: &'static str) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buffer = [0_u8; 4096];
        // Headers, then as much body as they announce.
        loop {
            let n = socket.read(&mut buffer).await.expect("read");
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8(request).expect("UTF-8 request")
    });
    (addr, server)
}

fn config_with_timeouts(request: Duration) -> CredentialsConfig {
    CredentialsConfig {
        sts_connect_timeout: request,
        sts_timeout: request,
        ..CredentialsConfig::default()
    }
}

async fn ask(addr: SocketAddr, signer: &Credentials) -> Result<CallerIdentity, CredentialsError> {
    let vars = Vars::from_pairs([("ALIBABA_CLOUD_STS_ENDPOINT", format!("http://{addr}"))]);
    caller_identity(
        &config_with_timeouts(Duration::from_secs(5)),
        &vars,
        clock::system(),
        signer,
    )
    .await
}

type Pairs = Vec<(String, String)>;

/// The method, and the request line's query and the form body, decoded.
fn parts(request: &str) -> (String, Pairs, Pairs) {
    let (head, body) = request.split_once("\r\n\r\n").expect("head and body");
    let line = head.lines().next().expect("request line");
    let mut words = line.split(' ');
    let method = words.next().expect("method").to_owned();
    let target = words.next().expect("target");
    let (path, query) = target.split_once('?').expect("a query");
    assert_eq!(path, "/");
    (
        method,
        parse_query(query).expect("query"),
        parse_query(body).expect("form"),
    )
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_request_is_an_rpc_call_signed_by_the_caller_with_its_token_in_the_body() {
    for token in [None, Some(TOKEN)] {
        let (addr, server) = answering(200, ANSWER).await;
        let identity = ask(addr, &key(token)).await.expect("an identity");
        let request = server.await.expect("server");
        assert!(!request.contains(SECRET), "the secret is never sent");
        let (method, query, form) = parts(&request);
        assert_eq!(method, "POST");
        for (name, expected) in [
            ("Action", "GetCallerIdentity"),
            ("Version", "2015-04-01"),
            ("Format", "JSON"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("AccessKeyId", KEY_ID),
        ] {
            assert_eq!(value(&query, name), Some(expected), "{name} in {query:?}");
        }
        for name in ["Timestamp", "SignatureNonce", "Signature"] {
            assert!(value(&query, name).is_some(), "{name} in {query:?}");
        }
        assert!(
            crate::acs::parse_timestamp(value(&query, "Timestamp").unwrap_or_default()).is_some()
        );
        assert_eq!(value(&query, "SecurityToken"), None, "no token in the URL");
        assert_eq!(value(&form, "SecurityToken"), token);
        assert_eq!(form.len(), usize::from(token.is_some()), "{form:?}");
        // The signature covers the query and the form together, keyed by the caller's secret.
        let signed = query
            .iter()
            .chain(&form)
            .filter(|(k, _)| k != "Signature")
            .map(|(k, v)| (k.as_str(), v.as_str()));
        assert_eq!(
            value(&query, "Signature"),
            Some(rpc::signature("POST", signed, SECRET).as_str())
        );

        assert_eq!(
            identity,
            CallerIdentity {
                account_id: "1968132000123456".to_owned(),
                identity_type: "RAMUser".to_owned(),
                arn: "acs:ram::1968132000123456:user/admin".to_owned(),
                user_id: "216959339000123456".to_owned(),
                principal_id: "216959339000123456".to_owned(),
                role_id: None,
                request_id: "3C87BF47-3724-5443-ADC1-5AEAD9A03EB1".to_owned(),
            }
        );
    }
}

#[tokio::test]
async fn an_answer_without_an_account_uid_is_malformed() {
    for (body, detail) in [
        (
            r#"{"RequestId":"R","Arn":"acs:ram::1:user/a"}"#,
            "AccountId is missing",
        ),
        (
            r#"{"RequestId":"R","AccountId":""}"#,
            "AccountId is missing",
        ),
        (
            r#"{"RequestId":"R","AccountId":"acct-1"}"#,
            "AccountId is not an account's UID",
        ),
        (r#"{"RequestId":"R","AccountId":"#, "JSON cut short"),
    ] {
        let (addr, _server) = answering(200, body).await;
        let err = ask(addr, &key(None)).await.expect_err(body).to_string();
        assert!(err.starts_with("STS sent a malformed answer"), "{err}");
        assert!(err.contains(detail), "{detail:?} not in {err}");
    }
}

#[tokio::test]
async fn a_refusal_a_silence_and_a_closed_port_are_typed_errors_without_secrets() {
    let (addr, _server) = answering(
        404,
        r#"{"RequestId":"R-1","HostId":"sts.aliyuncs.com","Code":"InvalidAccessKeyId.NotFound","Message":"Specified access key is not found."}"#,
    )
    .await;
    let err = ask(addr, &key(Some(TOKEN))).await.expect_err("refused");
    assert!(
        matches!(&err, CredentialsError::Refused { http_status: 404, code, .. } if code == "InvalidAccessKeyId.NotFound"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "STS answered HTTP 404 InvalidAccessKeyId.NotFound: Specified access key is not found. \
         (RequestId R-1)"
    );

    // Accepted, never answered: bounded by the STS timeout.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let vars = Vars::from_pairs([(
        "ALIBABA_CLOUD_STS_ENDPOINT",
        format!("http://{}", silent.local_addr().expect("addr")),
    )]);
    let started = std::time::Instant::now();
    let err = caller_identity(
        &config_with_timeouts(Duration::from_millis(300)),
        &vars,
        clock::system(),
        &key(Some(TOKEN)),
    )
    .await
    .expect_err("silence");
    assert!(matches!(err, CredentialsError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(silent);

    let closed = super::super::testkit::ClosedPort::new();
    let err = ask(closed.addr, &key(Some(TOKEN)))
        .await
        .expect_err("closed");
    assert!(err.is_unreachable(), "{err:?}");
    for err in [err.to_string(), format!("{err:?}")] {
        assert!(!err.contains(SECRET) && !err.contains(TOKEN), "{err}");
        assert!(!err.contains("Signature"), "no signed URL: {err}");
    }
}

#[test]
fn account_ids_are_digits() {
    for good in ["1234567890123456", "1", "00012"] {
        assert!(is_account_id(good), "{good}");
    }
    for bad in [
        "",
        "isv-prod",
        "1234 5678",
        "１２３",
        "123456789012345678901234567890123",
    ] {
        assert!(!is_account_id(bad), "{bad}");
    }
}

/// Against the simulated STS: a long-lived key is its account's RAM user, a role's temporary
/// keys (RRSA here) the same account's role session; a wrong secret is refused.
#[cfg(feature = "sandbox")]
mod simulated {
    use super::*;
    use crate::{
        credentials::{
            ProviderChoice,
            testkit::{JWT, SIGNER_ID, SIGNER_SECRET, World},
        },
        sandbox::ACCOUNT_ID,
    };

    async fn ask(world: &World, signer: &Credentials) -> Result<CallerIdentity, CredentialsError> {
        let vars = Vars::from_pairs([("ALIBABA_CLOUD_STS_ENDPOINT", world.identity.endpoint())]);
        caller_identity(
            &CredentialsConfig::default(),
            &vars,
            clock::system(),
            signer,
        )
        .await
    }

    #[tokio::test]
    async fn every_key_of_the_account_names_the_account() {
        let mut world = World::new().await;
        let signer = Credentials::new(
            SIGNER_ID,
            SecretString::from(SIGNER_SECRET.to_owned()),
            None,
        );
        let user = ask(&world, &signer).await.expect("the signer's identity");
        assert_eq!(user.account_id, ACCOUNT_ID);
        assert_eq!(user.identity_type, "RAMUser");

        world.oidc(JWT);
        let provider = world.resolve(ProviderChoice::Oidc).await.expect("RRSA");
        let temporary = provider.credentials().await.expect("temporary keys");
        assert!(temporary.security_token().is_some());
        let role = ask(&world, &temporary).await.expect("the role's identity");
        assert_eq!(role.account_id, ACCOUNT_ID);
        assert_eq!(role.identity_type, "AssumedRoleUser");
        assert!(role.role_id.is_some());
        assert!(
            role.arn
                .starts_with(&format!("acs:ram::{ACCOUNT_ID}:assumed-role/cams/")),
            "{role:?}"
        );

        let calls = world.identity.stats().sts;
        let asked: Vec<_> = calls
            .iter()
            .filter(|c| c.action == "GetCallerIdentity")
            .collect();
        assert_eq!(asked.len(), 2, "{calls:?}");
        assert!(asked.iter().all(|c| c.code == "OK"), "{calls:?}");
        assert_eq!(
            asked[1].signer.as_deref(),
            Some(temporary.access_key_id()),
            "signed by the temporary key"
        );

        let wrong = Credentials::new(SIGNER_ID, SecretString::from("wrong".to_owned()), None);
        let err = ask(&world, &wrong).await.expect_err("a wrong secret");
        assert!(
            matches!(&err, CredentialsError::Refused { code, .. } if code == "SignatureDoesNotMatch"),
            "{err:?}"
        );
    }
}
