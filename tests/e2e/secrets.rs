//! Secrets never leak: full runs of the real binaries at trace level (start-up, successes, every
//! kind of error, credential refreshes, shutdown), with every line of output searched for every
//! secret: the AccessKey secret, the STS token, the callers' API keys, the OIDC token, and the
//! keys, tokens and metadata session tokens the simulated STS and metadata service issued to the
//! gateways running on RRSA and on an ECS role with AssumeRole on top.

use std::{path::Path, process::Command, time::Duration};

use crate::support::process::{Running, binary};
use cams_flows::{
    pb::{GetFlowRequest, flow_service_client::FlowServiceClient},
    sandbox::IssuedSecrets,
};
use tonic::Request;

const SECRET: &str = "AKsecret-9f8e7d6c5b4a-never-in-logs";
const TOKEN: &str = "STStoken-0a1b2c3d4e5f-never-in-logs";
const API_KEY: &str = "cf_apikey_5e4d3c2b1a_never_in_logs";
/// A JWT's shape, so that the simulated STS takes it; its payload is searched for on its own too.
const OIDC_PAYLOAD: &str = "b2lkYy1wYXlsb2FkLW5ldmVyLWluLWxvZ3M";
/// Issued keys live this long, so that the gateways refresh them while the test runs.
const LIFETIME_SECS: &str = "3";

fn oidc_token() -> String {
    format!("eyJhbGciOiJSUzI1NiJ9.{OIDC_PAYLOAD}.c2lnLW5ldmVyLWluLWxvZ3M")
}

/// The binary at trace level, with nothing from the test runner's environment but `PATH`.
fn traced() -> Command {
    let mut cmd = binary();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "trace")
        .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    cmd
}

/// `serve` against the simulated CAMS at `endpoint`, with the API-key configuration.
fn gateway(endpoint: &str, config: &Path) -> Command {
    let mut cmd = traced();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--endpoint",
    ])
    .arg(endpoint)
    .arg("--config")
    .arg(config);
    cmd
}

/// Every kind of answer CAMS gives.
const EVERY_ANSWER: &[&str] = &[
    "100000000000002",
    "926753328126430",
    "sim:error:Ram.PermissionDeny",
    "sim:error:SignatureDoesNotMatch",
    "sim:error:InvalidAccessKeyId.NotFound",
    "sim:error:Throttling.User",
    "sim:error:ServiceUnavailable",
    "sim:html",
    "sim:garbage",
    "sim:huge",
    "sim:reset",
    "404404404",
    "",
];

/// What the gateways on temporary credentials are asked: a success and the refusals that name
/// credentials.
const CREDENTIAL_ANSWERS: &[&str] = &[
    "100000000000002",
    "sim:error:InvalidAccessKeyId.NotFound",
    "sim:error:SignatureDoesNotMatch",
    "404404404",
];

/// `flows` with a good key, none and a wrong one; the callers' view of each.
async fn exercise(addr: &str, flows: &[&str]) -> Vec<String> {
    let mut client = FlowServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let mut messages = Vec::new();
    for (i, flow) in flows.iter().enumerate() {
        for key in [Some(API_KEY), None, Some("cf_wrong_key")] {
            let mut request = Request::new(GetFlowRequest {
                flow_id: (*flow).into(),
                cust_space_id: format!("space-{i}"),
            });
            request.set_timeout(Duration::from_secs(5));
            if let Some(key) = key {
                request.metadata_mut().insert(
                    "authorization",
                    format!("Bearer {key}").parse().expect("ascii"),
                );
            }
            match client.get_flow(request).await {
                Ok(r) => messages.push(format!("{:?}", r.into_inner())),
                Err(status) => messages.push(format!("{status:?}")),
            }
        }
    }
    assert!(
        messages.iter().any(|m| m.contains("order_status")),
        "a call succeeded"
    );
    messages
}

/// Stops a process with SIGTERM and returns everything it wrote, to the end.
async fn stop(process: Running) -> String {
    process.signal("TERM");
    let (exit, output) = tokio::task::spawn_blocking(move || {
        let mut process = process;
        let status = process.exit_within(Duration::from_secs(30));
        (status, process.all_output())
    })
    .await
    .expect("join");
    assert_eq!(exit.code(), Some(0), "{output}");
    output
}

