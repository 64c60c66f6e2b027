//! Gateway processes (replicas) in front of one simulated CAMS, for the tests of what replicas
//! share through Redis. Each replica learns its account from a simulated STS ([`sts`]), as it
//! learns it from STS in production.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use cams_flows::{
    pb::{GetFlowRequest, GetFlowResponse, flow_service_client::FlowServiceClient},
    sandbox::{
        Identity, IdentityConfig, Keyring, Sandbox, SandboxConfig, SandboxHandle, SandboxStats,
    },
};
use secrecy::SecretString;
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
    /// A `cams-flows serve` process in front of the simulated CAMS at `sandbox`, asking the
    /// simulated STS of [`sts`] who it is, configured by the environment variables `settings`
    /// (which may name another STS).
    pub async fn start(sandbox: &str, settings: &[(&str, &str)]) -> Self {
        let mut cmd = binary();
        cmd.arg("serve")
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
            .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
            .env("ALIBABA_CLOUD_STS_ENDPOINT", &sts().endpoint)
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

/// The simulated CAMS with the real quota, its address and a way to read its statistics. It
/// accepts the keys the simulated STS of [`sts`] issues.
pub async fn sandbox() -> (SandboxHandle, String) {
    let mut config = SandboxConfig::new(KEY_ID, KEY_SECRET);
    config.keyring = Arc::clone(&sts().keyring);
    let sandbox = Sandbox::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
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

/// The simulated STS the replicas ask who they are: one for the whole test binary, on a thread
/// of its own (each test has its own runtime), so that every replica learns the simulated
/// account without a change to the tests that start them. It knows the tests' AccessKey, and
/// the keys it issues (`AssumeRole` signed by that key) are accepted by every simulated CAMS of
/// [`sandbox`], which share its keyring.
pub struct SharedSts {
    pub endpoint: String,
    keyring: Arc<Keyring>,
}

pub fn sts() -> &'static SharedSts {
    static STS: OnceLock<SharedSts> = OnceLock::new();
    STS.get_or_init(|| {
        let keyring = Arc::new(Keyring::default());
        let mut config = IdentityConfig::new(Arc::clone(&keyring));
        config.signers = vec![(KEY_ID.to_owned(), SecretString::from(KEY_SECRET.to_owned()))];
        let (started, endpoint) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime of the simulated STS");
            runtime.block_on(async move {
                let identity = Identity::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
                    .await
                    .expect("bind the simulated STS");
                started.send(identity.endpoint()).expect("endpoint");
                identity.run_until(std::future::pending()).await
            })
        });
        SharedSts {
            endpoint: endpoint.recv().expect("the simulated STS started"),
            keyring,
        }
    })
}
