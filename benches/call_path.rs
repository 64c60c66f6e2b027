//! Cost of the pieces of one GetFlow call, in time and in heap allocations: the gateway's whole
//! handler on the cache-hit and the rejection path (from the decoded request to the response
//! message, without the transport), ACS3 signing, decoding CAMS's answer, building and encoding
//! the gRPC answer, and mapping a CAMS error to a status with its details.
//! Run: `cargo bench --bench call_path` (release build; prints a Markdown table).
//!
//! Allocations are counted by an instrumented system allocator, so the times here are with the
//! system allocator, not the binaries' mimalloc; the counts do not depend on the allocator.

use std::{
    alloc::System, hint::black_box, net::SocketAddr, num::NonZeroU32, sync::Arc, time::Instant,
};

use cams_flows::{
    app,
    cams::{ApiError, CamsError, client::SignedRead, wire},
    clock,
    config::Config,
    credentials::{Credentials, StaticCredentials},
    domain::{Action, Data, FlowId, Read, TenantId},
    error::Error,
    grpc::{FlowApi, status::to_status},
    limits::Quota,
    pb::{self, GetFlowRequest, flow_service_server::FlowService},
    sandbox::{Sandbox, SandboxConfig},
};
use prost::Message;
use secrecy::SecretString;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The documented GetFlow answer, as CAMS sends it.
const DOC_BODY: &[u8] = br#"{"RequestId":"DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n","Code":"OK","Message":"None","Data":{"Status":"DRAFT","FlowId":"926753328126430","FlowName":"flow_001","Categories":["SIGN_UP"],"JSONVersion":"2.1","DataApiVersion":"3.0","PreviewUrl":"https://pre-url","PreviewUrlExpires":1700617436633}}"#;

/// A sample flow of the simulated CAMS whose preview URL does not expire, so that it is cached.
const SAMPLE_FLOW: &str = "sim:ok:0";

struct Cost {
    ns: f64,
    allocations: f64,
    bytes: f64,
}

/// Time per call over `rounds`, then allocations per call over a second pass.
fn measure(rounds: u32, mut op: impl FnMut()) -> Cost {
    for _ in 0..rounds / 10 {
        op();
    }
    let started = Instant::now();
    for _ in 0..rounds {
        op();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(rounds);
    let region = Region::new(GLOBAL);
    for _ in 0..rounds {
        op();
    }
    let change = region.change();
    Cost {
        ns,
        allocations: change.allocations as f64 / f64::from(rounds),
        bytes: change.bytes_allocated as f64 / f64::from(rounds),
    }
}

/// What the client does before sending an attempt: a fresh date and nonce, then the signature.
fn sign_one(read: &Read, credentials: &Credentials) {
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let signed = SignedRead::of(
        "cams.ap-southeast-1.aliyuncs.com",
        read,
        credentials,
        &date,
        &nonce,
    );
    black_box(signed.authorization);
}

fn credentials() -> Credentials {
    Credentials::new(
        "bench-key".to_owned(),
        SecretString::from("bench-secret".to_owned()),
        None,
    )
}

/// The gateway's service as the server builds it, with the default configuration but for the
/// tenant quota. Its background loops run in `tasks`.
async fn api(endpoint: &str, tenant: Quota, tasks: &mut app::Tasks) -> FlowApi {
    let mut config = Config::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        endpoint.parse().expect("sandbox endpoint"),
    );
    config.limits.tenant = tenant;
    let credentials = Arc::new(StaticCredentials::new(credentials()));
    app::flow_api(
        &config,
        credentials,
        clock::system(),
        Default::default(),
        tasks,
    )
    .await
    .expect("gateway")
    .api
}

fn request(tenant: &str) -> tonic::Request<GetFlowRequest> {
    tonic::Request::new(GetFlowRequest {
        flow_id: SAMPLE_FLOW.into(),
        cust_space_id: tenant.into(),
    })
}

fn row(name: &str, cost: &Cost) {
    println!(
        "| {name} | {:.0} | {:.1} | {:.0} |",
        cost.ns, cost.allocations, cost.bytes
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = runtime
        .block_on(Sandbox::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SandboxConfig::new("bench-key", "bench-secret"),
        ))
        .expect("simulated CAMS");
    let endpoint = sandbox.endpoint();
    let _sandbox = runtime.block_on(async { sandbox.spawn() });
    // The gateway's background loops are spawned, so it is built inside the runtime.
    let _inside = runtime.enter();

    let lifted = Quota {
        rps: 1e9,
        burst: NonZeroU32::new(100_000).expect("non-zero"),
    };
    let tight = Quota {
        rps: 0.001,
        burst: NonZeroU32::new(1).expect("non-zero"),
    };
    let mut tasks = app::Tasks::default();
    let hit_api = runtime.block_on(api(&endpoint, lifted, &mut tasks));
    let reject_api = runtime.block_on(api(&endpoint, tight, &mut tasks));
    runtime.block_on(async {
        // Fills the cache, and spends the tight tenant's only token.
        for api in [&hit_api, &reject_api] {
            api.get_flow(request("cams-kei1"))
                .await
                .expect("first call");
        }
    });
    let hit = measure(200_000, || {
        let served = runtime.block_on(hit_api.get_flow(request("cams-kei1")));
        assert!(served.is_ok());
    });
    let rejected = measure(200_000, || {
        let refused = runtime.block_on(reject_api.get_flow(request("cams-kei1")));
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(tonic::Code::ResourceExhausted)
        );
    });

    let read = Read::flow(
        TenantId::parse("cams-kei1").expect("tenant"),
        FlowId::parse("926753328126430").expect("flow"),
    );
    let keys = credentials();
    let sign = measure(200_000, || sign_one(&read, &keys));
    let decode = measure(200_000, || {
        black_box(wire::decode(Action::GetFlow, 200, black_box(DOC_BODY), None).expect("decodes"));
    });
    let answer = wire::decode(Action::GetFlow, 200, DOC_BODY, None).expect("decodes");
    let Data::Flow(flow) = &answer.data else {
        panic!("GetFlow decodes to a flow");
    };
    let respond = measure(200_000, || {
        let response = pb::GetFlowResponse {
            flow: Some(pb::Flow::from(flow)),
            request_id: answer.request_id.clone(),
        };
        black_box(response.encode_to_vec());
    });
    let denied = Error::Cams(CamsError::Api(ApiError {
        code: "Ram.PermissionDeny".into(),
        message: "You are not authorized to perform the operation.".into(),
        request_id: "A10DB3C4-2F76-4333-B08C-F3BD170C6260".into(),
        http_status: 403,
        retry_after: None,
        recommend: None,
    }));
    let status = measure(200_000, || {
        black_box(to_status(black_box(&denied)));
    });

    println!("| step | ns per call | allocations per call | bytes allocated per call |");
    println!("|---|---:|---:|---:|");
    row(
        "whole handler, cache hit (auth, validation, tenant limit, cache, response message)",
        &hit,
    );
    row(
        "whole handler, tenant limit refusal (status with ErrorInfo, QuotaFailure, RetryInfo)",
        &rejected,
    );
    row(
        "ACS3 signing (canonical query, date, nonce, signature, Authorization)",
        &sign,
    );
    row("decoding CAMS's documented answer", &decode);
    row("building and encoding the gRPC answer", &respond);
    row("mapping a CAMS error to a status with details", &status);
}
