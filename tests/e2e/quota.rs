//! The quota seen before it is spent: the RateLimit metadata of every answer, QuotaService's
//! GetQuota (which spends nothing), and limits in shadow (evaluated, counted, never refusing),
//! through the real gateway over loopback, with the limits in process and shared through Redis.
//!
//! The limits here refill slowly (one call per 100 s, or per 2 s where a reset is awaited),
//! so that what a burst of calls spends does not depend on how fast a loaded host sends them.

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    time::Duration,
};

use cams_flows::{
    auth::{ApiKey, AuthConfig, AuthMode, CallerQuotas, TenantSet},
    domain::TenantId,
    limits::{LimitsConfig, Quota, ShadowLimits},
    pb::{
        GetFlowRequest, GetQuotaRequest, GetQuotaResponse, Limit,
        quota_service_client::QuotaServiceClient,
    },
    store::RedisConfig,
};
use futures_util::future::join_all;
use sha2::Digest;
use tonic::{Code, Status, metadata::MetadataMap};

use crate::support::{TestApp, TestAppBuilder, error_info, redis::RedisServer, wait};

const FLOW: &str = "100000000000002";
const KEY: &str = "cf_quota_key";

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

fn tenant(id: &str) -> TenantId {
    TenantId::parse(id).expect("valid tenant")
}

/// `tenant` limited to `q`, with the cache on (hits are what a burst is made of) and room to
/// wait for the account's first slot (a fresh Redis's quiet period).
fn limited(builder: TestAppBuilder, id: &str, q: Quota, shadow: ShadowLimits) -> TestAppBuilder {
    builder
        .limits(LimitsConfig {
            tenants: HashMap::from([(tenant(id), q)]),
            shadow,
            max_wait: Duration::from_secs(8),
            ..LimitsConfig::default()
        })
        .config(|c| c.cache.ttl = Duration::from_secs(300))
}

/// With the limits shared through a Redis of their own (and the account's quota with them).
fn shared(builder: TestAppBuilder, redis: &RedisServer) -> TestAppBuilder {
    let url = redis.url();
    let prefix = format!("quota-{}", uuid::Uuid::new_v4().simple());
    builder.config(move |c| {
        c.redis = Some(RedisConfig {
            timeout: Duration::from_millis(500),
            account: None,
            ..RedisConfig::standalone(url, prefix)
        });
    })
}

/// One `ratelimit` item: the binding limit's name, what it leaves, seconds until it is whole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    name: String,
    remaining: u32,
    reset: u64,
}

fn header<'a>(metadata: &'a MetadataMap, name: &str) -> Option<&'a str> {
    metadata
        .get(name)
        .map(|v| v.to_str().expect("ascii metadata"))
}

/// The `ratelimit` metadata, parsed as the draft writes it: `"name";r=N;t=S`.
fn binding(metadata: &MetadataMap) -> Option<Binding> {
    let value = header(metadata, "ratelimit")?;
    let mut parts = value.split(';');
    let name = parts.next()?.trim().trim_matches('"').to_owned();
    let mut remaining = None;
    let mut reset = None;
    for part in parts {
        match part.split_once('=') {
            Some(("r", n)) => remaining = n.parse().ok(),
            Some(("t", n)) => reset = n.parse().ok(),
            _ => panic!("an unknown parameter in ratelimit: {value:?}"),
        }
    }
    Some(Binding {
        name,
        remaining: remaining.unwrap_or_else(|| panic!("no r= in {value:?}")),
        reset: reset.unwrap_or_else(|| panic!("no t= in {value:?}")),
    })
}

/// A GetFlow call as `key` (if any) and the metadata of its answer, success or failure.
async fn get_flow(
    app: &TestApp,
    space: &str,
    key: Option<&str>,
) -> (Result<(), Status>, MetadataMap) {
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: FLOW.into(),
        cust_space_id: space.into(),
    });
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii"),
        );
    }
    match app.client.clone().get_flow(request).await {
        Ok(response) => (Ok(()), response.metadata().clone()),
        Err(status) => {
            let metadata = status.metadata().clone();
            (Err(status), metadata)
        }
    }
}

async fn get_quota(
    app: &TestApp,
    space: &str,
    key: Option<&str>,
) -> Result<GetQuotaResponse, Status> {
    let mut request = tonic::Request::new(GetQuotaRequest {
        cust_space_id: space.into(),
    });
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii"),
        );
    }
    QuotaServiceClient::new(app.channel.clone())
        .get_quota(request)
        .await
        .map(tonic::Response::into_inner)
}

