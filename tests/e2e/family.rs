//! The Flow read family end to end: ListFlows' pages and their tokens; the four reads' budgets at
//! CAMS under a mixed flood through three replicas sharing one Redis; a preview URL answered from
//! a cached flow, or read through GetFlow when its own budget is spent; one CAMS call for many
//! callers of one JSON asset; and each new RPC's validation, tenant authorization, CAMS errors and
//! place in reflection.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use cams_flows::{
    auth::{ApiKey, AuthConfig, AuthMode, TenantSet},
    limits::ActionBudgets,
    pb::{
        FlowSummary, GetFlowJsonAssetRequest, GetFlowPreviewUrlRequest, GetFlowRequest,
        ListFlowsRequest, flow_service_client::FlowServiceClient,
    },
    sandbox::SandboxStats,
};
use futures_util::future::join_all;
use prost::Message;
use sha2::Digest;
use tokio::time::Instant;
use tonic::{Code, Request, Status, transport::Channel};
use tonic_reflection::pb::v1;

use crate::support::{
    TestApp, TestAppBuilder, details, error_info, json_asset_with_source, preview_url_with_source,
    redis::RedisServer,
    replica::{Replica, sandbox, stats},
    wait,
};

/// A test app whose every budget is lifted, as GetFlow's is: only the tests about a budget meet
/// one (the test app leaves the other actions' at CAMS's 5).
fn builder() -> TestAppBuilder {
    TestApp::builder().config(|c| {
        c.limits.actions = ActionBudgets {
            list_flow: 10_000,
            get_flow_preview_url: 10_000,
            get_flow_json_asset: 10_000,
        }
    })
}

async fn spawn_app() -> TestApp {
    builder().spawn().await
}

/// The gateway's own failures.
const LOCAL: &str = "cams-flows";
/// Failures CAMS reports.
const CAMS: &str = "cams.aliyuncs.com";
/// A sample flow the simulated CAMS answers for every space, with a preview URL naming it.
const SAMPLE_FLOW: &str = "100000000000002";

// ---------------------------------------------------------------------------------------------
// Paging

fn list(space: &str, flow_name: &str, page_size: i32, page_token: &str) -> ListFlowsRequest {
    ListFlowsRequest {
        cust_space_id: space.into(),
        flow_name: flow_name.into(),
        page_size,
        page_token: page_token.into(),
    }
}

/// Every page of a listing, in order, followed token by token until a page comes with none.
async fn walk(
    app: &TestApp,
    space: &str,
    flow_name: &str,
    page_size: i32,
) -> Vec<Vec<FlowSummary>> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (page, _) = app
            .list_flows(list(space, flow_name, page_size, &token))
            .await
            .unwrap_or_else(|s| panic!("page {} of {space}: {s:?}", pages.len() + 1));
        pages.push(page.flows);
        if page.next_page_token.is_empty() {
            return pages;
        }
        assert!(
            pages.len() < 100,
            "{space}: a token after {} pages",
            pages.len()
        );
        token = page.next_page_token;
    }
}

/// What the simulated CAMS lists in `sim:catalogue:<n>` under the filter `flow_name`: ids and
/// names, in its order.
fn catalogue(n: u32, flow_name: &str) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| {
            (
                format!("sim:ok:catalogue-{i}"),
                format!("catalogue_flow_{i}"),
            )
        })
        .filter(|(_, name)| name.contains(flow_name))
        .collect()
}

/// The flows of every page, in order, as (id, name); each id once.
#[track_caller]
fn listed(pages: &[Vec<FlowSummary>]) -> Vec<(String, String)> {
    let flows: Vec<_> = pages
        .iter()
        .flatten()
        .map(|f| (f.flow_id.clone(), f.flow_name.clone()))
        .collect();
    let distinct: HashSet<_> = flows.iter().map(|(id, _)| id).collect();
    assert_eq!(
        distinct.len(),
        flows.len(),
        "a flow listed twice: {flows:?}"
    );
    flows
}

fn sizes(pages: &[Vec<FlowSummary>]) -> Vec<usize> {
    pages.iter().map(Vec::len).collect()
}

