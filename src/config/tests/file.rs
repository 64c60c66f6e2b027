//! The file layer and validation: the cases the hand-written loader had, with every assertion.

use std::time::Duration;

use super::{load, resolve_file};
use crate::{auth::AuthMode, config::LogFormat, domain::TenantId};

#[test]
fn defaults() {
    let c = load(&["--auth-mode", "none"], &[]).expect("defaults are valid");
    assert_eq!(c.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(
        c.upstream.endpoint.as_str(),
        "https://cams.ap-southeast-1.aliyuncs.com/"
    );
    assert_eq!(c.log_format, LogFormat::Json);
}

#[test]
fn file_values_and_flag_precedence() {
    let c = resolve_file(
        "listen = \"127.0.0.1:6000\"\nlog_format = \"text\"\n[upstream]\nmax_body_bytes = 4096\n",
    )
    .expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:6000");
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.upstream.max_body_bytes, 4096);

    let c = load(&["--listen", "127.0.0.1:7000", "--auth-mode", "none"], &[]).expect("valid");
    assert_eq!(c.listen.port(), 7000);
}

#[test]
fn account_quota_can_be_lifted_far_above_cams() {
    let c = resolve_file("[limits]\naccount_rps = 1000000\n").expect("valid");
    assert_eq!(c.limits.account_rps, 1_000_000);
}

#[test]
fn limits_with_overrides() {
    let c = resolve_file(
        "[limits]\naccount_rps = 10\ntenant_rps = 0.5\ntenant_burst = 2\nmax_wait_ms = 0\n\
         [limits.tenants.\"vip\"]\nrps = 10\nburst = 20\n[limits.tenants.\"\"]\nburst = 3\n",
    )
    .expect("valid");
    let l = &c.limits;
    assert_eq!(
        (l.account_rps, l.tenant.rps, l.tenant.burst.get()),
        (10, 0.5, 2)
    );
    assert_eq!(l.max_wait, Duration::ZERO);
    let vip = l.tenants[&TenantId::parse("vip").expect("id")];
    assert_eq!((vip.rps, vip.burst.get()), (10.0, 20));
    // An override that leaves a field out inherits the default tenant quota.
    let own = l.tenants[&TenantId::own_space()];
    assert_eq!((own.rps, own.burst.get()), (0.5, 3));
}

#[test]
fn auth_is_required_outside_the_sandbox() {
    let err = load(&[], &[]).expect_err("no auth");
    assert_eq!(err.key, "auth.mode");
    let c = resolve_file(&format!(
        "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"billing\"\nsha256 = \"{}\"\n\
         tenants = [\"cams-a\", \"team-*\"]\n",
        crate::auth::hash_key("k")
    ))
    .expect("valid");
    assert_eq!(c.auth.mode, AuthMode::ApiKey);
    assert_eq!(c.auth.keys[0].name, "billing");
    let c = resolve_file(
        "[auth]\nmode = \"mesh_header\"\n[[auth.identities]]\nid = \"spiffe://x\"\ntenants = [\"*\"]\n",
    )
    .expect("valid");
    assert_eq!(c.auth.identities.len(), 1);
}

#[test]
fn errors_name_the_key() {
    let cases = [
        (
            "[upstream]\nmax_body_bytes = \"big\"\n",
            "upstream.max_body_bytes",
        ),
        (
            "[upstream]\nmax_body_bytes = 10\n",
            "upstream.max_body_bytes",
        ),
        ("drain_timeout_ms = 0\n", "drain_timeout_ms"),
        ("listen = \"nowhere\"\n", "listen"),
        ("endpoint = \"ftp://x\"\n", "endpoint"),
        ("endpoint = \"https://x/path\"\n", "endpoint"),
        ("lissten = \"x\"\n", "lissten"),
        ("[upstream]\ntimeout = 1\n", "upstream.timeout"),
        ("listen = [", "config"),
        ("[limits]\naccount_rps = 0\n", "limits.account_rps"),
        ("[limits]\naccount_rps = 1000001\n", "limits.account_rps"),
        ("[limits]\ntenant_rps = -1\n", "limits.tenant_rps"),
        // A rate so low its spacing would not fit a limiter's clock (a typo, not a wish).
        ("[limits]\ntenant_rps = 1e-20\n", "limits.tenant_rps"),
        (
            "[limits.tenants.\"t\"]\nrps = 1e-9\n",
            "limits.tenants.\"t\".rps",
        ),
        (
            "[cache]\nttl_ms = 0\n[limits]\ntenant_rps = 6\n",
            "limits.tenant_rps",
        ),
        ("[cache]\nttl_ms = 100000000\n", "cache.ttl_ms"),
        ("[cache]\nmax_entries = 0\n", "cache.max_entries"),
        ("[retry]\nmax_attempts = 0\n", "retry.max_attempts"),
        ("[retry]\nbudget_ratio = -1\n", "retry.budget_ratio"),
        (
            "[retry]\nbase_backoff_ms = 500\nmax_backoff_ms = 100\n",
            "retry.max_backoff_ms",
        ),
        ("[server]\nmax_in_flight = 0\n", "server.max_in_flight"),
        ("[auth]\nmode = \"api_key\"\n", "auth.keys"),
        ("[auth]\nmode = \"sometimes\"\n", "auth.mode"),
        (
            "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"zz\"\ntenants = [\"*\"]\n",
            "auth.keys[0].sha256",
        ),
        (
            "[auth]\nmode = \"api_key\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\ntenants = [\"a*b\"]\n",
            "auth.keys[0].tenants",
        ),
        ("[auth]\nmode = \"mtls\"\n", "auth.mode"),
        ("[auth]\nmode = \"mesh_header\"\n", "auth.identities"),
        ("[tls]\ncert_file = \"x.pem\"\n", "tls.key_file"),
        ("[tls]\nclient_ca_file = \"ca.pem\"\n", "tls.client_ca_file"),
        ("[limits]\ntenant_burst = 0\n", "limits.tenant_burst"),
        ("[limits]\nmax_wait_ms = 120000\n", "limits.max_wait_ms"),
        (
            "[cache]\nttl_ms = 0\n[limits.tenants.\"a\"]\nrps = 50\n",
            "limits.tenants.\"a\".rps",
        ),
        (
            "[limits.tenants.\"a\"]\nburst = 0\n",
            "limits.tenants.\"a\".burst",
        ),
        (
            "[limits.tenants.\"a\"]\nrate = 1\n",
            "limits.tenants.a.rate",
        ),
        (
            "[limits.tenants.\"a\\u0001\"]\nrps = 1\n",
            "limits.tenants.\"a\\u{1}\"",
        ),
    ];
    for (toml, key) in cases {
        let err = resolve_file(toml).expect_err(toml);
        assert!(
            err.key == key || err.problem.contains(key),
            "{toml:?} gave {err}"
        );
    }
}
