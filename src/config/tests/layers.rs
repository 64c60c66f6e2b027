//! The layers above the file: environment, flags, old names, and what an error says about them.

use std::time::Duration;

use super::{args, env, load, load_with_file, toml_file};
use crate::{
    auth::AuthMode,
    config::{Origin, Warning},
};

#[test]
fn env_beats_file_and_flag_beats_env() {
    let file = "[limits]\naccount_rps = 10\n";
    let env_rps = [("CAMS_FLOWS_LIMITS_ACCOUNT_RPS", "20")];
    let rps = |argv: &[&str], vars: &[(&str, &str)]| {
        let argv: Vec<&str> = ["--sandbox"].iter().chain(argv).copied().collect();
        load_with_file(file, &argv, vars)
            .expect("valid")
            .limits
            .account_rps
    };
    assert_eq!(rps(&[], &[]), 10);
    assert_eq!(rps(&[], &env_rps), 20);
    assert_eq!(rps(&["--limits-account-rps", "30"], &env_rps), 30);
    // Under their old names too.
    assert_eq!(rps(&[], &[("CAMS_FLOWS_ACCOUNT_RPS", "21")]), 21);
    assert_eq!(rps(&["--account-rps", "31"], &env_rps), 31);
}

#[test]
fn canonical_names_reach_every_section() {
    let c = load(
        &[
            "--sandbox",
            "--limits-tenant-rps",
            "0.5",
            "--server-max-in-flight",
            "7",
            "--cache-stale-if-error-ms",
            "60000",
        ],
        &[
            ("CAMS_FLOWS_LIMITS_MAX_QUEUE", "9"),
            ("CAMS_FLOWS_SERVER_MAX_CONCURRENT_STREAMS", "11"),
            ("CAMS_FLOWS_LIMITS_MAX_WAIT_MS", "0"),
            ("CAMS_FLOWS_LOG_FORMAT", "text"),
        ],
    )
    .expect("valid");
    assert_eq!(c.limits.tenant.rps, 0.5);
    assert_eq!(c.max_in_flight, 7);
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(60));
    assert_eq!(c.limits.max_queue, 9);
    assert_eq!(c.max_concurrent_streams, 11);
    assert_eq!(c.limits.max_wait, Duration::ZERO);
    assert_eq!(c.log_format, crate::config::LogFormat::Text);
}

#[test]
fn old_names_still_work() {
    let c = load(
        &[
            "--sandbox",
            "--tenant-rps",
            "0.5",
            "--tenant-burst",
            "3",
            "--max-in-flight",
            "7",
            "--stale-if-error-ms",
            "60000",
        ],
        &[
            ("CAMS_FLOWS_MAX_QUEUE", "9"),
            ("CAMS_FLOWS_MAX_CONCURRENT_STREAMS", "11"),
            ("CAMS_FLOWS_MAX_WAIT_MS", "0"),
        ],
    )
    .expect("valid");
    assert_eq!((c.limits.tenant.rps, c.limits.tenant.burst.get()), (0.5, 3));
    assert_eq!(c.max_in_flight, 7);
    assert_eq!(c.cache.stale_if_error, Duration::from_secs(60));
    assert_eq!(c.limits.max_queue, 9);
    assert_eq!(c.max_concurrent_streams, 11);
    assert_eq!(c.limits.max_wait, Duration::ZERO);
    // The old spellings of the values too: clap's `api-key`, and its yes/no words for booleans.
    let c = load_with_file(
        "[[auth.identities]]\nid = \"spiffe://x\"\ntenants = [\"*\"]\n",
        &["--auth-mode", "mesh-header", "--sandbox", "y"],
        &[],
    )
    .expect("valid");
    assert_eq!((c.auth.mode, c.sandbox), (AuthMode::MeshHeader, true));
    for (value, sandbox) in [("yes", true), ("on", true), ("1", true), ("f", false)] {
        let c = load(&["--auth-mode", "none"], &[("CAMS_FLOWS_SANDBOX", value)]);
        assert_eq!(c.expect(value).sandbox, sandbox, "{value}");
    }
    assert!(
        !load(&["--sandbox=false", "--auth-mode", "none"], &[])
            .expect("valid")
            .sandbox
    );
}

