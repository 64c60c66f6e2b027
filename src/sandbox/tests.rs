//! End-to-end checks over real HTTP, with a deliberately tiny signer of their own so that the
//! sandbox is tested independently of the production client.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde_json::Value;

use super::*;
use crate::acs::v3::{EMPTY_BODY_SHA256, RequestToSign, authorization, canonical_query};

const KEY_ID: &str = "test-key";
const SECRET: &str = "test-secret";

async fn start(config: SandboxConfig) -> SandboxHandle {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    Sandbox::bind(loopback, config).await.expect("bind").spawn()
}

async fn sandbox() -> SandboxHandle {
    start(SandboxConfig::new(KEY_ID, SECRET)).await
}

fn now_date() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A Flow read (GetFlow unless told); fields are public so each test bends the one thing it is
/// about.
struct Call<'a> {
    action: &'a str,
    params: Vec<(&'a str, &'a str)>,
    /// The query as sent, when it is not the canonical one that is signed.
    wire_query: Option<String>,
    key_id: &'a str,
    secret: &'a str,
    date: String,
    nonce: String,
    /// Extra headers, signed.
    signed: Vec<(&'a str, &'a str)>,
}

impl<'a> Call<'a> {
    fn flow(flow_id: &'a str) -> Self {
        Self::read("GetFlow", vec![("FlowId", flow_id)])
    }

    fn read(action: &'a str, params: Vec<(&'a str, &'a str)>) -> Self {
        Self {
            action,
            params,
            wire_query: None,
            key_id: KEY_ID,
            secret: SECRET,
            date: now_date(),
            nonce: uuid::Uuid::new_v4().simple().to_string(),
            signed: Vec::new(),
        }
    }

    fn request(&self, client: &reqwest::Client, addr: SocketAddr) -> reqwest::RequestBuilder {
        let query = canonical_query(self.params.iter().copied());
        let host = addr.to_string();
        let mut headers = vec![
            ("host", host.as_str()),
            ("x-acs-action", self.action),
            ("x-acs-version", "2020-06-06"),
            ("x-acs-date", self.date.as_str()),
            ("x-acs-signature-nonce", self.nonce.as_str()),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        headers.extend(self.signed.iter().copied());
        let signature = RequestToSign {
            method: "POST",
            path: "/",
            canonical_query: &query,
            headers: &headers,
            body_sha256: EMPTY_BODY_SHA256,
        }
        .sign(self.secret);
        let wire_query = self.wire_query.as_deref().unwrap_or(&query);
        let mut request = client
            .post(format!("http://{addr}/?{wire_query}"))
            .header("authorization", authorization(self.key_id, &signature));
        for (name, value) in headers.iter().filter(|(name, _)| *name != "host") {
            request = request.header(*name, *value);
        }
        request
    }

    async fn send(&self, sandbox: &SandboxHandle) -> Answer {
        let client = reqwest::Client::new();
        let request = self.request(&client, sandbox.local_addr());
        Answer::read(request.send().await.expect("send")).await
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Answer {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            json,
        }
    }

    fn code(&self) -> &str {
        self.json["Code"].as_str().unwrap_or_default()
    }
}

async fn control<T: serde::de::DeserializeOwned>(sandbox: &SandboxHandle, path: &str) -> T {
    let body = reqwest::get(format!("{}{path}", sandbox.endpoint()))
        .await
        .expect("control call")
        .bytes()
        .await
        .expect("control body");
    serde_json::from_slice(&body).expect("control json")
}

async fn stats(sandbox: &SandboxHandle) -> SandboxStats {
    control(sandbox, "/_sandbox/stats").await
}

#[tokio::test]
async fn documented_flow_answers_verbatim() {
    let sandbox = sandbox().await;
    let answer = Call::flow("926753328126430").send(&sandbox).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers["content-type"],
        "application/json;charset=utf-8"
    );
    let json = &answer.json;
    assert_eq!(json["RequestId"], "DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n");
    assert_eq!(json["Code"], "OK");
    assert_eq!(json["Message"], "None");
    let data = &json["Data"];
    assert_eq!(data["Status"], "DRAFT");
    assert_eq!(data["FlowId"], "926753328126430");
    assert_eq!(data["FlowName"], "flow_001");
    assert_eq!(data["Categories"], serde_json::json!(["SIGN_UP"]));
    assert_eq!(data["JSONVersion"], "2.1");
    assert_eq!(data["DataApiVersion"], "3.0");
    assert_eq!(data["PreviewUrl"], "https://pre-url");
    assert_eq!(data["PreviewUrlExpires"], 1_700_617_436_633_u64);

