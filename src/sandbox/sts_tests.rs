//! The simulated STS over real HTTP, with a small RPC signer of the tests' own (the signature
//! itself is the shared one, pinned by the official example in `acs::rpc`), so that the
//! simulated STS is tested apart from the production client.

use std::{net::SocketAddr, sync::Arc};

use secrecy::SecretString;
use serde_json::Value;

use crate::{
    acs::{format_timestamp, rpc, v3::encode},
    sandbox::{ACCOUNT_ID, Fault, Identity, IdentityConfig, IdentityHandle, Keyring},
};

const SIGNER_ID: &str = "LTAIsandboxsigner";
const SIGNER_SECRET: &str = "sandbox-signer-secret";

async fn sts(change: impl FnOnce(&mut IdentityConfig)) -> IdentityHandle {
    let mut config = IdentityConfig::new(Arc::new(Keyring::default()));
    config.signers = vec![(
        SIGNER_ID.to_owned(),
        SecretString::from(SIGNER_SECRET.to_owned()),
    )];
    change(&mut config);
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    Identity::bind(loopback, config)
        .await
        .expect("bind")
        .spawn()
}

/// A key to sign with: an id, its secret, and its STS token when it is temporary.
struct Key {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Key {
    fn signer() -> Self {
        Self {
            id: SIGNER_ID.to_owned(),
            secret: SIGNER_SECRET.to_owned(),
            token: None,
        }
    }

