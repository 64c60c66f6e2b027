//! `[credentials]`: the provider, the keys that stand in for the standard variables, AssumeRole,
//! from every layer, and the refusals that name their key.

use std::time::Duration;

use super::{load, resolve_file};
use crate::credentials::{AssumeRoleConfig, ProviderChoice};

#[test]
fn the_chain_by_default_and_a_pinned_provider_with_its_settings() {
    let c = resolve_file("").expect("defaults");
    assert_eq!(c.credentials.provider, ProviderChoice::Chain);
    assert!(c.credentials.variables.is_empty());
    assert_eq!(c.credentials.metadata_timeout, Duration::from_secs(1));
    assert_eq!(c.credentials.sts_timeout, Duration::from_secs(10));

    let c = resolve_file(
        "[credentials]\nprovider = \"oidc\"\nrole_arn = \"acs:ram::1:role/r\"\nsts_region = \"cn-hangzhou\"\n\
         sts_vpc_endpoint = true\nduration_seconds = 1800\nassume_role_arn = \"acs:ram::1:role/next\"\n\
         assume_role_external_id = \"x\"\nmetadata_timeout_ms = 500\n",
    )
    .expect("valid");
    let creds = &c.credentials;
    assert_eq!(creds.provider, ProviderChoice::Oidc);
    let var = |name: &str| {
        creds
            .variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(var("ALIBABA_CLOUD_ROLE_ARN"), Some("acs:ram::1:role/r"));
    assert_eq!(var("ALIBABA_CLOUD_STS_REGION"), Some("cn-hangzhou"));
    assert_eq!(var("ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"), Some("true"));
    assert_eq!(var("CAMS_FLOWS_CREDENTIALS_DURATION_SECONDS"), Some("1800"));
    assert_eq!(
        creds.assume_role,
        Some(AssumeRoleConfig {
            role_arn: "acs:ram::1:role/next".to_owned(),
            session_name: None,
            external_id: Some("x".to_owned()),
        })
    );
    assert_eq!(creds.metadata_timeout, Duration::from_millis(500));
}

#[test]
fn flags_and_variables_follow_the_naming_rule() {
    let c = load(
        &["--sandbox", "--credentials-provider", "ecs_ram_role"],
        &[
            ("CAMS_FLOWS_CREDENTIALS_ECS_ROLE_NAME", "worker"),
            ("CAMS_FLOWS_CREDENTIALS_IMDSV1_DISABLED", "true"),
        ],
    )
    .expect("valid");
    assert_eq!(c.credentials.provider, ProviderChoice::EcsRamRole);
    assert!(
        c.credentials
            .variables
            .contains(&("ALIBABA_CLOUD_ECS_METADATA".to_owned(), "worker".to_owned()))
    );
    assert!(c.credentials.variables.contains(&(
        "ALIBABA_CLOUD_IMDSV1_DISABLED".to_owned(),
        "true".to_owned()
    )));
}

#[test]
fn refusals_name_the_key() {
    for (toml, key) in [
        ("provider = \"vault\"", "credentials.provider"),
        ("duration_seconds = 60", "credentials.duration_seconds"),
        ("sts_endpoint = \"ftp://x\"", "credentials.sts_endpoint"),
        ("uri = \"not a url\"", "credentials.uri"),
        (
            "assume_role_session_name = \"s\"",
            "credentials.assume_role_session_name",
        ),
        ("sts_timeout_ms = 0", "credentials.sts_timeout_ms"),
    ] {
        let err = resolve_file(&format!("[credentials]\n{toml}\n")).expect_err(toml);
        assert_eq!(err.key, key, "{toml}: {err}");
    }
    let err = resolve_file("[credentials]\nuri = \"ftp://u:secret-token@h\"\n").expect_err("bad");
    assert!(!err.to_string().contains("secret-token"), "{err}");
}