    let stats = stats(&sandbox).await;
    assert_eq!((stats.accepted, stats.rejected), (1, 0));
    assert_eq!(stats.calls_by_flow.get("926753328126430"), Some(&1));
}

#[tokio::test]
async fn wrong_secret_does_not_match() {
    let sandbox = sandbox().await;
    let answer = Call {
        secret: "not-the-secret",
        ..Call::flow("926753328126430")
    }
    .send(&sandbox)
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "SignatureDoesNotMatch")
    );
    assert_eq!(
        answer.json["Message"],
        "Specified signature is not matched with our calculation."
    );
    assert_eq!(answer.json["HostId"], "cams.ap-southeast-1.aliyuncs.com");
    assert_eq!(
        answer.json["Recommend"],
        "https://api.aliyun.com/troubleshoot?q=SignatureDoesNotMatch&product=cams"
    );
    let stats = stats(&sandbox).await;
    assert_eq!((stats.accepted, stats.rejected), (0, 1));
}

#[tokio::test]
async fn unknown_key_is_not_found() {
    let sandbox = sandbox().await;
    let answer = Call {
        key_id: "someone-else",
        ..Call::flow("926753328126430")
    }
    .send(&sandbox)
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (404, "InvalidAccessKeyId.NotFound")
    );
}

#[tokio::test]
async fn unsigned_acs_header_is_incomplete() {
    let sandbox = sandbox().await;
    let client = reqwest::Client::new();
    let response = Call::flow("926753328126430")
        .request(&client, sandbox.local_addr())
        .header("x-acs-extra", "sneaked in")
        .send()
        .await
        .expect("send");
    let answer = Answer::read(response).await;
    assert_eq!((answer.status, answer.code()), (400, "IncompleteSignature"));
}

#[tokio::test]
async fn stale_date_is_expired() {
    let sandbox = sandbox().await;
    let stale = SystemTime::now() - Duration::from_secs(16 * 60);
    let answer = Call {
        date: humantime::format_rfc3339_seconds(stale).to_string(),
        ..Call::flow("926753328126430")
    }
    .send(&sandbox)
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "InvalidTimeStamp.Expired")
    );

    let answer = Call {
        date: "2023-10-26T10:22:32.000Z".to_owned(),
        ..Call::flow("926753328126430")
    }
    .send(&sandbox)
    .await;
    assert_eq!(answer.code(), "InvalidTimeStamp.Format");
}

#[tokio::test]
async fn reused_nonce_is_refused() {
    let sandbox = sandbox().await;
    let call = Call::flow("926753328126430");
    assert_eq!(call.send(&sandbox).await.code(), "OK");
    let again = call.send(&sandbox).await;
    assert_eq!((again.status, again.code()), (400, "SignatureNonceUsed"));
    let stats = stats(&sandbox).await;
    assert_eq!((stats.accepted, stats.rejected), (1, 1));
}

#[tokio::test]
async fn sixth_call_in_a_second_is_throttled() {
    let sandbox = sandbox().await;
    let client = reqwest::Client::new();
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = Call::flow("100000000000002")
            .request(&client, sandbox.local_addr())
            .send()
            .await
            .expect("send");
        answers.push(Answer::read(response).await);
    }
    assert!(answers[..5].iter().all(|a| a.code() == "OK"));
    let last = &answers[5];
    assert_eq!((last.status, last.code()), (400, "Throttling.User"));
    let retry_after: u64 = last.headers["x-acs-retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("millis");
    assert!((1..=1000).contains(&retry_after), "{retry_after}");

    let stats = stats(&sandbox).await;
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.max_accepted_per_sliding_second, 5);
    assert_eq!(stats.calls_by_flow.get("100000000000002"), Some(&5));

    tokio::time::sleep(Duration::from_millis(retry_after)).await;
    assert_eq!(
        Call::flow("100000000000002").send(&sandbox).await.code(),
        "OK"
    );
}

#[tokio::test]
async fn injected_parameter_stays_one_value() {
    let sandbox = sandbox().await;
    let answer = Call::flow("1&Action=DeleteFlow").send(&sandbox).await;
    assert_eq!((answer.status, answer.code()), (404, "Flow.NotExist"));

    let log: Vec<RecordedRequest> = control(&sandbox, "/_sandbox/requests").await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].raw_query, "FlowId=1%26Action%3DDeleteFlow");
    assert_eq!(
        log[0].params,
        vec![("FlowId".to_owned(), "1&Action=DeleteFlow".to_owned())]
    );
    assert_eq!(log[0].code, "Flow.NotExist");
}

