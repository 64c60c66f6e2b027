//! The chain's order and its error, and the OIDC, URI and AssumeRole providers against the
//! simulated STS and metadata service.

use std::time::{Duration, SystemTime};

use super::super::{
    AssumeRoleConfig, CredentialSource, CredentialsConfig, ProviderChoice,
    testkit::{JWT, SIGNER_ID, SIGNER_SECRET, World},
};
use crate::{acs::v3::hex_sha256, sandbox::Fault};

fn sha(token: &str) -> String {
    hex_sha256(token.as_bytes())[..16].to_owned()
}

#[tokio::test]
async fn nothing_configured_lists_every_provider_and_why() {
    let world = World::new().await;
    let text = world.failure(ProviderChoice::Chain).await;
    for expected in [
        "environment: does not apply: ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET not set",
        "oidc_role_arn: does not apply: ALIBABA_CLOUD_ROLE_ARN, ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE not set",
        "cli_profile: does not apply: ",
        "config.json does not exist",
        "credentials_file: does not apply: ",
        "credentials.ini and ",
        "ecs_ram_role: does not apply: could not reach the ECS metadata service: connection failed",
        "credentials_uri: does not apply: ALIBABA_CLOUD_CREDENTIALS_URI not set",
    ] {
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
    let mut disabled = World::new().await;
    disabled.set("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    let text = disabled.failure(ProviderChoice::Chain).await;
    assert!(
        text.contains("ecs_ram_role: does not apply: ALIBABA_CLOUD_ECS_METADATA_DISABLED is true"),
        "{text}"
    );
}

#[tokio::test]
async fn the_first_configured_provider_wins_and_a_failing_one_does_not_fall_through() {
    let mut world = World::new().await;
    world
        .oidc(JWT)
        .set("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIenv")
        .set("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "env-secret");
    let provider = world.resolve(ProviderChoice::Chain).await.expect("env");
    let c = provider.credentials().await.expect("static");
    assert_eq!(c.source(), CredentialSource::Environment);
    assert!(provider.refresh_task().is_none());
    assert!(world.identity.stats().sts.is_empty(), "OIDC was not asked");

    // OIDC is configured but STS refuses it: the chain stops there rather than trying the
    // metadata service (the node's role on ACK) or anything after it.
    let mut world = World::new().await;
    world.oidc(JWT);
    world.set(
        "ALIBABA_CLOUD_CREDENTIALS_URI",
        &format!(
            "{}/latest/meta-data/ram/security-credentials/cams-flows-sandbox",
            world.identity.endpoint()
        ),
    );
    world.sts_fault(Some(Fault::Error {
        status: 401,
        code: "AuthenticationFail.NoPermission".to_owned(),
    }));
    let text = world.failure(ProviderChoice::Chain).await;
    assert!(
        text.contains(
            "oidc_role_arn: failed: STS answered HTTP 401 AuthenticationFail.NoPermission"
        ),
        "{text}"
    );
    assert!(!text.contains("credentials_uri"), "{text}");
    assert!(world.identity.stats().metadata.is_empty());
}

#[tokio::test]
async fn oidc_trades_the_token_file_at_sts_and_reads_it_again_at_every_refresh() {
    let mut world = World::new().await;
    world
        .oidc(&format!("{JWT}\n"))
        .set("ALIBABA_CLOUD_ROLE_SESSION_NAME", "gateway-1");
    let before = SystemTime::now();
    let provider = world.resolve(ProviderChoice::Oidc).await.expect("oidc");
    let c = provider.credentials().await.expect("credentials");
    assert_eq!(c.source(), CredentialSource::OidcRoleArn);
    assert!(c.access_key_id().starts_with("STS."));
    let expires = c.expires_at().expect("temporary");
    let lifetime = expires.duration_since(before).expect("future");
    assert!(
        lifetime > Duration::from_secs(890) && lifetime <= Duration::from_secs(901),
        "{lifetime:?}"
    );
    let calls = world.identity.stats().sts;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].action, "AssumeRoleWithOIDC");
    assert_eq!(calls[0].role_arn, "acs:ram::1234:role/cams");
    assert_eq!(calls[0].session_name, "gateway-1");
    // Trimmed of its newline, and sent in the body (the simulated STS refuses it in a URL).
    assert_eq!(calls[0].token_sha256.as_deref(), Some(sha(JWT).as_str()));

    // Kubernetes rotates the token: the next fetch sends the new one.
    let rotated = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QtMiJ9.c2lnbmF0dXJlMg";
    world.file("token", rotated);
    let provider = world.resolve(ProviderChoice::Oidc).await.expect("oidc");
    provider.credentials().await.expect("credentials");
    let calls = world.identity.stats().sts;
    assert_eq!(
        calls[1].token_sha256.as_deref(),
        Some(sha(rotated).as_str())
    );
}

#[tokio::test]
async fn oidc_errors_say_what_failed() {
    let mut world = World::new().await;
    world.oidc(JWT);

    let missing = world.home.path().join("no-such-token");
    world.set(
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
        &missing.display().to_string(),
    );
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains("oidc_role_arn: failed: cannot read the OIDC token file")
            && text.contains("no-such-token"),
        "{text}"
    );

    world.oidc("");
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(text.contains("the OIDC token file is empty"), "{text}");

    world.oidc("not-a-jwt");
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains("STS answered HTTP 400 AuthenticationFail.OIDCToken.Invalid"),
        "{text}"
    );

    world.oidc(JWT);
    world.sts_fault(Some(Fault::Error {
        status: 401,
        code: "AuthenticationFail.OIDCToken.Expired".to_owned(),
    }));
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains(
            "STS answered HTTP 401 AuthenticationFail.OIDCToken.Expired: Simulated error"
        ) && text.contains("(RequestId "),
        "{text}"
    );

    world.sts_fault(Some(Fault::Garbage));
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains("STS sent a malformed answer: JSON cut short"),
        "{text}"
    );

    world.sts_fault(Some(Fault::Expired));
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains("STS handed out credentials that expired at"),
        "{text}"
    );

    world.sts_fault(None);
    world.set(
        "ALIBABA_CLOUD_STS_ENDPOINT",
        &format!("http://{}", world.closed.addr),
    );
    let text = world.failure(ProviderChoice::Oidc).await;
    assert!(
        text.contains("could not reach STS: connection failed"),
        "{text}"
    );

    // Pinned to OIDC, a partial configuration is named, and nothing else is tried.
    let mut world = World::new().await;
    world.set("ALIBABA_CLOUD_ROLE_ARN", "acs:ram::1:role/x");
    let text = world.failure(ProviderChoice::Oidc).await;
    assert_eq!(
        text,
        "no CAMS credentials (or run with --sandbox); providers tried: oidc_role_arn: does not \
         apply: ALIBABA_CLOUD_OIDC_PROVIDER_ARN, ALIBABA_CLOUD_OIDC_TOKEN_FILE not set"
    );
}