/// Stops a gateway with SIGTERM and returns everything it wrote.
async fn stop_gateway(gateway: Running) -> String {
    let logs = stop(gateway).await;
    assert!(logs.contains("\"stopped\""), "the whole run was captured");
    assert!(
        logs.lines().count() > 20,
        "trace logging was on: {} lines",
        logs.lines().count()
    );
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_output_or_error() {
    let sandbox = Running::start(traced().args([
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--access-key-id",
        "LTAIleaktest",
        "--access-key-secret",
        SECRET,
        "--security-token",
        TOKEN,
        "--rps",
        "1000",
        "--sts-listen",
        "127.0.0.1:0",
        "--sts-lifetime-secs",
        LIFETIME_SECS,
    ]));
    let endpoint = sandbox.wait_for("simulated CAMS listening")["endpoint"]
        .as_str()
        .expect("field")
        .to_owned();
    let identity = sandbox.wait_for("simulated STS and ECS metadata service listening")["endpoint"]
        .as_str()
        .expect("field")
        .to_owned();

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"billing\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n",
            cams_flows::auth::hash_key(API_KEY)
        ),
    )
    .expect("config");
    let token_file = dir.path().join("oidc-token");
    std::fs::write(&token_file, oidc_token()).expect("token");

    let mut logs = Vec::new();
    let mut messages = Vec::new();

    // A long-lived AccessKey with an STS token, from the environment.
    let env = Running::start(
        gateway(&endpoint, &config)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIleaktest")
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN),
    );
    let addr = env.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("field")
        .to_owned();
    messages.extend(exercise(&addr, EVERY_ANSWER).await);
    logs.push(stop_gateway(env).await);

    // RRSA: the OIDC token traded at the simulated STS, refreshed while the calls run.
    let oidc = Running::start(
        gateway(&endpoint, &config)
            .env("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1234:role/cams")
            .env(
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN",
                "acs:ram::1234:oidc-provider/ack",
            )
            .env("ALIBABA_CLOUD_OIDC_TOKEN_FILE", &token_file)
            .env("ALIBABA_CLOUD_STS_ENDPOINT", &identity),
    );
    let ready = oidc.wait_for("credentials ready");
    assert_eq!(ready["provider"], "oidc_role_arn", "{ready}");
    assert!(
        ready["expires_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z')),
        "{ready}"
    );
    let addr = oidc.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("field")
        .to_owned();
    messages.extend(exercise(&addr, CREDENTIAL_ANSWERS).await);
    // Keys of a few seconds: a refresh comes within the reader's bound, and the calls after it
    // are signed with the new keys.
    let refreshed = tokio::task::spawn_blocking(move || {
        oidc.wait_for("credentials refreshed");
        oidc
    })
    .await
    .expect("join");
    messages.extend(exercise(&addr, CREDENTIAL_ANSWERS).await);
    logs.push(stop_gateway(refreshed).await);

    // The ECS role from the simulated metadata service (IMDSv2), with AssumeRole on top: the
    // role's STS token signs AssumeRole.
    let ecs = Running::start(
        gateway(&endpoint, &config)
            .env("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "false")
            .env("ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT", &identity)
            .env("ALIBABA_CLOUD_STS_ENDPOINT", &identity)
            .args(["--credentials-assume-role-arn", "acs:ram::1234:role/reader"]),
    );
    let ready = ecs.wait_for("credentials ready");
    assert_eq!(ready["provider"], "ram_role_arn", "{ready}");
    let addr = ecs.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("field")
        .to_owned();
    messages.extend(exercise(&addr, CREDENTIAL_ANSWERS).await);
    logs.push(stop_gateway(ecs).await);

    let body = reqwest::get(format!("{identity}/_sandbox/issued"))
        .await
        .expect("issued")
        .bytes()
        .await
        .expect("issued body");
    let issued: IssuedSecrets = serde_json::from_slice(&body).expect("issued JSON");
    assert!(
        issued.keys.len() >= 4,
        "OIDC, ECS and AssumeRole keys: {}",
        issued.keys.len()
    );
    assert!(!issued.metadata_tokens.is_empty());
    let token = oidc_token();
    let mut secrets = vec![SECRET, TOKEN, API_KEY, token.as_str(), OIDC_PAYLOAD];
    for key in &issued.keys {
        secrets.push(&key.access_key_secret);
        secrets.push(&key.security_token);
    }
    secrets.extend(issued.metadata_tokens.iter().map(String::as_str));

    let sandbox_logs = stop(sandbox).await;
    for secret in secrets {
        for log in &logs {
            assert!(
                !log.contains(secret),
                "{secret} leaked into a gateway's output"
            );
        }
        for m in &messages {
            assert!(!m.contains(secret), "{secret} leaked to a caller: {m}");
        }
        // The sandbox was given the AccessKey secret as a flag; nothing else may show.
        assert!(
            !sandbox_logs.contains(secret),
            "{secret} leaked into the sandbox's output"
        );
    }
}