#[tokio::test]
async fn reset_clears_stats_and_log() {
    let sandbox = sandbox().await;
    Call::flow("100000000000003").send(&sandbox).await;
    Call {
        secret: "wrong",
        ..Call::flow("100000000000003")
    }
    .send(&sandbox)
    .await;
    assert_eq!(stats(&sandbox).await.accepted, 1);

    let response = reqwest::Client::new()
        .post(format!("{}/_sandbox/reset", sandbox.endpoint()))
        .send()
        .await
        .expect("reset");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(stats(&sandbox).await, SandboxStats::default());
    let log: Vec<RecordedRequest> = control(&sandbox, "/_sandbox/requests").await;
    assert!(log.is_empty());
}

#[tokio::test]
async fn security_token_must_match() {
    let sandbox = start(SandboxConfig {
        security_token: Some(SecretString::from("sts-token")),
        ..SandboxConfig::new(KEY_ID, SECRET)
    })
    .await;
    let with_token = |token| Call {
        signed: vec![
            ("x-acs-accesskey-id", KEY_ID),
            ("x-acs-security-token", token),
        ],
        ..Call::flow("100000000000004")
    };
    assert_eq!(with_token("sts-token").send(&sandbox).await.code(), "OK");
    assert_eq!(
        with_token("other-token").send(&sandbox).await.code(),
        "InvalidSecurityToken.Mismatch"
    );
    assert_eq!(
        Call::flow("100000000000004").send(&sandbox).await.code(),
        "InvalidSecurityToken.Mismatch"
    );
}