fn tenant_limit(answer: &GetQuotaResponse) -> &Limit {
    answer.tenant.as_ref().expect("the tenant's limit")
}

/// The first call of a tenant fills the cache (it needs the account's quota; with a fresh Redis
/// that may wait out its quiet period); the later ones are hits.
async fn warm(app: &TestApp, space: &str, key: Option<&str>) {
    let (outcome, _) = get_flow(app, space, key).await;
    outcome.expect("the first call is served");
}

/// Waits until GetQuota shows the tenant's burst whole again (it spends nothing to look).
async fn until_whole(app: &TestApp, space: &str, bound: Duration) -> GetQuotaResponse {
    wait::until(
        bound,
        "the tenant's burst whole again",
        || async { get_quota(app, space, None).await.expect("GetQuota") },
        |answer| {
            let limit = tenant_limit(answer);
            limit.remaining == limit.burst
        },
    )
    .await
}

/// A burst spends the tenant's limit one call at a time, each answer saying so, down to a
/// refusal that says nothing is left; once the limit is whole again, so is the metadata.
async fn metadata_decreases_over_a_burst_then_resets(app: &TestApp, space: &str) {
    const BURST: u32 = 4;
    warm(app, space, None).await;
    until_whole(app, space, Duration::from_secs(20)).await;

    let mut seen = Vec::new();
    for _ in 0..BURST {
        let (outcome, metadata) = get_flow(app, space, None).await;
        outcome.expect("within the burst");
        assert_eq!(
            header(&metadata, "ratelimit-policy"),
            Some("\"tenant\";q=4;w=8"),
            "a burst of 4 at 0.5 calls/s comes back whole in 8 s"
        );
        let now = binding(&metadata).expect("ratelimit on a success");
        assert_eq!(now.name, "tenant");
        assert!(
            now.reset >= 1,
            "a spent call takes time to come back: {now:?}"
        );
        seen.push(now.remaining);
    }
    assert!(
        seen.windows(2).all(|w| w[1] < w[0]),
        "remaining strictly decreasing over the burst: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&0), "the burst spent: {seen:?}");

    let (outcome, metadata) = get_flow(app, space, None).await;
    let status = outcome.expect_err("over the burst");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(error_info(&status).reason, "TENANT_RATE_LIMITED");
    let refused = binding(&metadata).expect("ratelimit on a refusal, in its trailers");
    assert_eq!((refused.name.as_str(), refused.remaining), ("tenant", 0));
    assert!(refused.reset >= 1, "{refused:?}");

    until_whole(app, space, Duration::from_secs(20)).await;
    let (outcome, metadata) = get_flow(app, space, None).await;
    outcome.expect("the burst is back");
    assert_eq!(
        binding(&metadata).map(|b| b.remaining),
        Some(BURST - 1),
        "the metadata is back up with the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_decreases_over_a_burst_and_resets_in_process() {
    let app = limited(
        TestApp::builder(),
        "t-meta",
        quota(0.5, 4),
        ShadowLimits::default(),
    )
    .spawn()
    .await;
    metadata_decreases_over_a_burst_then_resets(&app, "t-meta").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_decreases_over_a_burst_and_resets_with_redis() {
    let redis = RedisServer::start();
    let app = shared(
        limited(
            TestApp::builder(),
            "t-meta",
            quota(0.5, 4),
            ShadowLimits::default(),
        ),
        &redis,
    )
    .spawn()
    .await;
    metadata_decreases_over_a_burst_then_resets(&app, "t-meta").await;
}

/// `server.ratelimit_metadata = false`: no RateLimit metadata, on a success or a refusal.
#[tokio::test]
async fn metadata_off_sends_none() {
    let app = limited(
        TestApp::builder(),
        "t-quiet",
        quota(0.01, 2),
        ShadowLimits::default(),
    )
    .config(|c| c.ratelimit_metadata = false)
    .spawn()
    .await;
    let mut refused = false;
    for _ in 0..3 {
        let (outcome, metadata) = get_flow(&app, "t-quiet", None).await;
        refused |= outcome.is_err();
        assert!(
            header(&metadata, "ratelimit").is_none()
                && header(&metadata, "ratelimit-policy").is_none(),
            "{metadata:?}"
        );
    }
    assert!(refused, "the third call is over the burst");
}

/// With a caller's own limit too, both are listed, and the one with fewer calls left binds.
#[tokio::test]
async fn the_limit_with_fewer_calls_left_binds() {
    let app = limited(
        TestApp::builder(),
        "t-both",
        quota(0.01, 10),
        ShadowLimits::default(),
    )
    .auth(api_key(CallerQuotas {
        by_name: HashMap::from([("billing".to_owned(), quota(0.01, 3))]),
        ..CallerQuotas::default()
    }))
    .spawn()
    .await;
    let (outcome, metadata) = get_flow(&app, "t-both", Some(KEY)).await;
    outcome.expect("served");
    assert_eq!(
        header(&metadata, "ratelimit-policy"),
        Some("\"tenant\";q=10;w=1000, \"caller\";q=3;w=300")
    );
    assert_eq!(
        binding(&metadata).map(|b| (b.name, b.remaining)),
        Some(("caller".to_owned(), 2))
    );
}

/// One API key, `billing`, that may read every tenant, with these limits.
fn api_key(callers: CallerQuotas) -> AuthConfig {
    AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![ApiKey {
            name: "billing".into(),
            sha256: sha2::Sha256::digest(KEY.as_bytes()).into(),
            tenants: TenantSet::parse(&["t-*".to_owned()]).expect("patterns"),
        }],
        identities: HashMap::new(),
        callers,
        admins: Default::default(),
        anonymous_admin: false,
    }
}

/// GetQuota called a thousand times spends nothing of the tenant's limit nor the caller's:
/// afterwards exactly what was left passes, then a refusal. It answers each CAMS action's
/// account budget, and only for tenants the caller may read.
async fn get_quota_spends_nothing(shared_by: Option<&RedisServer>) {
    let mut builder = limited(
        TestApp::builder(),
        "t-poll",
        quota(0.01, 5),
        ShadowLimits::default(),
    )
    .auth(api_key(CallerQuotas {
        by_name: HashMap::from([("billing".to_owned(), quota(0.01, 20))]),
        ..CallerQuotas::default()
    }));
    if let Some(redis) = shared_by {
        builder = shared(builder, redis);
    }
    let app = builder.spawn().await;
    warm(&app, "t-poll", Some(KEY)).await;

    let before = get_quota(&app, "t-poll", Some(KEY))
        .await
        .expect("GetQuota");
    let tenant_before = tenant_limit(&before).clone();
    assert_eq!(
        (
            tenant_before.name.as_str(),
            tenant_before.rps,
            tenant_before.burst,
            tenant_before.remaining
        ),
        ("tenant", 0.01, 5, 4),
        "{before:?}"
    );
    assert!(!tenant_before.shadow);
    let caller_before = before.caller.clone().expect("the caller's limit");
    assert_eq!(
        (
            caller_before.name.as_str(),
            caller_before.burst,
            caller_before.remaining
        ),
        ("caller", 20, 19)
    );
    let actions: Vec<_> = before
        .actions
        .iter()
        .map(|a| (a.action.as_str(), a.account_rps))
        .collect();
    assert_eq!(
        actions,
        [
            ("GetFlow", 5),
            ("ListFlow", 5),
            ("GetFlowPreviewUrl", 5),
            ("GetFlowJSONAssest", 5)
        ]
    );

    for _ in 0..1000 {
        let answer = get_quota(&app, "t-poll", Some(KEY))
            .await
            .expect("GetQuota");
        assert_eq!(tenant_limit(&answer).remaining, 4);
        assert_eq!(answer.caller.as_ref().map(|c| c.remaining), Some(19));
    }

    for i in 0..4 {
        let (outcome, _) = get_flow(&app, "t-poll", Some(KEY)).await;
        outcome.unwrap_or_else(|e| panic!("call {i} of the 4 left: {e:?}"));
    }
    let (outcome, _) = get_flow(&app, "t-poll", Some(KEY)).await;
    let status = outcome.expect_err("the burst is spent");
    assert_eq!(error_info(&status).reason, "TENANT_RATE_LIMITED");
    let after = get_quota(&app, "t-poll", Some(KEY))
        .await
        .expect("GetQuota");
    assert_eq!(tenant_limit(&after).remaining, 0);
    assert_eq!(
        after.caller.map(|c| c.remaining),
        Some(14),
        "the caller's own limit admitted the refused call before the tenant's refused it"
    );

    let status = get_quota(&app, "other", Some(KEY))
        .await
        .expect_err("a tenant the key may not read");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(error_info(&status).reason, "TENANT_NOT_ALLOWED");
    let status = get_quota(&app, "t-poll", None).await.expect_err("no key");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_quota_spends_nothing_in_process() {
    get_quota_spends_nothing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_quota_spends_nothing_with_redis() {
    let redis = RedisServer::start();
    get_quota_spends_nothing(Some(&redis)).await;
}

/// `n` calls for `space` fired at once: how many were refused, and for which reasons.
async fn fire(app: &TestApp, space: &str, key: Option<&str>, n: usize) -> (usize, HashSet<String>) {
    let outcomes = join_all((0..n).map(|_| get_flow(app, space, key))).await;
    let mut refused = 0;
    let mut reasons = HashSet::new();
    for (outcome, _) in outcomes {
        if let Err(status) = outcome {
            refused += 1;
            reasons.insert(error_info(&status).reason);
        }
    }
    (refused, reasons)
}

/// `cams_flows_shadow_rejections_total` for `reason` and `tenant`, as scraped.
fn shadow_rejections(text: &str, reason: &str, tenant: &str) -> u64 {
    let series =
        format!("cams_flows_shadow_rejections_total{{reason=\"{reason}\",tenant=\"{tenant}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

const LOAD: usize = 30;

/// The same load against the same limit, enforced and in shadow (`make(true)`): the shadow run
/// refuses none and counts as would-be refusals exactly the enforced run's refusals.
async fn shadow_matches_enforced(
    make: impl Fn(bool) -> TestAppBuilder,
    space: &str,
    key: Option<&str>,
    reason: &str,
) {
    let enforced = make(false).admin().spawn().await;
    warm(&enforced, space, key).await;
    let (refused, reasons) = fire(&enforced, space, key, LOAD).await;
    assert!(refused > 0 && refused < LOAD, "{refused} of {LOAD} refused");
    assert_eq!(reasons, HashSet::from([reason.to_owned()]));
    assert_eq!(
        shadow_rejections(&enforced.scrape().await, reason, space),
        0,
        "nothing in shadow"
    );

    let shadowed = make(true).admin().spawn().await;
    warm(&shadowed, space, key).await;
    let (none, reasons) = fire(&shadowed, space, key, LOAD).await;
    assert_eq!(
        (none, reasons),
        (0, HashSet::new()),
        "the shadow run refuses none"
    );
    let would_have = shadow_rejections(&shadowed.scrape().await, reason, space);
    assert_eq!(
        would_have, refused as u64,
        "would-be refusals in shadow = refusals enforced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_in_shadow_would_refuse_what_enforced_refuses() {
    shadow_matches_enforced(
        |shadowed| {
            let shadow = ShadowLimits {
                all: false,
                tenants: shadowed
                    .then(|| (tenant("t-shadow"), true))
                    .into_iter()
                    .collect(),
            };
            limited(TestApp::builder(), "t-shadow", quota(0.01, 5), shadow)
        },
        "t-shadow",
        None,
        "TENANT_RATE_LIMITED",
    )
    .await;
}

/// The key's own `shadow`; the tenant's limit is roomy, and enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_in_shadow_would_refuse_what_enforced_refuses() {
    shadow_matches_enforced(
        |shadowed| {
            let mut callers = CallerQuotas {
                by_name: HashMap::from([("billing".to_owned(), quota(0.01, 4))]),
                ..CallerQuotas::default()
            };
            if shadowed {
                callers.shadowed.insert("billing".to_owned(), true);
            }
            limited(
                TestApp::builder(),
                "t-caller",
                quota(0.01, 100),
                ShadowLimits::default(),
            )
            .auth(api_key(callers))
        },
        "t-caller",
        Some(KEY),
        "CALLER_RATE_LIMITED",
    )
    .await;
}

/// `limits.shadow`, with the limits shared through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_in_shadow_with_redis_would_refuse_what_enforced_refuses() {
    let redis = RedisServer::start();
    shadow_matches_enforced(
        |shadowed| {
            let shadow = ShadowLimits {
                all: shadowed,
                tenants: HashMap::new(),
            };
            shared(
                limited(TestApp::builder(), "t-redis", quota(0.01, 5), shadow),
                &redis,
            )
        },
        "t-redis",
        None,
        "TENANT_RATE_LIMITED",
    )
    .await;
}

/// Reflection lists QuotaService and describes GetQuota as free of side effects (clients and
/// proxies may retry it, and HTTP gateways may send it as a GET).
#[tokio::test]
async fn reflection_lists_quota_service() {
    use prost::Message as _;
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };

    let app = crate::support::spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let mut ask = async |request: MessageRequest| {
        client
            .server_reflection_info(tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(request),
            }]))
            .await
            .expect("reflection")
            .into_inner()
            .message()
            .await
            .expect("stream")
            .expect("response")
            .message_response
    };
    let Some(MessageResponse::ListServicesResponse(list)) =
        ask(MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a list of services")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "cams.flows.v1.QuotaService"),
        "{list:?}"
    );

    let Some(MessageResponse::FileDescriptorResponse(files)) = ask(
        MessageRequest::FileContainingSymbol("cams.flows.v1.QuotaService".into()),
    )
    .await
    else {
        panic!("no descriptor for QuotaService")
    };
    let methods: Vec<_> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("proto"))
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "QuotaService")
        .flat_map(|service| service.method)
        .map(|m| {
            (
                m.name().to_owned(),
                m.input_type().to_owned(),
                m.output_type().to_owned(),
                m.options.map(|o| o.idempotency_level()),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [(
            "GetQuota".to_owned(),
            ".cams.flows.v1.GetQuotaRequest".to_owned(),
            ".cams.flows.v1.GetQuotaResponse".to_owned(),
            Some(prost_types::method_options::IdempotencyLevel::NoSideEffects),
        )]
    );
}

/// A call a limit in shadow would have refused is not charged to the next limit in shadow (an
/// enforced refusal would never have reached it), but an enforced limit still checks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_would_be_refusal_is_charged_to_enforced_limits_only() {
    const SPACE: &str = "t-chain";
    let app = |every: bool, key: bool| {
        let mut callers = CallerQuotas {
            by_name: HashMap::from([("billing".to_owned(), quota(0.01, 2))]),
            ..CallerQuotas::default()
        };
        if key {
            callers.shadowed.insert("billing".to_owned(), true);
        }
        let shadow = ShadowLimits {
            all: every,
            tenants: HashMap::new(),
        };
        limited(TestApp::builder(), SPACE, quota(0.01, 3), shadow)
            .auth(api_key(callers))
            .admin()
            .spawn()
    };
    let count = |text: &str, reason: &str| shadow_rejections(text, reason, SPACE);

    // Every limit in shadow: after the first call, the caller's limit has 1 call left and would
    // refuse 9 of 10; the tenant's sees only the one it let through, and would refuse none.
    let every = app(true, false).await;
    warm(&every, SPACE, Some(KEY)).await;
    let (refused, _) = fire(&every, SPACE, Some(KEY), 10).await;
    assert_eq!(refused, 0);
    let text = every.scrape().await;
    assert_eq!(
        (
            count(&text, "CALLER_RATE_LIMITED"),
            count(&text, "TENANT_RATE_LIMITED")
        ),
        (9, 0)
    );
    let left = get_quota(&every, SPACE, Some(KEY)).await.expect("GetQuota");
    assert_eq!(
        tenant_limit(&left).remaining,
        1,
        "the tenant was charged 2 calls"
    );
    assert!(tenant_limit(&left).shadow && left.caller.is_some_and(|c| c.shadow));

    // Only the caller's limit in shadow: the tenant's, enforced, checks all 10 and refuses 8.
    let caller_only = app(false, true).await;
    warm(&caller_only, SPACE, Some(KEY)).await;
    let (refused, reasons) = fire(&caller_only, SPACE, Some(KEY), 10).await;
    assert_eq!(
        (refused, reasons),
        (8, HashSet::from(["TENANT_RATE_LIMITED".to_owned()]))
    );
    let text = caller_only.scrape().await;
    assert_eq!(
        (
            count(&text, "CALLER_RATE_LIMITED"),
            count(&text, "TENANT_RATE_LIMITED")
        ),
        (9, 0)
    );
}