/// The `Page` parameters the simulated CAMS received with ListFlow, in order.
async fn pages_asked(app: &TestApp) -> Vec<String> {
    app.sandbox_requests()
        .await
        .into_iter()
        .filter(|r| r.action == "ListFlow")
        .map(|r| {
            r.params
                .into_iter()
                .find(|(k, _)| k == "Page")
                .map(|(_, v)| v)
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn paging_lists_every_flow_once_in_order_and_ends_with_an_empty_token() {
    let app = spawn_app().await;

    // 45 flows by 10: four full pages, then a short last one with no token.
    let pages = walk(&app, "sim:catalogue:45", "", 10).await;
    assert_eq!(sizes(&pages), [10, 10, 10, 10, 5]);
    assert_eq!(listed(&pages), catalogue(45, ""));
    // One CAMS call per page, each for its page.
    let asked: Vec<_> = (1..=5)
        .map(|i| format!(r#"{{"Index":{i},"Size":10}}"#))
        .collect();
    assert_eq!(pages_asked(&app).await, asked);

    // 40 flows by 10: a full fourth page cannot tell it is the last, so a fifth, empty page
    // ends the listing.
    let pages = walk(&app, "sim:catalogue:40", "", 10).await;
    assert_eq!(sizes(&pages), [10, 10, 10, 10, 0]);
    assert_eq!(listed(&pages), catalogue(40, ""));

    // A filter lists exactly the matching flows, across pages: `flow_1` is in the names of 1
    // and 10 to 19.
    let pages = walk(&app, "sim:catalogue:45", "flow_1", 4).await;
    let expected = catalogue(45, "flow_1");
    assert_eq!(expected.len(), 11);
    assert_eq!(sizes(&pages), [4, 4, 3]);
    assert_eq!(listed(&pages), expected);

    // No page size is 20.
    let (first, _) = app
        .list_flows(list("sim:catalogue:45", "", 0, ""))
        .await
        .expect("first page");
    assert_eq!(first.flows.len(), 20);
    assert!(!first.next_page_token.is_empty());
    assert_eq!(
        app.sandbox_stats().await.action("ListFlow").accepted,
        5 + 5 + 3 + 1
    );
}

/// Asserts the code and the ErrorInfo reason and domain of a failure of any RPC.
#[track_caller]
fn assert_failure<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
    domain: &str,
) -> Status {
    let status = match result {
        Ok(r) => panic!("expected {code:?}/{reason}, got success {r:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{status:?}");
    let info = error_info(&status);
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        (reason, domain),
        "{status:?}"
    );
    status
}

/// A failure that must be INVALID_ARGUMENT naming exactly `field`.
#[track_caller]
fn assert_names<T: std::fmt::Debug>(result: Result<T, Status>, field: &str, case: &str) {
    let status = match result {
        Ok(r) => panic!("{case}: expected INVALID_ARGUMENT for {field}, got {r:?}"),
        Err(status) => status,
    };
    let info = error_info(&status);
    assert_eq!(
        (status.code(), info.reason.as_str(), info.domain.as_str()),
        (Code::InvalidArgument, "INVALID_ARGUMENT", LOCAL),
        "{case}: {status:?}"
    );
    let bad = details(&status)
        .bad_request()
        .cloned()
        .unwrap_or_else(|| panic!("{case}: no BadRequest in {status:?}"));
    let fields: Vec<_> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, [field], "{case}: {status:?}");
}

#[tokio::test]
async fn forged_page_tokens_and_page_sizes_out_of_range_are_refused_before_cams() {
    let app = spawn_app().await;
    let space = "sim:catalogue:45";
    let (first, _) = app
        .list_flows(list(space, "", 10, ""))
        .await
        .expect("first page");
    let token = first.next_page_token;
    // The token is good with the fields it was given for.
    let (second, _) = app
        .list_flows(list(space, "", 10, &token))
        .await
        .expect("second page");
    assert_eq!(second.flows[0].flow_id, "sim:ok:catalogue-11");
    let before = app.sandbox_stats().await;
    assert_eq!(before.action("ListFlow").accepted, 2);

    let mut bytes = URL_SAFE_NO_PAD
        .decode(&token)
        .expect("a token is URL-safe base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let altered_digest = URL_SAFE_NO_PAD.encode(&bytes);
    bytes[last] ^= 0x01;
    // The page index (big-endian, after the version byte): page 3 instead of 2.
    bytes[4] ^= 0x01;
    let altered_page = URL_SAFE_NO_PAD.encode(&bytes);
    let made_up = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 17]>());
    let forged = [
        ("made-up base64", list(space, "", 10, &made_up)),
        ("not base64", list(space, "", 10, "not a token!")),
        (
            "a digest byte altered",
            list(space, "", 10, &altered_digest),
        ),
        ("the page altered", list(space, "", 10, &altered_page)),
        ("cut short", list(space, "", 10, &token[..token.len() - 2])),
        ("another flow_name", list(space, "catalogue", 10, &token)),
        ("another page_size", list(space, "", 20, &token)),
        ("page_size 0 for 20", list(space, "", 0, &token)),
        ("another space", list("sim:catalogue:46", "", 10, &token)),
    ];
    for (case, request) in forged {
        assert_names(app.list_flows(request).await, "page_token", case);
    }
    for size in [101, -1, i32::MIN, i32::MAX] {
        assert_names(
            app.list_flows(list(space, "", size, "")).await,
            "page_size",
            &format!("page_size {size}"),
        );
    }
    // 100 is the largest page.
    let (full, _) = app
        .list_flows(list("sim:catalogue:150", "", 100, ""))
        .await
        .expect("a page of 100");
    assert_eq!(full.flows.len(), 100);

    // Nothing refused reached CAMS.
    let after = app.sandbox_stats().await;
    assert_eq!(after.action("ListFlow").accepted, 3, "{after:?}");
    assert_eq!(after.accepted, before.accepted + 1, "{after:?}");
}

// ---------------------------------------------------------------------------------------------
// The four budgets under a mixed flood

/// The four reads, as the flood sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Rpc {
    GetFlow,
    ListFlows,
    PreviewUrl,
    JsonAsset,
}

impl Rpc {
    const ALL: [Self; 4] = [
        Self::GetFlow,
        Self::ListFlows,
        Self::PreviewUrl,
        Self::JsonAsset,
    ];

    /// The CAMS action that answers it.
    fn action(self) -> &'static str {
        match self {
            Self::GetFlow => "GetFlow",
            Self::ListFlows => "ListFlow",
            Self::PreviewUrl => "GetFlowPreviewUrl",
            Self::JsonAsset => "GetFlowJSONAssest",
        }
    }

    /// One call within `timeout` that needs CAMS unless `key` was asked before: `key` names the
    /// flow (for `tenant`), or, for ListFlows, the space listed.
    async fn call(
        self,
        client: &FlowServiceClient<Channel>,
        key: &str,
        tenant: &str,
        timeout: Duration,
    ) -> Result<(), Status> {
        fn timed<T>(message: T, timeout: Duration) -> Request<T> {
            let mut request = Request::new(message);
            request.set_timeout(timeout);
            request
        }
        let mut client = client.clone();
        let flow_id = format!("sim:ok:{key}");
        let cust_space_id = tenant.to_owned();
        match self {
            Self::GetFlow => client
                .get_flow(timed(
                    GetFlowRequest {
                        flow_id,
                        cust_space_id,
                    },
                    timeout,
                ))
                .await
                .map(drop),
            Self::ListFlows => client
                .list_flows(timed(
                    list(&format!("sim:catalogue:3:{key}"), "", 0, ""),
                    timeout,
                ))
                .await
                .map(drop),
            Self::PreviewUrl => client
                .get_flow_preview_url(timed(
                    GetFlowPreviewUrlRequest {
                        flow_id,
                        cust_space_id,
                    },
                    timeout,
                ))
                .await
                .map(drop),
            Self::JsonAsset => client
                .get_flow_json_asset(timed(
                    GetFlowJsonAssetRequest {
                        flow_id,
                        cust_space_id,
                    },
                    timeout,
                ))
                .await
                .map(drop),
        }
    }
}