#[tokio::test]
async fn simulated_faults() {
    let sandbox = start(SandboxConfig {
        rps_per_key: 100,
        ..SandboxConfig::new(KEY_ID, SECRET)
    })
    .await;

    let ram = Call::flow("sim:error:Forbidden.RAM").send(&sandbox).await;
    assert_eq!((ram.status, ram.code()), (403, "Forbidden.RAM"));
    assert_eq!(ram.json["AccessDeniedDetail"]["AuthAction"], "cams:GetFlow");

    let limited = Call::flow("sim:error:System.LimitControl")
        .send(&sandbox)
        .await;
    assert_eq!(limited.status, 400);
    assert_eq!(limited.headers["x-acs-retry-after"], "1500");

    let ok_error = Call::flow("sim:ok-error:Ram.PermissionDeny")
        .send(&sandbox)
        .await;
    assert_eq!(
        (ok_error.status, ok_error.code()),
        (200, "Ram.PermissionDeny")
    );

    let html = Call::flow("sim:html").send(&sandbox).await;
    assert_eq!(html.status, 502);
    assert_eq!(html.headers["content-type"], "text/html");

    let slow = Call::flow("sim:slow:50").send(&sandbox).await;
    assert_eq!(slow.json["Data"]["FlowId"], "sim:slow:50");

    let client = reqwest::Client::new();
    let huge = Call::flow("sim:huge")
        .request(&client, sandbox.local_addr())
        .send()
        .await
        .expect("send");
    assert_eq!(huge.content_length(), Some(16 * 1024 * 1024));
    let body = huge.bytes().await.expect("body");
    assert_eq!(body.len(), 16 * 1024 * 1024);
    assert!(serde_json::from_slice::<Value>(&body).is_ok());

    let mut hang = Call::flow("sim:hang")
        .request(&client, sandbox.local_addr())
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(hang.status().as_u16(), 200);
    let first = hang.chunk().await.expect("first chunk");
    assert_eq!(first.as_deref(), Some(&br#"{"Code":"OK","#[..]));
    let rest = tokio::time::timeout(Duration::from_millis(200), hang.chunk()).await;
    assert!(rest.is_err(), "the body must not finish");

    let stats = stats(&sandbox).await;
    assert_eq!(stats.accepted, 7);
}

#[tokio::test]
async fn other_paths_are_unknown_actions() {
    let sandbox = sandbox().await;
    for response in [
        reqwest::get(format!("{}/", sandbox.endpoint())).await,
        reqwest::get(format!("{}/nope", sandbox.endpoint())).await,
    ] {
        let answer = Answer::read(response.expect("send")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "InvalidAction.NotFound")
        );
    }
    assert_eq!(stats(&sandbox).await, SandboxStats::default());
}

#[test]
fn config_debug_redacts_secrets() {
    let config = SandboxConfig {
        security_token: Some(SecretString::from("sts-token-value")),
        ..SandboxConfig::new("id", "secret-value")
    };
    let debug = format!("{config:?}");
    assert!(debug.contains("\"id\""));
    assert!(!debug.contains("secret-value"));
    assert!(!debug.contains("sts-token-value"));

    let generated = SandboxConfig::generated();
    assert!(generated.access_key_id.starts_with("sandbox-"));
    assert_eq!(generated.access_key_id.len(), "sandbox-".len() + 8);
    assert_eq!(generated.rps_per_key, 5);
}

#[tokio::test]
async fn shutdown_ends_held_open_calls() {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let sandbox = Sandbox::bind(loopback, SandboxConfig::new(KEY_ID, SECRET))
        .await
        .expect("bind");
    let addr = sandbox.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sandbox.run_until(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let request = Call::flow("sim:hang")
        .request(&client, addr)
        .build()
        .expect("request");
    let mut hang = client.execute(request).await.expect("headers arrive");
    assert_eq!(
        hang.chunk().await.expect("chunk").as_deref(),
        Some(&br#"{"Code":"OK","#[..])
    );

    let _ = stop.send(());
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(matches!(finished, Ok(Ok(Ok(())))), "run_until must return");
}

#[tokio::test]
async fn issued_keys_are_accepted_until_they_expire_and_refused_after() {
    let config = SandboxConfig::new(KEY_ID, SECRET);
    let keyring = Arc::clone(&config.keyring);
    let sandbox = start(config).await;
    let now = SystemTime::now();
    let role = keyring::RoleSession {
        role_name: "reader".to_owned(),
        session_name: "test".to_owned(),
    };
    let (live_id, live) = keyring.issue(now, Duration::from_secs(900), role.clone());
    let (old_id, old) = keyring.issue(
        now - Duration::from_secs(120),
        Duration::from_secs(60),
        role,
    );
    let send = |id: String, issued: keyring::Issued, token: Option<String>| {
        let sandbox = &sandbox;
        async move {
            let secret = secrecy::ExposeSecret::expose_secret(&issued.secret).to_owned();
            let token = token
                .unwrap_or_else(|| secrecy::ExposeSecret::expose_secret(&issued.token).to_owned());
            let mut call = Call::flow("100000000000002");
            call.key_id = &id;
            call.secret = &secret;
            call.signed = vec![
                ("x-acs-accesskey-id", &id),
                ("x-acs-security-token", &token),
            ];
            call.send(sandbox).await.code().to_owned()
        }
    };
    assert_eq!(send(live_id.clone(), live.clone(), None).await, "OK");
    assert_eq!(
        send(live_id, live, Some("another-token".to_owned())).await,
        "InvalidSecurityToken.Mismatch"
    );
    assert_eq!(
        send(old_id, old, None).await,
        "InvalidSecurityToken.Expired"
    );
    // Answers carry the simulated CAMS's clock as Date.
    let answer = Call::flow("100000000000002").send(&sandbox).await;
    let date = answer.headers.get("date").expect("Date");
    assert!(httpdate::parse_http_date(date.to_str().expect("text")).is_ok());
}

const LIST_FLOW: &str = "ListFlow";
const PREVIEW_URL: &str = "GetFlowPreviewUrl";
const JSON_ASSET: &str = "GetFlowJSONAssest";

#[tokio::test]
async fn list_flow_pages_a_catalogue_space() {
    let sandbox = &sandbox().await;
    let page = |index: &str| {
        let page = format!(r#"{{"Index":{index},"Size":4}}"#);
        async move {
            Call::read(
                LIST_FLOW,
                vec![
                    ("CustSpaceId", "sim:catalogue:30"),
                    ("FlowName", "flow_2"),
                    ("Page", &page),
                ],
            )
            .send(sandbox)
            .await
        }
    };
    // catalogue_flow_2 and 20 to 29: eleven flows, in three pages of four.
    let first = page("1").await;
    assert_eq!((first.status, first.code()), (200, "OK"));
    assert_eq!(
        first.json["Data"],
        serde_json::json!([
            {"FlowId": "sim:ok:catalogue-2", "FlowName": "catalogue_flow_2", "Categories": ["CUSTOMER_SUPPORT", "OTHER"]},
            {"FlowId": "sim:ok:catalogue-20", "FlowName": "catalogue_flow_20", "Categories": ["CUSTOMER_SUPPORT", "OTHER"]},
            {"FlowId": "sim:ok:catalogue-21", "FlowName": "catalogue_flow_21", "Categories": ["CUSTOMER_SUPPORT", "OTHER"]},
            {"FlowId": "sim:ok:catalogue-22", "FlowName": "catalogue_flow_22", "Categories": ["CUSTOMER_SUPPORT", "OTHER"]},
        ])
    );
    let last = page("3").await;
    let names: Vec<&str> = last.json["Data"]
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|row| row["FlowName"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "catalogue_flow_27",
            "catalogue_flow_28",
            "catalogue_flow_29"
        ]
    );
    assert_ne!(
        first.json["RequestId"], last.json["RequestId"],
        "fresh RequestIds"
    );
    assert_eq!(page("4").await.json["Data"], serde_json::json!([]));

    let bad = page("0").await;
    assert_eq!((bad.status, bad.code()), (400, "InvalidParameter"));
    assert!(
        bad.json["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"Page\""),
        "{}",
        bad.json
    );

    let stats = stats(sandbox).await;
    let list = stats.action(LIST_FLOW);
    assert_eq!(list.accepted, 4);
    assert_eq!(list.calls_by_space.get("sim:catalogue:30"), Some(&4));
    assert!(stats.calls_by_flow.is_empty(), "calls_by_flow is GetFlow's");
}

#[tokio::test]
async fn preview_url_and_json_asset_answer_every_flow_get_flow_answers() {
    let sandbox = &start(SandboxConfig {
        rps_per_key: 100,
        ..SandboxConfig::new(KEY_ID, SECRET)
    })
    .await;
    let ask = |action, flow_id| async move {
        Call::read(action, vec![("FlowId", flow_id), ("CustSpaceId", "sp")])
            .send(sandbox)
            .await
    };

    let preview = ask(PREVIEW_URL, "100000000000003").await;
    assert_eq!((preview.status, preview.code()), (200, "OK"));
    let data = &preview.json["Data"];
    assert_eq!(data["FlowId"], "100000000000003");
    let url = data["PreviewUrl"].as_str().unwrap_or_default();
    assert!(
        url.starts_with(
            "https://business.facebook.com/wa/manage/flows/100000000000003/preview/?token="
        ) && url.ends_with("&space=sp"),
        "{url}"
    );
    let expires = data["PreviewUrlExpires"].as_u64().unwrap_or_default();
    let in_30_days = samples::unix_millis(SystemTime::now() + Duration::from_secs(30 * 86_400));
    assert!(expires.abs_diff(in_30_days) < 60_000, "{expires}");

    let expiring = ask(PREVIEW_URL, "sim:expiring:5000:t").await;
    let expires = expiring.json["Data"]["PreviewUrlExpires"]
        .as_u64()
        .unwrap_or_default();
    let soon = samples::unix_millis(SystemTime::now() + Duration::from_secs(5));
    assert!(expires.abs_diff(soon) < 60_000, "{expires}");

    let asset = ask(JSON_ASSET, "926753328126430").await;
    assert_eq!((asset.status, asset.code()), (200, "OK"));
    assert_eq!(
        asset.json["Data"],
        serde_json::json!({
            "FlowId": "926753328126430",
            "FilePath": "https://bucket-sandbox-ap-southeast-1.aliyuncs.com/926753328126430.json",
        })
    );

    for action in [PREVIEW_URL, JSON_ASSET] {
        let missing = Call::read(action, vec![("CustSpaceId", "sp")])
            .send(sandbox)
            .await;
        assert_eq!((missing.status, missing.code()), (400, "MissingParameter"));
        let unknown = ask(action, "42").await;
        assert_eq!((unknown.status, unknown.code()), (404, "Flow.NotExist"));
        let denied = ask(action, "sim:error:Forbidden.RAM").await;
        assert_eq!((denied.status, denied.code()), (403, "Forbidden.RAM"));
        assert_eq!(
            denied.json["AccessDeniedDetail"]["AuthAction"],
            format!("cams:{action}")
        );
        let html = ask(action, "sim:html").await;
        assert_eq!(html.status, 502);
    }
}

/// `sim:flaky:<n>` counts the calls of each action apart: GetFlow's failures do not use up
/// GetFlowPreviewUrl's.
#[tokio::test]
async fn history_faults_count_per_action() {
    let sandbox = &sandbox().await;
    let code = |action| async move {
        Call::read(action, vec![("FlowId", "sim:flaky:1:per-action")])
            .send(sandbox)
            .await
            .code()
            .to_owned()
    };
    assert_eq!(code("GetFlow").await, "ServiceUnavailable");
    assert_eq!(code("GetFlow").await, "OK");
    assert_eq!(code(PREVIEW_URL).await, "ServiceUnavailable");
    assert_eq!(code(PREVIEW_URL).await, "OK");
}

/// CAMS's quota is per operation: four actions at 5/s each accept 20 calls, and a sixth call of
/// one action within its second is throttled while the others' budgets are untouched.
#[tokio::test]
async fn each_action_has_its_own_quota() {
    let sandbox = sandbox().await;
    let call = |action: &'static str| match action {
        LIST_FLOW => Call::read(action, Vec::new()),
        _ => Call::read(action, vec![("FlowId", "100000000000002")]),
    };
    // PreviewUrl last, so that its sixth call follows its fifth at once.
    let actions = ["GetFlow", LIST_FLOW, JSON_ASSET, PREVIEW_URL];
    let client = reqwest::Client::new();
    let started = tokio::time::Instant::now();
    let mut answers = Vec::new();
    for action in actions {
        for _ in 0..5 {
            let response = call(action)
                .request(&client, sandbox.local_addr())
                .send()
                .await
                .expect("send");
            answers.push((action, Answer::read(response).await.code().to_owned()));
        }
    }
    let sixth = call(PREVIEW_URL).send(&sandbox).await;
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|(_, code)| code == "OK"), "{answers:?}");
    assert_eq!(
        (sixth.status, sixth.code()),
        (400, "Throttling.User"),
        "21 calls in {elapsed:?}"
    );
    let stats = stats(&sandbox).await;
    assert_eq!((stats.accepted, stats.throttled), (20, 1));
    assert_eq!(
        stats.max_accepted_per_sliding_second, 5,
        "the largest action's"
    );
    for action in actions {
        let figures = stats.action(action);
        assert_eq!(figures.accepted, 5, "{action}");
        assert_eq!(figures.max_accepted_per_sliding_second, 5, "{action}");
        let throttled = u64::from(action == PREVIEW_URL);
        assert_eq!(figures.throttled, throttled, "{action}");
    }
    assert_eq!(stats.calls_by_flow.get("100000000000002"), Some(&5));

    let log: Vec<RecordedRequest> = control(&sandbox, "/_sandbox/requests").await;
    let logged: Vec<&str> = log.iter().map(|entry| entry.action.as_str()).collect();
    let mut expected: Vec<&str> = actions.iter().flat_map(|a| [*a; 5]).collect();
    expected.push(PREVIEW_URL);
    assert_eq!(logged, expected, "the log names each call's action");
}