#[test]
fn the_new_name_wins_over_the_old_one() {
    let vars = [
        ("CAMS_FLOWS_LIMITS_ACCOUNT_RPS", "20"),
        ("CAMS_FLOWS_ACCOUNT_RPS", "21"),
    ];
    for vars in [vars, [vars[1], vars[0]]] {
        let environment = env(&vars);
        let c = args(&["--sandbox"]).load(&environment).expect("valid");
        assert_eq!(c.limits.account_rps, 20);
        assert_eq!(
            environment.warnings(),
            [Warning::AliasShadowed {
                alias: "CAMS_FLOWS_ACCOUNT_RPS".into(),
                canonical: "CAMS_FLOWS_LIMITS_ACCOUNT_RPS".into(),
            }]
        );
    }
    // On one command line both names are a mistake, not a precedence question.
    let both = ["serve", "--account-rps", "1", "--limits-account-rps", "2"];
    let cmd = <crate::config::ServeArgs as clap::Args>::augment_args(clap::Command::new("serve"));
    assert!(cmd.try_get_matches_from(both).is_err());
}

#[test]
fn retry_keys_that_were_file_only_have_a_flag_and_a_variable() {
    let c = load(
        &["--sandbox", "--retry-max-backoff-ms", "5000"],
        &[
            ("CAMS_FLOWS_RETRY_BASE_BACKOFF_MS", "100"),
            ("CAMS_FLOWS_RETRY_BUDGET_MIN_RETRIES", "0"),
        ],
    )
    .expect("valid");
    assert_eq!(c.retry.base_backoff, Duration::from_millis(100));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(5));
    assert_eq!(c.retry.budget_min_retries, 0);
    let c = load(&["--sandbox", "--retry-base-backoff-ms", "200"], &[]).expect("valid");
    assert_eq!(c.retry.base_backoff, Duration::from_millis(200));
}

#[test]
fn errors_name_the_key_and_where_the_value_came_from() {
    let path = toml_file("[limits]\naccount_rps = 0\n");
    let p = path.to_str().expect("utf-8");
    let err = load(&["--sandbox", "--config", p], &[]).expect_err("file");
    assert_eq!(
        err.to_string(),
        format!("configuration: limits.account_rps (from {p}): 0 must be between 1 and 1000000")
    );
    let err = load(&["--sandbox"], &[("CAMS_FLOWS_LIMITS_ACCOUNT_RPS", "0")]).expect_err("env");
    assert_eq!(
        err.to_string(),
        "configuration: limits.account_rps (from environment variable \
         CAMS_FLOWS_LIMITS_ACCOUNT_RPS): 0 must be between 1 and 1000000"
    );
    let err = load(&["--sandbox", "--limits-account-rps", "0"], &[]).expect_err("flag");
    assert_eq!(
        err.to_string(),
        "configuration: limits.account_rps (from flag --limits-account-rps): 0 must be between \
         1 and 1000000"
    );
    // An old name is reported as it was given.
    let err = load(&["--sandbox", "--account-rps", "0"], &[]).expect_err("old flag");
    assert_eq!(err.origin, Some(Origin::Flag("--account-rps".into())));
    let err = load(&["--sandbox"], &[("CAMS_FLOWS_ACCOUNT_RPS", "0")]).expect_err("old env");
    assert_eq!(
        err.origin,
        Some(Origin::Env("CAMS_FLOWS_ACCOUNT_RPS".into()))
    );
    // A conflict with a default says so; a key nobody set has no layer.
    let err = load(
        &["--sandbox", "--cache-ttl-ms", "0", "--account-rps", "1"],
        &[],
    );
    let err = err.expect_err("tenant above account");
    assert_eq!(
        (err.key.as_str(), err.origin),
        ("limits.tenant_rps", Some(Origin::Default))
    );
    let err = load(&[], &[]).expect_err("no auth mode");
    assert_eq!(err.origin, None);
    assert!(
        err.to_string()
            .starts_with("configuration: auth.mode: not set"),
        "{err}"
    );
}

