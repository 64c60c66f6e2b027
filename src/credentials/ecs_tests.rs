//! The ECS RAM role against the simulated metadata service: IMDSv2, the v1 fallback and its
//! disabling, and every way the answer can be wrong.

use super::super::{CredentialSource, ProviderChoice, testkit::World};
use crate::sandbox::{Fault, MetadataCall};

fn shape(calls: &[MetadataCall]) -> Vec<(String, bool, u16)> {
    calls
        .iter()
        .map(|c| {
            let path = c.path.trim_start_matches("/latest/").to_owned();
            (format!("{} {path}", c.method), c.with_token, c.status)
        })
        .collect()
}

fn call(method_path: &str, with_token: bool, status: u16) -> (String, bool, u16) {
    (method_path.to_owned(), with_token, status)
}

#[tokio::test]
async fn a_session_token_first_then_the_role_and_its_keys() {
    let mut world = World::new().await;
    world.simulated();
    let provider = world.resolve(ProviderChoice::Chain).await.expect("ecs");
    let c = provider.credentials().await.expect("credentials");
    assert_eq!(c.source(), CredentialSource::EcsRamRole);
    assert!(c.expires_at().is_some() && c.security_token().is_some());
    assert_eq!(
        shape(&world.identity.stats().metadata),
        [
            call("PUT api/token", false, 200),
            call("GET meta-data/ram/security-credentials/", true, 200),
            call(
                "GET meta-data/ram/security-credentials/cams-flows-sandbox",
                true,
                200
            ),
        ]
    );

    // A named role saves the listing.
    let mut world = World::new().await;
    world
        .simulated()
        .set("ALIBABA_CLOUD_ECS_METADATA", "cams-flows-sandbox");
    world
        .resolve(ProviderChoice::EcsRamRole)
        .await
        .expect("ecs");
    assert_eq!(world.identity.stats().metadata.len(), 2);
}

#[tokio::test]
async fn a_refused_session_token_falls_back_to_imdsv1_unless_disabled() {
    let mut world = World::new().await;
    world.simulated();
    world.metadata_fault(Some(Fault::TokenRefused));
    world.resolve(ProviderChoice::EcsRamRole).await.expect("v1");
    assert_eq!(
        shape(&world.identity.stats().metadata),
        [
            call("PUT api/token", false, 403),
            call("GET meta-data/ram/security-credentials/", false, 200),
            call(
                "GET meta-data/ram/security-credentials/cams-flows-sandbox",
                false,
                200
            ),
        ]
    );

    world.set("ALIBABA_CLOUD_IMDSV1_DISABLED", "true");
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains(
            "the metadata service refused a session token (the ECS metadata service answered \
             HTTP 403"
        ) && text.contains("ALIBABA_CLOUD_IMDSV1_DISABLED forbids the fallback to IMDSv1"),
        "{text}"
    );
    assert_eq!(
        world.identity.stats().metadata.len(),
        4,
        "no read without a token"
    );
}

#[tokio::test]
async fn a_read_that_fails_with_a_token_is_repeated_without_unless_disabled() {
    let mut world = World::new().await;
    world.simulated();
    world.metadata_fault(Some(Fault::TokenRejected));
    world.resolve(ProviderChoice::EcsRamRole).await.expect("v1");
    let role = "GET meta-data/ram/security-credentials/cams-flows-sandbox";
    assert_eq!(
        shape(&world.identity.stats().metadata),
        [
            call("PUT api/token", false, 200),
            call("GET meta-data/ram/security-credentials/", true, 401),
            call("GET meta-data/ram/security-credentials/", false, 200),
            call(role, true, 401),
            call(role, false, 200),
        ]
    );
    world.set("ALIBABA_CLOUD_IMDSV1_DISABLED", "true");
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(text.contains("answered HTTP 401"), "{text}");
}

#[tokio::test]
async fn a_hardened_service_answers_only_with_a_token() {
    let mut world = World::with(|c| c.hardened = true).await;
    world.simulated();
    world.resolve(ProviderChoice::EcsRamRole).await.expect("v2");
    // Hardened and the token refused: the v1 reads are refused too, and the error says how.
    world.metadata_fault(Some(Fault::TokenRefused));
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains("ecs_ram_role: failed: the ECS metadata service answered HTTP 401"),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_answers_are_errors_that_say_what_was_wrong() {
    let mut world = World::new().await;
    world.simulated();

    world.metadata_fault(Some(Fault::Garbage));
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains("the ECS metadata service sent a malformed answer: JSON cut short"),
        "{text}"
    );

    world.metadata_fault(Some(Fault::Error {
        status: 200,
        code: "Failed".to_owned(),
    }));
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(text.contains("answered Code \"Failed\""), "{text}");

    world.metadata_fault(Some(Fault::Expired));
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains("the ECS metadata service handed out credentials that expired at"),
        "{text}"
    );

    world.metadata_fault(None);
    world.set("ALIBABA_CLOUD_ECS_METADATA", "no-such-role");
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains("answered HTTP 404 (a ") && text.contains("not an error envelope"),
        "{text}"
    );
}

#[tokio::test]
async fn no_metadata_service_means_the_role_does_not_apply_unless_named() {
    let mut world = World::new().await;
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(text.contains("ecs_ram_role: does not apply"), "{text}");
    world.set("ALIBABA_CLOUD_ECS_METADATA", "my-role");
    let text = world.failure(ProviderChoice::EcsRamRole).await;
    assert!(
        text.contains("ecs_ram_role: failed: could not reach the ECS metadata service"),
        "{text}"
    );
}