#[tokio::test]
async fn misspelt_or_unknown_actions_are_not_found() {
    let sandbox = sandbox().await;
    for action in ["GetFlowJSONAsset", "listflow", "DeleteFlow"] {
        let answer = Call::read(action, vec![("FlowId", "100000000000002")])
            .send(&sandbox)
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "InvalidAction.NotFound"),
            "{action}"
        );
    }
    let log: Vec<RecordedRequest> = control(&sandbox, "/_sandbox/requests").await;
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].action, "GetFlowJSONAsset");
    assert_eq!(stats(&sandbox).await.rejected, 3);
}

/// Alibaba's Python SDK signs a space as `%20` but sends it as `+`; CAMS accepts that, so the
/// simulation does too, and a `%2B` stays a plus.
#[tokio::test]
async fn plus_in_the_query_is_a_space() {
    let sandbox = sandbox().await;
    let answer = Call {
        wire_query: Some("CustSpaceId=tenant+one&FlowId=100000000000002".to_owned()),
        ..Call::read(
            PREVIEW_URL,
            vec![("FlowId", "100000000000002"), ("CustSpaceId", "tenant one")],
        )
    }
    .send(&sandbox)
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (200, "OK"),
        "{}",
        answer.json
    );
    let url = answer.json["Data"]["PreviewUrl"]
        .as_str()
        .unwrap_or_default();
    assert!(url.ends_with("&space=tenant%20one"), "{url}");

    let plus = Call::read(
        PREVIEW_URL,
        vec![("FlowId", "100000000000002"), ("CustSpaceId", "a+b")],
    )
    .send(&sandbox)
    .await;
    let url = plus.json["Data"]["PreviewUrl"].as_str().unwrap_or_default();
    assert!(url.ends_with("&space=a%2Bb"), "{url}");
}
