use super::*;

/// The actions that take a FlowId.
const BY_FLOW_ID: [Action; 3] = [
    Action::GetFlow,
    Action::GetFlowPreviewUrl,
    Action::GetFlowJsonAsset,
];

fn plan_at(action: Action, flow_id: Option<&str>, space: Option<&str>, now: SystemTime) -> Plan {
    let asked = Asked {
        flow_id,
        space,
        ..Asked::default()
    };
    plan(action, &asked, 1, now)
}

fn plan_now(action: Action, flow_id: Option<&str>, space: Option<&str>) -> Plan {
    plan_at(action, flow_id, space, SystemTime::now())
}

fn data(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Success { body, .. } => body["Data"].clone(),
        other => panic!("not a success: {}", other.code()),
    }
}

#[test]
fn table_dispatch_is_the_same_for_every_flow_read() {
    for action in BY_FLOW_ID {
        let code = |id: Option<&str>| plan_now(action, id, None).outcome.code();
        assert_eq!(code(None), "MissingParameter", "{action}");
        assert_eq!(code(Some("")), "MissingParameter", "{action}");
        assert_eq!(code(Some("42")), "Flow.NotExist", "{action}");
        assert_eq!(code(Some("sim:error:")), "Flow.NotExist", "{action}");
        assert_eq!(code(Some("sim:html")), "html", "{action}");
        assert_eq!(code(Some("sim:hang")), "hang", "{action}");
        assert_eq!(
            code(Some("sim:error:Ram.PermissionDeny")),
            "Ram.PermissionDeny",
            "{action}"
        );
        let slow = plan_now(action, Some("sim:slow:999999"), None);
        assert_eq!(slow.delay, MAX_SLOW, "{action}");
        assert_eq!(slow.outcome.code(), "OK", "{action}");
        assert_eq!(code(Some(DOCUMENTED_FLOW_ID)), "OK", "{action}");
        for sample in SAMPLES {
            let answer = data(plan_now(action, Some(sample.id), Some("s")).outcome);
            assert_eq!(answer["FlowId"], sample.id, "{action}");
        }
    }
}

/// The faults that depend on history see which call of this action this is.
#[test]
fn flaky_and_fail_after_count_the_calls_they_are_given() {
    for action in BY_FLOW_ID {
        let nth_code = |id: &str, nth| {
            let asked = Asked {
                flow_id: Some(id),
                ..Asked::default()
            };
            plan(action, &asked, nth, SystemTime::now()).outcome.code()
        };
        assert_eq!(nth_code("sim:flaky:2", 2), "ServiceUnavailable");
        assert_eq!(nth_code("sim:flaky:2", 3), "OK");
        assert_eq!(nth_code("sim:fail-after:1:t", 1), "OK");
        assert_eq!(nth_code("sim:fail-after:1:t", 2), "ServiceUnavailable");
    }
}

#[test]
fn simulated_errors_follow_the_table() {
    let cases = [
        ("Product.Unsubscript", 400, None),
        ("Forbidden.RAM", 403, None),
        ("InvalidAccessKeyId.NotFound", 404, None),
        ("InternalError", 500, None),
        ("ServiceUnavailable", 503, None),
        ("Throttling.Api", 400, Some(SIMULATED_RETRY_AFTER_MS)),
        ("System.LimitControl", 400, Some(SIMULATED_RETRY_AFTER_MS)),
        ("Whatever", 400, None),
    ];
    for (code, status, retry) in cases {
        let reply = simulated_error(code, Action::GetFlow);
        assert_eq!(reply.status.as_u16(), status, "{code}");
        assert_eq!(reply.retry_after_ms, retry, "{code}");
    }
    assert_eq!(
        simulated_error("Whatever", Action::GetFlow).message,
        "Simulated error Whatever."
    );
    for action in Action::ALL {
        let detail = simulated_error("Forbidden.RAM", action).access_denied_detail;
        assert_eq!(
            detail.map(|d| d["AuthAction"].clone()),
            Some(json!(format!("cams:{action}")))
        );
    }
}

