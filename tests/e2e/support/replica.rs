//! Gateway processes (replicas) in front of one simulated CAMS, for the tests of what replicas
//! share through Redis.

use std::{net::SocketAddr, time::Duration};

use cams_flows::{
    pb::{GetFlowRequest, GetFlowResponse, flow_service_client::FlowServiceClient},
    sandbox::{Sandbox, SandboxConfig, SandboxHandle, SandboxStats},
};
use tonic::{Code, Status, transport::Channel};

use super::{
    KEY_ID, KEY_SECRET,
    app::call_with_source,
    process::{Running, binary},
    wait,
};

/// A gateway process and a client connected to it.
pub struct Replica {
    pub process: Running,
    pub client: FlowServiceClient<Channel>,
}

impl Replica {
    /// A `cams-flows serve` process in front of the simulated CAMS at `sandbox`, configured by
    /// the environment variables `settings`.
    pub async fn start(sandbox: &str, settings: &[(&str, &str)]) -> Self {
        let mut cmd = binary();
        cmd.arg("serve")
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
            .env("CAMS_FLOWS_ENDPOINT", sandbox)
            .env("CAMS_FLOWS_LISTEN", "127.0.0.1:0")
            .env("CAMS_FLOWS_AUTH_MODE", "none");
        for (key, value) in settings {
            cmd.env(key, value);
        }
        let process = Running::start(&mut cmd);
        let addr: SocketAddr = process.wait_for("listening")["addr"]
            .as_str()
            .expect("addr")
            .parse()
            .expect("socket address");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        Self {
            process,
            client: FlowServiceClient::new(channel),
        }
    }

    /// A call, and how it was served (`x-cams-cache`).
    pub async fn call(
        &self,
        flow: &str,
        tenant: &str,
    ) -> Result<(GetFlowResponse, String), Status> {
        call_with_source(&self.client, flow, tenant).await
    }

    /// How a call that must succeed was served.
    pub async fn source(&self, flow: &str, tenant: &str) -> String {
        match self.call(flow, tenant).await {
            Ok((_, source)) => source,
            Err(status) => panic!("{flow} for {tenant}: {status:?}"),
        }
    }

    pub async fn get(&self, flow: &str, tenant: &str, timeout: Duration) -> Result<(), Status> {
        let mut request = tonic::Request::new(GetFlowRequest {
            flow_id: flow.into(),
            cust_space_id: tenant.into(),
        });
        request.set_timeout(timeout);
        self.client.clone().get_flow(request).await.map(drop)
    }

    /// Calls until a call succeeds: the shared quota admits nothing during the quiet period that
    /// follows a fresh (or restarted) Redis.
    pub async fn get_eventually(&self, flow: &str, tenant: &str) {
        wait::until_every(
            Duration::from_millis(200),
            Duration::from_secs(30),
            &format!("{flow} for {tenant} served"),
            || async {
                let result = self.get(flow, tenant, Duration::from_secs(3)).await;
                if let Err(status) = &result {
                    assert_ne!(status.code(), Code::Internal, "{status:?}");
                }
                result
            },
            Result::is_ok,
        )
        .await
        .expect("served");
    }
}

/// The simulated CAMS with the real quota, its address and a way to read its statistics.
pub async fn sandbox() -> (SandboxHandle, String) {
    let sandbox = Sandbox::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxConfig::new(KEY_ID, KEY_SECRET),
    )
    .await
    .expect("bind");
    let endpoint = sandbox.endpoint();
    (sandbox.spawn(), endpoint)
}

pub async fn stats(endpoint: &str) -> SandboxStats {
    let body = reqwest::get(format!("{endpoint}/_sandbox/stats"))
        .await
        .expect("stats")
        .bytes()
        .await
        .expect("body");
    serde_json::from_slice(&body).expect("JSON")
}