/// Calls `rpc` through `replica` until one is served: the shared budgets admit nothing during
/// the quiet period that follows a fresh Redis. `key` is the tenant too, so that the warm-ups,
/// each of its own, do not meet a tenant's limit together.
async fn served_eventually(replica: &Replica, rpc: Rpc, key: String) {
    wait::until_every(
        Duration::from_millis(200),
        Duration::from_secs(30),
        &format!("{rpc:?} {key} served"),
        || async {
            let result = rpc
                .call(&replica.client, &key, &key, Duration::from_secs(3))
                .await;
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

/// Calls of every RPC through every replica until `end`, each for a new key (a miss that needs
/// CAMS), two lanes per RPC per replica: the calls served, by RPC.
async fn mixed_flood(replicas: &[Replica], end: Instant) -> BTreeMap<Rpc, u32> {
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for rpc in Rpc::ALL {
            for lane in 0..2 {
                let client = replica.client.clone();
                // A tenant per lane, so that the tenants' own limits stay out of the way.
                let tenant = format!("flood-{}-{r}-{lane}", rpc.action());
                tasks.push(tokio::spawn(async move {
                    let (mut served, mut i) = (0, 0);
                    while Instant::now() < end {
                        i += 1;
                        let key = format!("{tenant}-{i}");
                        match rpc
                            .call(&client, &key, &tenant, Duration::from_secs(3))
                            .await
                        {
                            Ok(()) => served += 1,
                            Err(status) => {
                                // Past the budget a call is refused, or granted a slot too late
                                // to end within its deadline; a lane whose calls are refused
                                // at once may meet its tenant's own limit: never anything else.
                                let reason = error_info(&status).reason;
                                assert!(
                                    [
                                        "ACCOUNT_RATE_LIMITED",
                                        "DEADLINE_EXCEEDED",
                                        "TENANT_RATE_LIMITED",
                                    ]
                                    .contains(&reason.as_str()),
                                    "{rpc:?}: {status:?}"
                                );
                                // pacing: as a client that honours RetryInfo would, if less
                                // patiently: the flood stays a flood without spinning the cores.
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                    (rpc, served)
                }));
            }
        }
    }
    let mut served = BTreeMap::new();
    for task in tasks {
        let (rpc, n) = task.await.expect("flood task");
        *served.entry(rpc).or_insert(0) += n;
    }
    served
}

/// Each action's calls accepted between two readings of the simulated CAMS's statistics.
fn accepted_between(before: &SandboxStats, after: &SandboxStats) -> BTreeMap<Rpc, u64> {
    Rpc::ALL
        .into_iter()
        .map(|rpc| {
            let action = rpc.action();
            (
                rpc,
                after.action(action).accepted - before.action(action).accepted,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_flood_through_three_replicas_gives_each_action_its_own_budget() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let url = redis.url();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Replica::start(
                &endpoint,
                &[
                    ("CAMS_FLOWS_REDIS_URL", &url),
                    ("CAMS_FLOWS_CALL_TIMEOUT_MS", "2500"),
                ],
            )
            .await,
        );
    }
    // Every budget past its quiet period, on every replica.
    let mut warming = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for rpc in Rpc::ALL {
            warming.push(served_eventually(
                replica,
                rpc,
                format!("warm-{r}-{}", rpc.action()),
            ));
        }
    }
    join_all(warming).await;
    // pacing: past the warm-up calls' slots' rest (a second from their end, a wall-clock
    // instant), so that the flood starts with every budget's five slots free.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let before = stats(&endpoint).await;
    let started = Instant::now();
    let served = mixed_flood(&replicas, started + Duration::from_secs(3)).await;
    let seconds = started.elapsed().as_secs_f64();
    let after = stats(&endpoint).await;
    let accepted = accepted_between(&before, &after);
    let at_cams: Vec<_> = after
        .by_action
        .iter()
        .map(|(name, a)| {
            format!(
                "{name}: {} accepted, {} throttled, at most {} in a second",
                a.accepted, a.throttled, a.max_accepted_per_sliding_second
            )
        })
        .collect();
    let figures = format!(
        "in {seconds:.1} s, served {served:?}, accepted during the flood {accepted:?}; \
         at CAMS since it started: {at_cams:?}"
    );

    // CAMS never had to refuse a call, and no action went past its 5 per sliding second.
    assert_eq!(after.throttled, 0, "{figures}");
    assert!(after.max_accepted_per_sliding_second <= 5, "{figures}");
    for rpc in Rpc::ALL {
        let action = after.action(rpc.action());
        assert_eq!(action.throttled, 0, "{rpc:?}: {figures}");
        // Each action used its whole budget...
        assert_eq!(
            action.max_accepted_per_sliding_second, 5,
            "{rpc:?}: {figures}"
        );
        assert!(served[&rpc] > 0, "{rpc:?}: {figures}");
        // ... throughout: at least twice what a quarter of one shared budget would allow.
        assert!(
            accepted[&rpc] as f64 >= 2.0 * 5.0 * seconds / 4.0,
            "{rpc:?}: {figures}"
        );
    }
    // Together, at least twice what one budget shared by the four would allow.
    let total: u64 = accepted.values().sum();
    assert!(total as f64 > 2.0 * 5.0 * seconds, "{figures}");
}

// ---------------------------------------------------------------------------------------------
// The economy between the reads

/// A gateway that caches answers for a minute.
async fn caching_app() -> TestApp {
    builder()
        .config(|c| c.cache.ttl = Duration::from_secs(60))
        .spawn()
        .await
}

#[tokio::test]
async fn a_preview_url_comes_from_the_cached_flow_of_the_same_tenant_only() {
    let app = caching_app().await;
    let (flow, source) = app.call(SAMPLE_FLOW, "tenant-a").await.expect("GetFlow");
    assert_eq!(source, "miss");
    let flow_answer = flow.flow.expect("flow");
    assert!(!flow_answer.preview_url.is_empty());
    assert!(flow_answer.preview_url_expire_time.is_some());

    // The same tenant's preview URL: GetFlow's answer, with no CAMS call of any action.
    let (preview, source) = app
        .preview_url(SAMPLE_FLOW, "tenant-a")
        .await
        .expect("preview URL");
    assert_eq!(source, "hit");
    assert_eq!(preview.flow_id, SAMPLE_FLOW);
    assert_eq!(preview.preview_url, flow_answer.preview_url);
    assert_eq!(
        preview.preview_url_expire_time,
        flow_answer.preview_url_expire_time
    );
    assert_eq!(preview.request_id, flow.request_id);
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.action("GetFlowPreviewUrl").accepted, 0, "{stats:?}");
    assert_eq!(stats.accepted, 1, "{stats:?}");

    // Another tenant's preview URL of the same flow is its own: read from CAMS, never from the
    // first tenant's entry.
    let (other, source) = app
        .preview_url(SAMPLE_FLOW, "tenant-b")
        .await
        .expect("preview URL");
    assert_eq!(source, "miss");
    assert_ne!(other.preview_url, flow_answer.preview_url);
    assert!(other.preview_url.contains("tenant-b"), "{other:?}");
    let stats = app.sandbox_stats().await;
    let previews = stats.action("GetFlowPreviewUrl");
    assert_eq!(previews.accepted, 1, "{stats:?}");
    assert_eq!(
        previews.calls_by_space.get("tenant-b"),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.action("GetFlow").accepted, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_for_one_json_asset_make_one_cams_call() {
    let app = caching_app().await;
    // CAMS holds the answer a while, so that the calls overlap the one in flight.
    let flow = "sim:slow:400:asset";
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let client = app.client.clone();
            tokio::spawn(async move { json_asset_with_source(&client, flow, "tenant-a").await })
        })
        .collect();
    let mut answers = Vec::new();
    let mut sources = Vec::new();
    for call in calls {
        let (answer, source) = call.await.expect("task").expect("every caller served");
        answers.push(answer);
        sources.push(source);
    }
    let assets = app.sandbox_stats().await.action("GetFlowJSONAssest");
    assert_eq!(assets.accepted, 1, "{assets:?}");
    assert_eq!(assets.calls_by_flow.get(flow), Some(&1), "{assets:?}");
    assert_eq!(answers[0].flow_id, flow);
    assert!(
        answers[0].file_path.contains("tenant-a"),
        "{:?}",
        answers[0]
    );
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "answers differ: {answers:?}"
    );
    assert_eq!(
        sources.iter().filter(|s| *s == "miss").count(),
        1,
        "{sources:?}"
    );
    assert!(
        sources
            .iter()
            .all(|s| ["miss", "coalesced", "hit"].contains(&s.as_str())),
        "{sources:?}"
    );
}

/// The value of a counter with this `action` label in a Prometheus text scrape.
#[track_caller]
fn counter(scrape: &str, name: &str, action: &str) -> f64 {
    let parsed = prometheus_parse::Scrape::parse(scrape.lines().map(|l| Ok(l.to_owned())))
        .expect("a valid exposition");
    let values: Vec<f64> = parsed
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("action") == Some(action))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .collect();
    assert_eq!(values.len(), 1, "{name}{{action={action:?}}} in {scrape}");
    values[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_url_is_read_through_get_flow_when_its_own_budget_is_spent() {
    const SUBSTITUTIONS: &str = "cams_flows_upstream_substitutions_total";
    let app = TestApp::builder()
        .admin()
        .config(|c| c.limits.actions.get_flow_preview_url = 1)
        .spawn()
        .await;
    assert_eq!(
        counter(&app.scrape().await, SUBSTITUTIONS, "GetFlowPreviewUrl"),
        0.0
    );
    // The one slot of GetFlowPreviewUrl's budget, held by a call CAMS answers slowly.
    let held = {
        let client = app.client.clone();
        tokio::spawn(
            async move { preview_url_with_source(&client, "sim:slow:1500:held", "t").await },
        )
    };
    wait::until(
        Duration::from_secs(5),
        "the held preview call at CAMS",
        || app.sandbox_stats(),
        |stats| stats.action("GetFlowPreviewUrl").accepted == 1,
    )
    .await;

    // Another flow's preview URL, meanwhile: served, read through GetFlow.
    let flow = "sim:ok:substituted";
    let (preview, source) = app
        .preview_url(flow, "t")
        .await
        .expect("served through GetFlow");
    assert_eq!(source, "miss");
    assert_eq!(preview.flow_id, flow);
    assert!(preview.preview_url.starts_with("https://"), "{preview:?}");
    assert!(preview.preview_url_expire_time.is_some(), "{preview:?}");
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.action("GetFlow").calls_by_flow.get(flow), Some(&1));
    assert_eq!(stats.action("GetFlow").accepted, 1, "{stats:?}");
    assert_eq!(stats.action("GetFlowPreviewUrl").accepted, 1, "{stats:?}");
    assert_eq!(
        counter(&app.scrape().await, SUBSTITUTIONS, "GetFlowPreviewUrl"),
        1.0
    );

    let (held, _) = held.await.expect("task").expect("the held call served");
    assert_eq!(held.flow_id, "sim:slow:1500:held");
}

// ---------------------------------------------------------------------------------------------
// Each new RPC at the edge

#[tokio::test]
async fn the_new_rpcs_name_a_bad_field_and_never_call_cams() {
    let app = spawn_app().await;
    assert_names(app.preview_url("", "space").await, "flow_id", "preview");
    assert_names(app.json_asset("", "space").await, "flow_id", "asset");
    assert_names(
        app.preview_url(SAMPLE_FLOW, "space\n").await,
        "cust_space_id",
        "preview",
    );
    assert_names(
        app.json_asset(SAMPLE_FLOW, &"s".repeat(129)).await,
        "cust_space_id",
        "asset",
    );
    assert_names(
        app.list_flows(list("space", "flow\u{1}", 0, "")).await,
        "flow_name",
        "list",
    );
    assert_names(
        app.list_flows(list("space\r", "", 0, "")).await,
        "cust_space_id",
        "list",
    );
    let stats = app.sandbox_stats().await;
    assert_eq!((stats.accepted, stats.rejected), (0, 0), "{stats:?}");
}

const BILLING_KEY: &str = "cf_family_billing_key";

fn as_billing<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {BILLING_KEY}")
            .parse()
            .expect("ascii header"),
    );
    request
}

#[tokio::test]
async fn the_new_rpcs_read_only_the_callers_tenants() {
    let app = builder()
        .auth(AuthConfig {
            mode: AuthMode::ApiKey,
            keys: vec![ApiKey {
                name: "billing".into(),
                sha256: sha2::Sha256::digest(BILLING_KEY.as_bytes()).into(),
                tenants: TenantSet::parse(&["cams-a".to_owned()]).expect("patterns"),
            }],
            identities: HashMap::new(),
            ..AuthConfig::none()
        })
        .spawn()
        .await;
    let client = app.client.clone();
    let list_in = |space: &str| as_billing(list(space, "", 0, ""));
    let preview_in = |space: &str| {
        as_billing(GetFlowPreviewUrlRequest {
            flow_id: SAMPLE_FLOW.into(),
            cust_space_id: space.into(),
        })
    };
    let asset_in = |space: &str| {
        as_billing(GetFlowJsonAssetRequest {
            flow_id: SAMPLE_FLOW.into(),
            cust_space_id: space.into(),
        })
    };

    for space in ["cams-b", ""] {
        assert_failure(
            client.clone().list_flows(list_in(space)).await,
            Code::PermissionDenied,
            "TENANT_NOT_ALLOWED",
            LOCAL,
        );
        assert_failure(
            client.clone().get_flow_preview_url(preview_in(space)).await,
            Code::PermissionDenied,
            "TENANT_NOT_ALLOWED",
            LOCAL,
        );
        assert_failure(
            client.clone().get_flow_json_asset(asset_in(space)).await,
            Code::PermissionDenied,
            "TENANT_NOT_ALLOWED",
            LOCAL,
        );
    }
    // Without a key, nothing.
    assert_failure(
        client.clone().list_flows(list("cams-a", "", 0, "")).await,
        Code::Unauthenticated,
        "MISSING_CREDENTIAL",
        LOCAL,
    );
    assert_eq!(app.sandbox_stats().await.accepted, 0);

    // The caller's own tenant is served.
    let page = client
        .clone()
        .list_flows(list_in("cams-a"))
        .await
        .expect("own tenant's flows")
        .into_inner();
    assert!(!page.flows.is_empty());
    client
        .clone()
        .get_flow_preview_url(preview_in("cams-a"))
        .await
        .expect("own tenant's preview URL");
    client
        .clone()
        .get_flow_json_asset(asset_in("cams-a"))
        .await
        .expect("own tenant's JSON asset");
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.accepted, 3, "{stats:?}");
    for action in ["ListFlow", "GetFlowPreviewUrl", "GetFlowJSONAssest"] {
        assert_eq!(
            stats.action(action).calls_by_space.get("cams-a"),
            Some(&1),
            "{action}: {stats:?}"
        );
    }
}

