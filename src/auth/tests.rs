//! The authenticator's unit tests.

use std::num::NonZeroU32;

use super::*;
use crate::limits::{GovernorCallerLimits, keyed::Check};

fn tenants(p: &[&str]) -> TenantSet {
    TenantSet::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid")
}

#[test]
fn api_keys_are_matched_by_hash() {
    let key = ApiKey {
        name: "billing".into(),
        sha256: Sha256::digest(b"s3cret-key").into(),
        tenants: tenants(&["cams-a"]),
    };
    let config = AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![key],
        ..AuthConfig::none()
    };
    let auth = Authenticator::new(
        config.clone(),
        Arc::new(GovernorCallerLimits::new(config.caller_quotas())),
    );
    let mut md = MetadataMap::new();
    assert_eq!(
        auth.authenticate(&md, None).err(),
        Some(AuthError::MissingKey)
    );
    md.insert("authorization", "Bearer wrong".parse().expect("ascii"));
    assert_eq!(auth.authenticate(&md, None).err(), Some(AuthError::BadKey));
    md.insert("authorization", "Basic s3cret-key".parse().expect("ascii"));
    assert_eq!(auth.authenticate(&md, None).err(), Some(AuthError::BadKey));
    md.insert("authorization", "Bearer s3cret-key".parse().expect("ascii"));
    assert_eq!(
        auth.authenticate(&md, None).map(|c| c.name.to_string()),
        Ok("billing".to_owned())
    );
    assert_eq!(
        hash_key("s3cret-key"),
        hex::encode(Sha256::digest(b"s3cret-key"))
    );
}

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// Each known caller checks its calls against its own quota (its entry's, or the default) in
/// the limits it is given; an identity the configuration does not name has none.
#[test]
fn callers_check_their_own_quota_in_the_limits_given() {
    let config = AuthConfig {
        mode: AuthMode::MeshHeader,
        identities: HashMap::from([
            ("spiffe://a/billing".to_owned(), tenants(&["*"])),
            ("spiffe://a/ops".to_owned(), tenants(&["*"])),
        ]),
        callers: CallerQuotas {
            default: Some(quota(2.0, 2)),
            by_name: HashMap::from([("spiffe://a/billing".to_owned(), quota(1.0, 1))]),
            ..CallerQuotas::default()
        },
        ..AuthConfig::none()
    };
    let quotas = config.caller_quotas();
    assert_eq!(
        quotas,
        HashMap::from([
            (Arc::from("spiffe://a/billing"), quota(1.0, 1)),
            (Arc::from("spiffe://a/ops"), quota(2.0, 2)),
            (Arc::from("anonymous"), quota(2.0, 2)),
        ])
    );
    let auth = Authenticator::new(config, Arc::new(GovernorCallerLimits::new(quotas)));
    let as_peer = |uri: &str| {
        let mut md = MetadataMap::new();
        let header = format!("By=spiffe://gw;URI={uri}");
        md.insert("x-forwarded-client-cert", header.parse().expect("ascii"));
        auth.authenticate(&md, None).expect("authenticated")
    };
    let spend = |caller: &Caller| match caller.limit.as_ref().expect("limited").check() {
        Check::Decided(verdict) => verdict,
        Check::Pending(_) => panic!("the in-process limits decide at once"),
    };
    let billing = as_peer("spiffe://a/billing");
    spend(&billing).expect("its burst of one");
    assert_eq!(spend(&billing).expect_err("spent").quota, quota(1.0, 1));
    let ops = as_peer("spiffe://a/ops");
    spend(&ops).expect("its own quota, untouched by billing's");
    spend(&ops).expect("a burst of two");
    assert_eq!(spend(&ops).expect_err("spent").quota, quota(2.0, 2));
    assert!(as_peer("spiffe://a/stranger").limit.is_none());
}

/// A reload replaces the keys and the callers' quotas; the mode stays what it was.
#[test]
fn a_reconfigured_authenticator_knows_the_new_keys_only() {
    let key = |name: &str, secret: &str| ApiKey {
        name: name.into(),
        sha256: Sha256::digest(secret.as_bytes()).into(),
        tenants: tenants(&["*"]),
    };
    let config = AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![key("first", "first-key")],
        ..AuthConfig::none()
    };
    let limits: Arc<dyn CallerLimits> = Arc::new(GovernorCallerLimits::new(config.caller_quotas()));
    let auth = Authenticator::new(config, Arc::clone(&limits));
    let with = |secret: &str| {
        let mut md = MetadataMap::new();
        let value = format!("Bearer {secret}");
        md.insert("authorization", value.parse().expect("ascii"));
        auth.authenticate(&md, None)
    };
    let first = with("first-key").expect("the first key");
    assert!(first.limit.is_none(), "no caller quota yet");
    assert_eq!(with("second-key").err(), Some(AuthError::BadKey));

    auth.reconfigure(AuthConfig {
        mode: AuthMode::None,
        keys: vec![key("second", "second-key")],
        callers: CallerQuotas {
            default: Some(quota(1.0, 1)),
            ..CallerQuotas::default()
        },
        ..AuthConfig::none()
    });
    assert_eq!(with("first-key").err(), Some(AuthError::BadKey));
    let second = with("second-key").expect("the added key, still in api_key mode");
    let spend = |caller: &Caller| match caller.limit.as_ref().expect("limited").check() {
        Check::Decided(verdict) => verdict,
        Check::Pending(_) => panic!("the in-process limits decide at once"),
    };
    spend(&second).expect("its burst of one");
    assert_eq!(spend(&second).expect_err("spent").quota, quota(1.0, 1));
}

/// The admin role comes and goes with a reload, like the keys that carry it.
#[test]
fn a_reload_grants_and_revokes_the_admin_role() {
    use std::collections::HashSet;
    let config = |admin: bool| AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![ApiKey {
            name: "ops".into(),
            sha256: Sha256::digest(b"ops-key").into(),
            tenants: tenants(&["*"]),
        }],
        admins: Admins {
            keys: if admin {
                HashSet::from(["ops".to_owned()])
            } else {
                HashSet::new()
            },
            identities: HashSet::new(),
        },
        ..AuthConfig::none()
    };
    let auth = Authenticator::new(
        config(false),
        Arc::new(GovernorCallerLimits::new(HashMap::new())),
    );
    let ops = || {
        let mut md = MetadataMap::new();
        md.insert("authorization", "Bearer ops-key".parse().expect("ascii"));
        auth.authenticate(&md, None).expect("known").admin
    };
    assert!(!ops());
    auth.reconfigure(config(true));
    assert!(ops(), "granted");
    auth.reconfigure(config(false));
    assert!(!ops(), "revoked");
}