#[test]
fn values_that_do_not_parse_name_the_key_and_where_they_came_from() {
    let err = load(&["--sandbox"], &[("CAMS_FLOWS_CACHE_TTL_MS", "soon")]).expect_err("env");
    assert_eq!(err.key, "cache.ttl_ms");
    assert_eq!(
        err.origin,
        Some(Origin::Env("CAMS_FLOWS_CACHE_TTL_MS".into()))
    );
    assert!(err.problem.contains("soon"), "{err}");
    let err = load(&["--sandbox", "--log-format", "xml"], &[]).expect_err("flag");
    assert_eq!(
        (err.key.as_str(), err.origin),
        ("log_format", Some(Origin::Flag("--log-format".into())))
    );
    let err = load(&["--sandbox=maybe"], &[]).expect_err("flag");
    assert_eq!(err.key, "sandbox");
    let err = load(&["--sandbox", "--auth-mode", "sometimes"], &[]).expect_err("flag");
    assert_eq!(err.key, "auth.mode");

    for (toml, key) in [
        ("listen = [", "config"),
        ("[upstream]\ntimeout = 1\n", "upstream.timeout"),
    ] {
        let path = toml_file(toml);
        let p = path.to_str().expect("utf-8");
        let err = load(&["--sandbox", "--config", p], &[]).expect_err(toml);
        assert_eq!(err.key, key);
        assert_eq!(err.origin, Some(Origin::File(p.into())), "{toml:?}");
    }
}

#[test]
fn the_file_is_named_by_flag_or_variable() {
    let path = toml_file("listen = \"127.0.0.1:6000\"\n");
    let p = path.to_str().expect("utf-8");
    let c = load(&["--sandbox"], &[("CAMS_FLOWS_CONFIG", p)]).expect("valid");
    assert_eq!(c.listen.port(), 6000);
    let err = load(
        &["--sandbox", "--config", "/nonexistent/cams-flows.toml"],
        &[("CAMS_FLOWS_CONFIG", p)],
    )
    .expect_err("the flag wins");
    assert!(
        err.problem.contains("/nonexistent/cams-flows.toml"),
        "{err}"
    );
    assert_eq!(
        (err.key.as_str(), err.origin),
        ("config", Some(Origin::Flag("--config".into())))
    );
}

#[test]
fn unknown_variables_are_named_in_a_warning_without_their_value() {
    let environment = env(&[
        ("CAMS_FLOWS_LIMITS_ACOUNT_RPS", "hunter2"),
        ("CAMS_FLOWS_SOMETHING_ELSE", "hunter2"),
        ("CAMS_FLOWS_TARGET", "localhost:50051"),
        ("CAMS_FLOWS_CONFIG", "/nonexistent.toml"),
        ("PATH", "/bin"),
    ]);
    let warnings: Vec<String> = environment
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "CAMS_FLOWS_LIMITS_ACOUNT_RPS is not a cams-flows setting and is ignored (did you \
             mean CAMS_FLOWS_LIMITS_ACCOUNT_RPS?)",
            "CAMS_FLOWS_SOMETHING_ELSE is not a cams-flows setting and is ignored",
        ]
    );
}

#[cfg(unix)]
#[test]
fn a_value_that_is_not_utf8_is_an_error() {
    use std::{ffi::OsString, os::unix::ffi::OsStringExt};

    let environment = crate::config::Environment::capture([(
        OsString::from("CAMS_FLOWS_LISTEN"),
        OsString::from_vec(vec![0xff]),
    )]);
    let err = args(&["--sandbox"])
        .load(&environment)
        .expect_err("not utf-8");
    assert_eq!(
        (err.key.as_str(), err.origin),
        ("listen", Some(Origin::Env("CAMS_FLOWS_LISTEN".into())))
    );
}
