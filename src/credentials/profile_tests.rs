//! The aliyun CLI profile and the credentials file, every mode and type, against files in a
//! home directory of the test's own and the simulated STS and metadata service.

use super::super::{
    CredentialSource, ProviderChoice,
    testkit::{JWT, SIGNER_ID, SIGNER_SECRET, World},
};

fn cli(profiles: &str, current: &str) -> String {
    format!(r#"{{"current":"{current}","profiles":[{profiles}]}}"#)
}

fn ak(name: &str) -> String {
    format!(
        r#"{{"name":"{name}","mode":"AK","access_key_id":"{SIGNER_ID}","access_key_secret":"{SIGNER_SECRET}"}}"#
    )
}

#[tokio::test]
async fn cli_profile_modes() {
    let mut world = World::new().await;
    world.simulated();
    let token = world.file("token", JWT).display().to_string();
    let profiles = [
        ak("ak"),
        r#"{"name":"sts","mode":"StsToken","access_key_id":"STS.x","access_key_secret":"s","sts_token":"t"}"#
            .to_owned(),
        format!(
            r#"{{"name":"role","mode":"RamRoleArn","access_key_id":"{SIGNER_ID}","access_key_secret":"{SIGNER_SECRET}","ram_role_arn":"acs:ram::1:role/a","ram_session_name":"s1","expired_seconds":1800}}"#
        ),
        r#"{"name":"ecs","mode":"EcsRamRole","ram_role_name":"cams-flows-sandbox"}"#.to_owned(),
        format!(
            r#"{{"name":"oidc","mode":"OIDC","ram_role_arn":"acs:ram::1:role/o","oidc_provider_arn":"acs:ram::1:oidc-provider/p","oidc_token_file":"{token}"}}"#
        ),
        r#"{"name":"chained","mode":"ChainableRamRoleArn","source_profile":"ecs","ram_role_arn":"acs:ram::1:role/c"}"#.to_owned(),
        r#"{"name":"loop-a","mode":"ChainableRamRoleArn","source_profile":"loop-b","ram_role_arn":"acs:ram::1:role/c"}"#.to_owned(),
        r#"{"name":"loop-b","mode":"ChainableRamRoleArn","source_profile":"loop-a","ram_role_arn":"acs:ram::1:role/c"}"#.to_owned(),
        r#"{"name":"sso","mode":"CloudSSO"}"#.to_owned(),
        r#"{"name":"half","mode":"RamRoleArn","access_key_id":"x","access_key_secret":"y"}"#.to_owned(),
        // As the CLI writes a profile: every field present, the unused ones empty or zero.
        format!(
            r#"{{"name":"written","mode":"RamRoleArn","access_key_id":"{SIGNER_ID}","access_key_secret":"{SIGNER_SECRET}","sts_token":"","ram_role_arn":"acs:ram::1:role/w","ram_session_name":"","expired_seconds":0,"sts_region":"","ram_role_name":"","source_profile":"","oidc_token_file":"","oidc_provider_arn":"","policy":"","external_id":""}}"#
        ),
    ];
    world.file(".aliyun/config.json", &cli(&profiles.join(","), "ak"));
    // Every session a profile starts takes its name from the environment when the profile
    // names none, OIDC mode included.
    world.set("ALIBABA_CLOUD_ROLE_SESSION_NAME", "from-env");

    let expect = [
        ("ak", CredentialSource::CliProfile, false),
        ("sts", CredentialSource::CliProfile, false),
        ("role", CredentialSource::RamRoleArn, true),
        ("ecs", CredentialSource::EcsRamRole, true),
        ("oidc", CredentialSource::OidcRoleArn, true),
        ("chained", CredentialSource::RamRoleArn, true),
        ("written", CredentialSource::RamRoleArn, true),
    ];
    for (name, source, refreshed) in expect {
        world.set("ALIBABA_CLOUD_PROFILE", name);
        let provider = world
            .resolve(ProviderChoice::Chain)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let c = provider.credentials().await.expect("credentials");
        assert_eq!(c.source(), source, "{name}");
        assert_eq!(provider.refresh_task().is_some(), refreshed, "{name}");
    }
    let sts = world.identity.stats().sts;
    let role = sts
        .iter()
        .find(|c| c.role_arn == "acs:ram::1:role/a")
        .expect("role");
    assert_eq!(
        (role.session_name.as_str(), role.code.as_str()),
        ("s1", "OK")
    );
    let written = sts
        .iter()
        .find(|c| c.role_arn == "acs:ram::1:role/w")
        .expect("written");
    assert_eq!(written.session_name, "from-env");
    assert_eq!(written.code, "OK");
    let oidc = sts
        .iter()
        .find(|c| c.role_arn == "acs:ram::1:role/o")
        .expect("oidc");
    assert_eq!(oidc.session_name, "from-env");

    for (name, problem) in [
        ("loop-a", "source_profile chains loop or run too deep"),
        ("sso", "mode \"CloudSSO\" is not supported"),
        ("half", "mode RamRoleArn needs ram_role_arn"),
    ] {
        world.set("ALIBABA_CLOUD_PROFILE", name);
        let text = world.failure(ProviderChoice::CliProfile).await;
        assert!(
            text.contains("cli_profile: failed: ") && text.contains(problem),
            "{name}: {text}"
        );
    }
    // A profile the file does not have: the CLI provider does not apply, the chain goes on.
    world.set("ALIBABA_CLOUD_PROFILE", "nobody");
    world.set("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true");
    let text = world.failure(ProviderChoice::Chain).await;
    assert!(
        text.contains("cli_profile: does not apply: profile \"nobody\" is not in"),
        "{text}"
    );
    world.file(".aliyun/config.json", "{not json");
    let text = world.failure(ProviderChoice::CliProfile).await;
    assert!(text.contains("config.json: not JSON (line 1"), "{text}");
}

#[tokio::test]
async fn credentials_file_types() {
    let mut world = World::new().await;
    world.simulated();
    let ini = format!(
        "[default]\ntype = access_key\naccess_key_id = {SIGNER_ID}\naccess_key_secret = {SIGNER_SECRET}\n\n\
         [sts]\ntype = sts\naccess_key_id = STS.a\naccess_key_secret = b\nsecurity_token = c\n\n\
         [role]\ntype = ram_role_arn\naccess_key_id = {SIGNER_ID}\naccess_key_secret = {SIGNER_SECRET}\nrole_arn = acs:ram::1:role/f\n\n\
         [blank]\ntype = ram_role_arn\naccess_key_id = {SIGNER_ID}\naccess_key_secret = {SIGNER_SECRET}\nrole_arn = acs:ram::1:role/b\nrole_session_name =\npolicy =\n\n\
         [ecs]\ntype = ecs_ram_role\nrole_name = cams-flows-sandbox\n\n\
         [off]\nenable = false\ntype = access_key\n\n\
         [rsa]\ntype = rsa_key_pair\n"
    );
    world.file(".alibabacloud/credentials.ini", &ini);
    let provider = world.resolve(ProviderChoice::Chain).await.expect("default");
    let c = provider.credentials().await.expect("c");
    assert_eq!(
        (c.source(), c.access_key_id()),
        (CredentialSource::CredentialsFile, SIGNER_ID)
    );
    for (section, source) in [
        ("sts", CredentialSource::CredentialsFile),
        ("role", CredentialSource::RamRoleArn),
        // Keys written with no value are unset: a default session name, no policy.
        ("blank", CredentialSource::RamRoleArn),
        ("ecs", CredentialSource::EcsRamRole),
    ] {
        world.set("ALIBABA_CLOUD_PROFILE", section);
        let provider = world
            .resolve(ProviderChoice::CredentialsFile)
            .await
            .unwrap_or_else(|e| panic!("{section}: {e}"));
        assert_eq!(provider.credentials().await.expect("c").source(), source);
    }
    world.set("ALIBABA_CLOUD_PROFILE", "off");
    let text = world.failure(ProviderChoice::CredentialsFile).await;
    assert!(
        text.contains("[off] in ") && text.contains("has enable = false"),
        "{text}"
    );
    world.set("ALIBABA_CLOUD_PROFILE", "rsa");
    let text = world.failure(ProviderChoice::CredentialsFile).await;
    assert!(
        text.contains("type \"rsa_key_pair\" is not supported"),
        "{text}"
    );

    // Named explicitly, the file must exist.
    world.set(
        "ALIBABA_CLOUD_CREDENTIALS_FILE",
        "/nonexistent/credentials.ini",
    );
    let text = world.failure(ProviderChoice::Chain).await;
    assert!(
        text.contains("credentials_file: failed: cannot read the credentials file /nonexistent/credentials.ini"),
        "{text}"
    );
}
