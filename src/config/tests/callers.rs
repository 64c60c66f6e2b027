//! A caller's weight in the account queue (`weight` on its `[[auth.keys]]` or
//! `[[auth.identities]]` entry, by the caller's name), and a caller's limit in shadow.

use std::sync::Arc;

use super::{load, load_with_file, resolve_file, toml_file};
use crate::config::Origin;

fn key_entry(name: &str, extra: &str) -> String {
    format!(
        "[[auth.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n{extra}",
        crate::auth::hash_key(name)
    )
}

#[test]
fn weights_of_keys_and_identities_reach_the_account_queue_by_caller_name() {
    let c = resolve_file(&format!(
        "{}{}[[auth.identities]]\nid = \"spiffe://x/batch\"\ntenants = [\"*\"]\nweight = 0.5\n",
        key_entry("billing", "weight = 3\n"),
        key_entry("reports", ""),
    ))
    .expect("valid");
    let callers = c.limits.weights().callers;
    assert_eq!(callers.get(&Arc::<str>::from("billing")), Some(&3.0));
    assert_eq!(
        callers.get(&Arc::<str>::from("spiffe://x/batch")),
        Some(&0.5)
    );
    // A caller that sets none keeps the queue's default share.
    assert_eq!(callers.get(&Arc::<str>::from("reports")), None);
    assert_eq!(callers.len(), 2);

    let c = resolve_file("").expect("defaults");
    assert!(c.limits.weights().callers.is_empty());
}

#[test]
fn a_weight_out_of_range_is_refused_naming_the_entry_and_the_file() {
    for (weight, key) in [
        ("0", "auth.keys[1].weight"),
        ("0.001", "auth.keys[1].weight"),
        ("1001", "auth.keys[1].weight"),
        ("nan", "auth.keys[1].weight"),
        ("inf", "auth.keys[1].weight"),
    ] {
        let toml = format!(
            "{}{}",
            key_entry("a", ""),
            key_entry("b", &format!("weight = {weight}\n"))
        );
        let path = toml_file(&toml);
        let p = path.to_str().expect("utf-8");
        let err = load(&["--sandbox", "--config", p], &[]).expect_err(weight);
        assert_eq!(err.key, key, "{weight}: {err}");
        assert_eq!(err.origin, Some(Origin::File(p.into())), "{weight}");
        assert!(err.problem.contains("between 0.01 and 1000"), "{err}");
    }
    let err =
        resolve_file("[[auth.identities]]\nid = \"spiffe://x\"\ntenants = [\"*\"]\nweight = -2\n")
            .expect_err("negative");
    assert_eq!(err.key, "auth.identities[0].weight");
    // The bounds are inclusive.
    for weight in ["0.01", "1000"] {
        resolve_file(&key_entry("a", &format!("weight = {weight}\n"))).expect(weight);
    }
}

#[test]
fn a_misspelt_weight_is_an_unknown_key() {
    let err = resolve_file(&key_entry("a", "wieght = 2\n")).expect_err("unknown");
    assert!(err.problem.contains("wieght"), "{err}");
}

#[test]
fn the_admin_role_is_granted_by_name_and_an_unknown_role_is_refused_naming_the_entry() {
    let c = load_with_file(
        &format!(
            "[auth]\nmode = \"api_key\"\n{}{}[[auth.identities]]\nid = \"spiffe://x/ops\"\n\
             tenants = [\"*\"]\nroles = [\"admin\"]\n",
            key_entry("ops", "roles = [\"admin\"]\n"),
            key_entry("billing", ""),
        ),
        &[],
        &[],
    )
    .expect("valid");
    assert!(c.auth.admins.keys.contains("ops"));
    assert!(!c.auth.admins.keys.contains("billing"));
    assert!(c.auth.admins.identities.contains("spiffe://x/ops"));
    assert!(
        !c.auth.anonymous_admin,
        "api_key mode has no anonymous caller"
    );

    let err = resolve_file(&key_entry("ops", "roles = [\"admni\"]\n")).expect_err("a typo");
    assert_eq!(err.key, "auth.keys[0].roles", "{err}");
    assert!(err.problem.contains("\"ops\""), "names the key: {err}");
    assert!(err.problem.contains("\"admni\""), "names the role: {err}");
    assert!(
        err.problem.contains("admin"),
        "names the known roles: {err}"
    );
}

/// Without authentication every caller is the one anonymous caller: an admin in the sandbox
/// only, where the callers are the developer's own and CAMS is simulated.
#[test]
fn the_anonymous_caller_is_an_admin_in_the_sandbox_only() {
    assert!(resolve_file("").expect("sandbox").auth.anonymous_admin);
    let outside = load(&["--auth-mode", "none"], &[]).expect("none outside the sandbox");
    assert!(!outside.auth.anonymous_admin);
}

/// Limits in shadow: all of them (`limits.shadow`, also from a flag or the environment), one
/// tenant's, one key's or identity's own.
#[test]
fn shadow_limits_from_the_file_the_flag_and_the_environment() {
    let c = resolve_file(&format!(
        "[limits.tenants.\"vip\"]\nshadow = true\n[limits.tenants.\"other\"]\nrps = 2\n{}{}\
         [[auth.identities]]\nid = \"spiffe://x/batch\"\ntenants = [\"*\"]\nrps = 1\nshadow = true\n",
        key_entry("billing", "rps = 3\nshadow = true\n"),
        key_entry("reports", "rps = 3\nshadow = false\n"),
    ))
    .expect("valid");
    let vip = crate::domain::TenantId::parse("vip").expect("id");
    let other = crate::domain::TenantId::parse("other").expect("id");
    assert!(!c.limits.shadow.all);
    assert!(c.limits.shadow.tenant(&vip) && !c.limits.shadow.tenant(&other));
    assert!(
        !c.limits.tenants.contains_key(&vip),
        "shadow alone overrides no quota"
    );
    let shadowed = &c.auth.callers.shadowed;
    assert_eq!(shadowed.get("billing"), Some(&true));
    assert_eq!(shadowed.get("spiffe://x/batch"), Some(&true));
    assert_eq!(
        shadowed.get("reports"),
        Some(&false),
        "an explicit false is kept, to hold the key enforced under limits.shadow"
    );

    let c = resolve_file("").expect("defaults");
    assert_eq!(c.limits.shadow, crate::limits::ShadowLimits::default());
    assert!(
        c.ratelimit_metadata,
        "the RateLimit metadata is on by default"
    );

    let c = load(
        &[
            "--auth-mode",
            "none",
            "--limits-shadow",
            "true",
            "--server-ratelimit-metadata",
            "false",
        ],
        &[],
    )
    .expect("valid");
    assert!(c.limits.shadow.all && c.limits.shadow.tenant(&other));
    assert!(!c.ratelimit_metadata);
    let c = load(
        &["--auth-mode", "none"],
        &[
            ("CAMS_FLOWS_LIMITS_SHADOW", "yes"),
            ("CAMS_FLOWS_SERVER_RATELIMIT_METADATA", "off"),
        ],
    )
    .expect("valid");
    assert!(c.limits.shadow.all && !c.ratelimit_metadata);
}