/// GetQuota has series of its own, apart from FlowService's, and its refusals are counted.
#[tokio::test]
async fn get_quota_is_counted_under_quota_service() {
    let app = TestApp::builder()
        .auth(api_key(CallerQuotas::default()))
        .admin()
        .spawn()
        .await;
    get_quota(&app, "t-counted", Some(KEY))
        .await
        .expect("GetQuota");
    get_quota(&app, "elsewhere", Some(KEY))
        .await
        .expect_err("a tenant the key may not read");
    let text = app.scrape().await;
    let value = |metric: &str, code: &str| -> u64 {
        text.lines()
            .find(|line| {
                line.starts_with(metric)
                    && line.contains("grpc_service=\"cams.flows.v1.QuotaService\"")
                    && line.contains("grpc_method=\"GetQuota\"")
                    && line.contains(&format!("grpc_code=\"{code}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {metric} of GetQuota with {code} in:\n{text}"))
    };
    assert_eq!(value("grpc_server_handled_total", "OK"), 1);
    assert_eq!(value("grpc_server_handled_total", "PermissionDenied"), 1);
    assert!(
        text.lines().any(|line| line
            == "cams_flows_rejections_total{reason=\"TENANT_NOT_ALLOWED\",tenant=\"_other\"} 1"),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("grpc_server_started_total")
                && line.contains("cams.flows.v1.FlowService")
                && !line.ends_with(" 0")),
        "GetQuota is not a FlowService call"
    );
}