/// A CAMS failure as GetFlow maps it: the code, and CAMS's code and HTTP status in the
/// ErrorInfo.
#[track_caller]
fn assert_cams_failure<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    cams_code: &str,
    http: &str,
) {
    let status = assert_failure(result, code, cams_code, CAMS);
    let info = error_info(&status);
    assert_eq!(
        info.metadata.get("httpStatus").map(String::as_str),
        Some(http)
    );
    assert!(
        info.metadata
            .get("requestId")
            .is_some_and(|id| !id.is_empty()),
        "{status:?}"
    );
}

#[tokio::test]
async fn the_new_rpcs_map_cams_errors_as_get_flow_does() {
    let app = spawn_app().await;
    let denied = "sim:error:Ram.PermissionDeny";
    assert_cams_failure(
        app.list_flows(list(denied, "", 0, "")).await,
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        "400",
    );
    assert_cams_failure(
        app.preview_url(denied, "space-1").await,
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        "400",
    );
    assert_cams_failure(
        app.json_asset(denied, "space-1").await,
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        "400",
    );
    // The same mapping for GetFlow, for comparison.
    assert_cams_failure(
        app.get_flow(denied, "space-1").await,
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        "400",
    );
    assert_cams_failure(
        app.preview_url("no-such-flow", "space-1").await,
        Code::NotFound,
        "Flow.NotExist",
        "404",
    );
    assert_cams_failure(
        app.json_asset("no-such-flow", "space-1").await,
        Code::NotFound,
        "Flow.NotExist",
        "404",
    );
    // A space CAMS will not list.
    assert_cams_failure(
        app.list_flows(list("sim:catalogue:10001", "", 0, "")).await,
        Code::InvalidArgument,
        "InvalidParameter",
        "400",
    );
}