#[tokio::test]
async fn the_credentials_uri_and_its_errors() {
    let mut world = World::new().await;
    let uri = format!(
        "{}/latest/meta-data/ram/security-credentials/cams-flows-sandbox",
        world.identity.endpoint()
    );
    world.set("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    world.set("ALIBABA_CLOUD_CREDENTIALS_URI", &uri);
    let provider = world.resolve(ProviderChoice::Chain).await.expect("uri");
    let c = provider.credentials().await.expect("credentials");
    assert_eq!(c.source(), CredentialSource::CredentialsUri);
    assert!(provider.refresh_task().is_some(), "temporary: refreshed");

    world.metadata_fault(Some(Fault::Error {
        status: 200,
        code: "Failed".to_owned(),
    }));
    let text = world.failure(ProviderChoice::CredentialsUri).await;
    assert!(
        text.contains("the credentials URI answered Code \"Failed\""),
        "{text}"
    );
    world.metadata_fault(Some(Fault::Unavailable));
    let text = world.failure(ProviderChoice::CredentialsUri).await;
    assert!(
        text.contains("the credentials URI answered HTTP 503"),
        "{text}"
    );
    world.metadata_fault(Some(Fault::Garbage));
    let text = world.failure(ProviderChoice::CredentialsUri).await;
    assert!(text.contains("malformed answer"), "{text}");

    world.set("ALIBABA_CLOUD_CREDENTIALS_URI", "ftp://user:tok3n@host/x");
    let text = world.failure(ProviderChoice::CredentialsUri).await;
    assert!(
        text.contains("ALIBABA_CLOUD_CREDENTIALS_URI: is not an http(s) URL")
            && !text.contains("tok3n"),
        "{text}"
    );
}

#[tokio::test]
async fn assume_role_on_top_of_any_source_is_signed_as_sts_requires() {
    // An AccessKey from the environment, then AssumeRole: the simulated STS checks the RPC
    // HMAC-SHA1 signature over query and body.
    let mut world = World::new().await;
    world
        .simulated()
        .set("ALIBABA_CLOUD_ACCESS_KEY_ID", SIGNER_ID)
        .set("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SIGNER_SECRET);
    let config = CredentialsConfig {
        assume_role: Some(AssumeRoleConfig {
            role_arn: "acs:ram::1234:role/reader".to_owned(),
            session_name: Some("gw".to_owned()),
            external_id: Some("ext-1".to_owned()),
        }),
        ..CredentialsConfig::default()
    };
    let provider = world.resolve_with(config.clone()).await.expect("assumed");
    let c = provider.credentials().await.expect("credentials");
    assert_eq!(c.source(), CredentialSource::RamRoleArn);
    let call = world.identity.stats().sts.pop().expect("a call");
    assert_eq!(
        (
            call.action.as_str(),
            call.signer.as_deref(),
            call.code.as_str()
        ),
        ("AssumeRole", Some(SIGNER_ID), "OK")
    );

    // On top of temporary keys (the ECS role's): their token is signed and sent too.
    let mut world = World::new().await;
    world.simulated();
    let provider = world.resolve_with(config.clone()).await.expect("assumed");
    assert_eq!(
        provider.credentials().await.expect("c").source(),
        CredentialSource::RamRoleArn
    );
    let call = world.identity.stats().sts.pop().expect("a call");
    assert_eq!(call.code, "OK");
    assert!(call.signer.expect("signer").starts_with("STS."));

    // A wrong secret is refused, and the error says so without the secret.
    let mut world = World::new().await;
    world
        .simulated()
        .set("ALIBABA_CLOUD_ACCESS_KEY_ID", SIGNER_ID)
        .set("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret");
    let err = world.resolve_with(config).await.expect_err("refused");
    let text = crate::telemetry::ErrorChain(&err).to_string();
    assert!(
        text.contains("environment: failed: STS answered HTTP 400 SignatureDoesNotMatch")
            && !text.contains("wrong-secret"),
        "{text}"
    );
}