#[test]
fn sample_answers_differ_per_tenant() {
    let field = |action, field: &str, space| {
        let answer = data(plan_now(action, Some(ORDER_STATUS.id), Some(space)).outcome);
        answer[field].as_str().unwrap_or_default().to_owned()
    };
    for action in [Action::GetFlow, Action::GetFlowPreviewUrl] {
        let a = field(action, "PreviewUrl", "tenant-a");
        assert!(a.ends_with("&space=tenant-a"), "{action}: {a}");
        assert_ne!(a, field(action, "PreviewUrl", "tenant-b"), "{action}");
    }
    let path = |space| field(Action::GetFlowJsonAsset, "FilePath", space);
    assert_eq!(
        path("tenant a"),
        "https://bucket-sandbox-ap-southeast-1.aliyuncs.com/100000000000002.json?space=tenant%20a"
    );
    assert_eq!(path("tenant a"), path("tenant a"), "stable across calls");
    assert_ne!(path("tenant a"), path("tenant b"));
}

/// GetFlowPreviewUrl answers what GetFlow says of the same flow at the same instant, save the
/// preview URL's random token.
#[test]
fn preview_urls_agree_with_get_flow() {
    let now = SystemTime::now();
    for id in [
        ORDER_STATUS.id,
        "sim:ok:x",
        "sim:expiring:4000:t",
        "sim:flaky:0",
    ] {
        let flow = data(plan_at(Action::GetFlow, Some(id), Some("sp"), now).outcome);
        let preview = data(plan_at(Action::GetFlowPreviewUrl, Some(id), Some("sp"), now).outcome);
        assert_eq!(preview["FlowId"], id);
        assert_eq!(
            preview["PreviewUrlExpires"], flow["PreviewUrlExpires"],
            "{id}"
        );
        let scheme = |url: &Value| {
            let url = url.as_str().unwrap_or_default().to_owned();
            url.split("?token=").next().unwrap_or_default().to_owned()
        };
        assert_eq!(
            scheme(&preview["PreviewUrl"]),
            scheme(&flow["PreviewUrl"]),
            "{id}"
        );
        assert_eq!(
            preview.as_object().map(|o| o.len()),
            Some(3),
            "{id}: {preview}"
        );
    }
    let documented =
        data(plan_now(Action::GetFlowPreviewUrl, Some(DOCUMENTED_FLOW_ID), None).outcome);
    assert_eq!(
        documented,
        json!({
            "FlowId": DOCUMENTED_FLOW_ID,
            "PreviewUrl": "https://pre-url",
            "PreviewUrlExpires": 1_700_617_436_633_u64,
        })
    );
}

#[test]
fn json_assets_name_the_flow() {
    let asset = |id| data(plan_now(Action::GetFlowJsonAsset, Some(id), Some("sp")).outcome);
    assert_eq!(
        asset(DOCUMENTED_FLOW_ID),
        json!({
            "FlowId": DOCUMENTED_FLOW_ID,
            "FilePath": "https://bucket-sandbox-ap-southeast-1.aliyuncs.com/926753328126430.json",
        })
    );
    assert_eq!(
        asset("sim:ok:a b")["FilePath"],
        "https://bucket-sandbox-ap-southeast-1.aliyuncs.com/sim%3Aok%3Aa%20b.json?space=sp"
    );
    assert_eq!(asset("sim:slow:1")["FlowId"], "sim:slow:1");
}

/// The catalogue spaces' flows answer with the names ListFlow gives them.
#[test]
fn catalogue_flows_carry_their_catalogue_names() {
    let flow = data(plan_now(Action::GetFlow, Some("sim:ok:catalogue-42"), None).outcome);
    assert_eq!(flow["FlowName"], "catalogue_flow_42");
    assert_eq!(flow["Categories"], json!(ORDER_STATUS.categories));
    let other = data(plan_now(Action::GetFlow, Some("sim:ok:other"), None).outcome);
    assert_eq!(other["FlowName"], ORDER_STATUS.name);
}

/// A simulated CAMS whose clock runs ahead or behind dates expiries by that clock.
#[test]
fn preview_url_expiries_follow_the_simulated_clock() {
    let cams_now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for action in [Action::GetFlow, Action::GetFlowPreviewUrl] {
        let expires = |flow_id| {
            data(plan_at(action, Some(flow_id), None, cams_now).outcome)["PreviewUrlExpires"]
                .as_u64()
        };
        assert_eq!(expires("sim:expiring:4000:t"), Some(1_700_000_004_000));
        assert_eq!(
            expires(ORDER_STATUS.id),
            Some(1_700_000_000_000 + 30 * 24 * 3_600_000),
            "the samples' 30 days"
        );
        assert_eq!(
            expires("sim:expiring:18446744073709551615"),
            Some(u64::MAX),
            "saturates rather than overflows"
        );
    }
}