#[tokio::test]
async fn reflection_describes_all_four_reads() {
    let app = spawn_app().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "cams.flows.v1.FlowService".into(),
            ),
        ),
    };
    let response = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner()
        .message()
        .await
        .expect("stream")
        .expect("response");
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        response.message_response
    else {
        panic!("unexpected {response:?}")
    };
    let methods: Vec<(String, String, String)> = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("proto"))
        .filter(|file| file.package() == "cams.flows.v1")
        .flat_map(|file| file.service)
        .filter(|service| service.name() == "FlowService")
        .flat_map(|service| service.method)
        .map(|m| {
            (
                m.name().to_owned(),
                m.input_type().to_owned(),
                m.output_type().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("GetFlow", "GetFlowRequest", "GetFlowResponse"),
        ("ListFlows", "ListFlowsRequest", "ListFlowsResponse"),
        (
            "GetFlowPreviewUrl",
            "GetFlowPreviewUrlRequest",
            "GetFlowPreviewUrlResponse",
        ),
        (
            "GetFlowJsonAsset",
            "GetFlowJsonAssetRequest",
            "GetFlowJsonAssetResponse",
        ),
    ]
    .into_iter()
    .map(|(name, input, output)| {
        (
            name.to_owned(),
            format!(".cams.flows.v1.{input}"),
            format!(".cams.flows.v1.{output}"),
        )
    })
    .collect();
    assert_eq!(methods, expected);
}