    /// The keys of an STS answer's `Credentials` (or of the metadata service's answer).
    fn issued(keys: &Value) -> Self {
        let text = |name: &str| keys[name].as_str().expect(name).to_owned();
        Self {
            id: text("AccessKeyId"),
            secret: text("AccessKeySecret"),
            token: Some(text("SecurityToken")),
        }
    }
}

/// An STS answer: its status and its JSON.
struct Answer {
    status: u16,
    json: Value,
}

/// `action` signed by `key` the way the RPC gateway reads it: the common and signature
/// parameters in the query, the action's own (and the STS token) in a form body, the signature
/// over both.
async fn call(sts: &IdentityHandle, action: &str, key: &Key, form: &[(&str, &str)]) -> Answer {
    let timestamp = format_timestamp(std::time::SystemTime::now());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let query = [
        ("Action", action),
        ("Format", "JSON"),
        ("Version", "2015-04-01"),
        ("Timestamp", timestamp.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce.as_str()),
        ("AccessKeyId", key.id.as_str()),
    ];
    let mut form = form.to_vec();
    if let Some(token) = &key.token {
        form.push(("SecurityToken", token));
    }
    let signature = rpc::signature("POST", query.iter().chain(&form).copied(), &key.secret);
    let encoded = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    };
    let mut query = query.to_vec();
    query.push(("Signature", &signature));
    let response = reqwest::Client::new()
        .post(format!("{}/?{}", sts.endpoint(), encoded(&query)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded(&form))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let json = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    Answer { status, json }
}

async fn caller(sts: &IdentityHandle, key: &Key) -> Answer {
    call(sts, "GetCallerIdentity", key, &[]).await
}

/// Every key the simulated STS knows is the simulated account's: its signer is that account's
/// RAM user, and the keys it (or the metadata service beside it) issued are sessions of that
/// account's roles, whose ARNs name the same account as the AssumeRole answer did.
#[tokio::test]
async fn every_key_it_knows_belongs_to_the_simulated_account() {
    let sts = sts(|_| {}).await;

    let user = caller(&sts, &Key::signer()).await;
    assert_eq!(user.status, 200, "{}", user.json);
    assert_eq!(user.json["AccountId"], ACCOUNT_ID);
    assert_eq!(user.json["IdentityType"], "RAMUser");
    assert_eq!(
        user.json["Arn"],
        format!("acs:ram::{ACCOUNT_ID}:user/cams-flows")
    );
    assert_eq!(user.json["UserId"], user.json["PrincipalId"]);
    assert!(user.json["RoleId"].is_null());
    assert!(
        !user.json["RequestId"]
            .as_str()
            .expect("RequestId")
            .is_empty()
    );
    assert_eq!(ACCOUNT_ID.len(), 16, "a UID has 16 digits");

    let assumed = call(
        &sts,
        "AssumeRole",
        &Key::signer(),
        &[
            ("RoleArn", &format!("acs:ram::{ACCOUNT_ID}:role/reader")),
            ("RoleSessionName", "s1"),
        ],
    )
    .await;
    assert_eq!(assumed.status, 200, "{}", assumed.json);
    let session_arn = format!("acs:ram::{ACCOUNT_ID}:assumed-role/reader/s1");
    assert_eq!(assumed.json["AssumedRoleUser"]["Arn"], session_arn);
    let role = caller(&sts, &Key::issued(&assumed.json["Credentials"])).await;
    assert_eq!(role.status, 200, "{}", role.json);
    assert_eq!(role.json["AccountId"], ACCOUNT_ID);
    assert_eq!(role.json["IdentityType"], "AssumedRoleUser");
    assert_eq!(role.json["Arn"], session_arn);
    let role_id = role.json["RoleId"].as_str().expect("RoleId");
    assert_eq!(role.json["PrincipalId"], format!("{role_id}:s1"));
    assert_eq!(
        assumed.json["AssumedRoleUser"]["AssumedRoleId"],
        role.json["PrincipalId"]
    );

    // The ECS instance's role, from the metadata service beside it.
    let metadata = reqwest::get(format!(
        "{}/latest/meta-data/ram/security-credentials/cams-flows-sandbox",
        sts.endpoint()
    ))
    .await
    .expect("metadata")
    .text()
    .await
    .expect("body");
    let metadata: Value = serde_json::from_str(&metadata).expect("JSON");
    let ecs = caller(&sts, &Key::issued(&metadata)).await;
    assert_eq!(ecs.status, 200, "{}", ecs.json);
    assert_eq!(ecs.json["AccountId"], ACCOUNT_ID);
    assert!(
        ecs.json["Arn"].as_str().expect("Arn").starts_with(&format!(
            "acs:ram::{ACCOUNT_ID}:assumed-role/cams-flows-sandbox/"
        )),
        "{}",
        ecs.json
    );

    let calls = sts.stats().sts;
    let asked: Vec<_> = calls
        .iter()
        .filter(|c| c.action == "GetCallerIdentity")
        .map(|c| (c.signer.clone().unwrap_or_default(), c.code.as_str()))
        .collect();
    assert_eq!(asked.len(), 3, "{calls:?}");
    assert_eq!(asked[0], (SIGNER_ID.to_owned(), "OK"));
}

#[tokio::test]
async fn the_account_is_the_configured_one() {
    let sts = sts(|c| c.account_id = "5000000000000002".to_owned()).await;
    let answer = caller(&sts, &Key::signer()).await;
    assert_eq!(answer.json["AccountId"], "5000000000000002");
}

/// A refusal in STS's envelope, with its status and code.
#[track_caller]
fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["Code"], code, "{}", answer.json);
    assert_eq!(answer.json["HostId"], "sts.aliyuncs.com");
    assert!(
        answer.json["Message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        answer.json["RequestId"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(answer.json["AccountId"].is_null());
}

#[tokio::test]
async fn a_bad_signature_an_unknown_key_or_a_wrong_token_is_refused() {
    let sts = sts(|_| {}).await;
    let wrong_secret = Key {
        secret: "not-the-secret".to_owned(),
        ..Key::signer()
    };
    refused(
        &caller(&sts, &wrong_secret).await,
        400,
        "SignatureDoesNotMatch",
    );
    let unknown = Key {
        id: "LTAIunknown".to_owned(),
        ..Key::signer()
    };
    refused(
        &caller(&sts, &unknown).await,
        404,
        "InvalidAccessKeyId.NotFound",
    );

    let assumed = call(
        &sts,
        "AssumeRole",
        &Key::signer(),
        &[
            ("RoleArn", "acs:ram::1:role/reader"),
            ("RoleSessionName", "s1"),
        ],
    )
    .await;
    let issued = Key::issued(&assumed.json["Credentials"]);
    let without_token = Key {
        token: None,
        ..Key::issued(&assumed.json["Credentials"])
    };
    refused(
        &caller(&sts, &without_token).await,
        400,
        "InvalidSecurityToken.Mismatch",
    );
    assert_eq!(caller(&sts, &issued).await.status, 200);

    // Keys issued already expired (the STS fault) are refused once they are.
    sts.set_sts_fault(Some(Fault::Expired));
    let expired = call(
        &sts,
        "AssumeRole",
        &Key::signer(),
        &[
            ("RoleArn", "acs:ram::1:role/reader"),
            ("RoleSessionName", "s2"),
        ],
    )
    .await;
    sts.set_sts_fault(None);
    refused(
        &caller(&sts, &Key::issued(&expired.json["Credentials"])).await,
        400,
        "InvalidSecurityToken.Expired",
    );

    // STS down answers GetCallerIdentity as everything else.
    sts.set_sts_fault(Some(Fault::Unavailable));
    refused(
        &caller(&sts, &Key::signer()).await,
        503,
        "ServiceUnavailable",
    );
}
