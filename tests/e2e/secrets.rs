//! Secrets never leak: a full run of the real binaries at trace level (start-up, successes, every
//! kind of error, shutdown), with every line of output searched for the AccessKey secret, the STS
//! token and the callers' API keys.

use std::{process::Command, time::Duration};

use crate::support::process::{Running, binary};
use cams_flows::pb::{GetFlowRequest, flow_service_client::FlowServiceClient};
use tonic::Request;

const SECRET: &str = "AKsecret-9f8e7d6c5b4a-never-in-logs";
const TOKEN: &str = "STStoken-0a1b2c3d4e5f-never-in-logs";
const API_KEY: &str = "cf_apikey_5e4d3c2b1a_never_in_logs";

/// The binary at trace level, with nothing from the test runner's environment but `PATH`.
fn traced() -> Command {
    let mut cmd = binary();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "trace");
    cmd
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
    ]));
    let endpoint = sandbox.wait_for("simulated CAMS listening")["endpoint"]
        .as_str()
        .expect("field")
        .to_owned();

    let dir = std::env::temp_dir().join(format!("cams-flows-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"billing\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n",
            cams_flows::auth::hash_key(API_KEY)
        ),
    )
    .expect("config");
    let mut gateway = Running::start(
        traced()
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--endpoint",
            ])
            .arg(&endpoint)
            .arg("--config")
            .arg(&config)
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIleaktest")
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
            .env("ALIBABA_CLOUD_SECURITY_TOKEN", TOKEN),
    );
    let addr = gateway.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("field")
        .to_owned();
    let mut client = FlowServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    let mut messages = Vec::new();
    let flows = [
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

    // A gateway whose STS token is refused, so that the refusal path is logged too.
    gateway.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = gateway.child.wait();
        (status, gateway)
    })
    .await
    .expect("join");
    let (exit, gateway) = status;
    assert_eq!(exit.expect("exit").code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);

    // Give the reader threads the last lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gateway.output();
    assert!(logs.contains("\"stopped\""), "the whole run was captured");
    assert!(
        logs.lines().count() > 50,
        "trace logging was on: {} lines",
        logs.lines().count()
    );
    for secret in [SECRET, TOKEN, API_KEY] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the gateway's output"
        );
        for m in &messages {
            assert!(!m.contains(secret), "{secret} leaked to a caller: {m}");
        }
    }
    // The sandbox logs are checked for the token and key as well (the secret is its own flag).
    let sandbox_logs = sandbox.output();
    for secret in [SECRET, TOKEN, API_KEY] {
        assert!(
            !sandbox_logs.contains(secret),
            "{secret} leaked into the sandbox's output"
        );
    }
}
