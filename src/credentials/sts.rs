//! The typed STS client: `AssumeRoleWithOIDC` (unsigned, the OIDC token in a POST body so that it
//! stays out of URLs and access logs), and `AssumeRole` and `GetCallerIdentity` (signed with the
//! RPC HMAC-SHA1 signature by the caller's credentials), over one HTTP client with connect and
//! request timeouts, against an endpoint chosen as the official SDKs choose it.

use std::time::Duration;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::{
    CredentialSource, Credentials, CredentialsError, format_timestamp,
    http::{self, StsAnswer, Timeouts},
    identity::{CallerIdentity, IdentityAnswer},
    vars::Vars,
};
use crate::{
    acs::{rpc, v3::encode},
    clock::SharedClock,
};

pub(crate) const SERVICE: &str = "STS";
const VERSION: &str = "2015-04-01";
const DEFAULT_HOST: &str = "sts.aliyuncs.com";

pub(crate) const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";
pub(crate) const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
pub(crate) const ENV_VPC_ENDPOINT: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";

/// STS's bounds on `DurationSeconds`; the role's own maximum may be lower.
pub(crate) const MIN_DURATION: Duration = Duration::from_secs(900);
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(43_200);
pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(3_600);

/// The official SDKs' defaults: 5 s to connect, 10 s for the whole exchange (`[credentials]`
/// declares its own defaults, the same).
#[cfg(test)]
const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    request: Duration::from_secs(10),
};

/// Where STS is: an explicit endpoint (`ALIBABA_CLOUD_STS_ENDPOINT` or `credentials.sts_endpoint`;
/// a bare host means HTTPS), else `sts[-vpc].<region>.aliyuncs.com` when a region is set, else
/// `sts.aliyuncs.com`. As in the SDKs, the VPC switch needs a region and is ignored without one.
pub(crate) fn endpoint(
    explicit: Option<&str>,
    region: Option<&str>,
    vpc: bool,
) -> Result<Url, CredentialsError> {
    let url = match explicit {
        Some(value) if value.contains("://") => value.to_owned(),
        Some(host) => format!("https://{host}"),
        None => match region {
            Some(region) => {
                let prefix = if vpc { "sts-vpc" } else { "sts" };
                format!("https://{prefix}.{region}.aliyuncs.com")
            }
            None => format!("https://{DEFAULT_HOST}"),
        },
    };
    let setting = if explicit.is_some() {
        ENV_STS_ENDPOINT
    } else {
        ENV_STS_REGION
    };
    let parsed = Url::parse(&url)
        .map_err(|e| CredentialsError::setting(setting, format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(CredentialsError::setting(
            setting,
            format!("{url:?} is not an http(s) URL with a host"),
        ));
    }
    Ok(parsed)
}

/// How a provider reaches STS, from the variables (or a profile's own region and VPC switch,
/// which an explicit endpoint still overrides).
#[derive(Debug, Clone)]
pub(crate) struct StsSettings {
    pub endpoint: Url,
    pub timeouts: Timeouts,
}

impl StsSettings {
    pub(crate) fn from_vars(
        vars: &Vars,
        region: Option<&str>,
        vpc: Option<bool>,
        timeouts: Timeouts,
    ) -> Result<Self, CredentialsError> {
        let region = region.or_else(|| vars.get(ENV_STS_REGION));
        let vpc = vpc.unwrap_or_else(|| vars.flag(ENV_VPC_ENDPOINT));
        Ok(Self {
            endpoint: endpoint(vars.get(ENV_STS_ENDPOINT), region, vpc)?,
            timeouts,
        })
    }
}

/// Request parameters, in the order they are sent.
type Params = Vec<(&'static str, String)>;

/// One STS endpoint, one connection pool.
#[derive(Debug)]
pub(crate) struct StsClient {
    http: reqwest::Client,
    endpoint: Url,
    timeouts: Timeouts,
    clock: SharedClock,
}

pub(crate) const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// Not a variable of the SDKs: the `[credentials]` section's `duration_seconds` and `policy`
/// reach the providers under these names.
pub(crate) const VAR_DURATION: &str = "CAMS_FLOWS_CREDENTIALS_DURATION_SECONDS";
pub(crate) const VAR_POLICY: &str = "CAMS_FLOWS_CREDENTIALS_POLICY";

/// The session of a role to assume (`AssumeRole` or `AssumeRoleWithOIDC`), besides the proof.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub policy: Option<String>,
}

impl Session {
    /// A role's session as its provider names it, else as the environment and `[credentials]`
    /// do, else a generated name and STS's default duration: the same for every provider that
    /// assumes a role (RRSA, a profile's OIDC or RamRoleArn mode, a file's ram_role_arn).
    pub(crate) fn new(
        vars: &Vars,
        clock: &SharedClock,
        role_arn: &str,
        session_name: Option<&str>,
        duration_secs: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        Ok(Self {
            role_arn: role_arn.to_owned(),
            session_name: session_name
                .or_else(|| vars.get(ENV_ROLE_SESSION_NAME))
                .map_or_else(|| default_session_name(clock), str::to_owned),
            duration: duration(
                VAR_DURATION,
                duration_secs.or_else(|| vars.get(VAR_DURATION)),
            )?,
            policy: policy.or_else(|| vars.get(VAR_POLICY)).map(str::to_owned),
        })
    }
}

impl StsClient {
    pub(crate) fn new(
        settings: &StsSettings,
        clock: SharedClock,
    ) -> Result<Self, CredentialsError> {
        Ok(Self {
            http: http::client(SERVICE, settings.timeouts, true)?,
            endpoint: settings.endpoint.clone(),
            timeouts: settings.timeouts,
            clock,
        })
    }

    /// RRSA: trades the OIDC token for temporary keys. Unsigned, as the API requires.
    pub(crate) async fn assume_role_with_oidc(
        &self,
        session: &Session,
        provider_arn: &str,
        token: &SecretString,
    ) -> Result<Credentials, CredentialsError> {
        let query = self.common("AssumeRoleWithOIDC");
        let mut form = session.form();
        form.push(("OIDCProviderArn", provider_arn.to_owned()));
        form.push(("OIDCToken", token.expose_secret().to_owned()));
        self.call(&query, &form, CredentialSource::OidcRoleArn)
            .await
    }

    /// `AssumeRole`, signed by `signer`.
    pub(crate) async fn assume_role(
        &self,
        signer: &Credentials,
        session: &Session,
        external_id: Option<&str>,
    ) -> Result<Credentials, CredentialsError> {
        let mut form = session.form();
        if let Some(id) = external_id {
            form.push(("ExternalId", id.to_owned()));
        }
        let (query, form) = self.signed("AssumeRole", signer, form);
        self.call(&query, &form, CredentialSource::RamRoleArn).await
    }

    /// `GetCallerIdentity`, signed by `signer`: whose credentials they are. Any valid key may ask
    /// it, long-lived or temporary, without a RAM permission of its own.
    pub(crate) async fn get_caller_identity(
        &self,
        signer: &Credentials,
    ) -> Result<CallerIdentity, CredentialsError> {
        let (query, form) = self.signed("GetCallerIdentity", signer, Vec::new());
        let body = self.post(&query, &form).await?;
        let answer: IdentityAnswer =
            serde_json::from_slice(&body).map_err(|e| http::malformed_json(SERVICE, &e))?;
        answer.into_identity()
    }

    fn common(&self, action: &str) -> Params {
        vec![
            ("Action", action.to_owned()),
            ("Format", "JSON".to_owned()),
            ("Version", VERSION.to_owned()),
            ("Timestamp", format_timestamp(self.clock.now())),
        ]
    }

    /// The query and the form of `action` signed by `signer`. Its STS token, if any, travels in
    /// the form with the other parameters, so that no secret is in the URL; the signature covers
    /// query and form together, as STS reads them.
    fn signed(&self, action: &str, signer: &Credentials, mut form: Params) -> (Params, Params) {
        let mut query = self.common(action);
        query.extend([
            ("SignatureMethod", rpc::SIGNATURE_METHOD.to_owned()),
            ("SignatureVersion", rpc::SIGNATURE_VERSION.to_owned()),
            ("SignatureNonce", uuid::Uuid::new_v4().simple().to_string()),
            ("AccessKeyId", signer.access_key_id().to_owned()),
        ]);
        if let Some(token) = signer.security_token() {
            form.push(("SecurityToken", token.to_owned()));
        }
        let signature = rpc::signature(
            "POST",
            query.iter().chain(&form).map(|(k, v)| (*k, v.as_str())),
            signer.access_key_secret(),
        );
        query.push(("Signature", signature));
        (query, form)
    }

    /// Temporary keys from `AssumeRole` or `AssumeRoleWithOIDC`.
    async fn call(
        &self,
        query: &[(&'static str, String)],
        form: &[(&'static str, String)],
        source: CredentialSource,
    ) -> Result<Credentials, CredentialsError> {
        let body = self.post(query, form).await?;
        let answer: StsAnswer =
            serde_json::from_slice(&body).map_err(|e| http::malformed_json(SERVICE, &e))?;
        let keys = answer
            .credentials
            .ok_or_else(|| CredentialsError::Malformed {
                service: SERVICE,
                detail: "Credentials is missing".to_owned(),
            })?;
        keys.into_credentials(SERVICE, source, self.clock.now())
    }

    /// One exchange: the body of a 200 answer, or the refusal.
    async fn post(
        &self,
        query: &[(&'static str, String)],
        form: &[(&'static str, String)],
    ) -> Result<Vec<u8>, CredentialsError> {
        let mut url = self.endpoint.clone();
        url.set_query(Some(&encoded(query)));
        let request = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(encoded(form));
        let (status, body) = http::exchange(SERVICE, self.timeouts, request).await?;
        if status != 200 {
            return Err(http::refused(SERVICE, status, &body));
        }
        Ok(body)
    }
}

impl Session {
    fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("RoleArn", self.role_arn.clone()),
            ("RoleSessionName", self.session_name.clone()),
            ("DurationSeconds", self.duration.as_secs().to_string()),
        ];
        if let Some(policy) = &self.policy {
            form.push(("Policy", policy.clone()));
        }
        form
    }
}

fn encoded(params: &[(&'static str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `DurationSeconds` as configured, checked against STS's bounds.
pub(crate) fn duration(setting: &str, value: Option<&str>) -> Result<Duration, CredentialsError> {
    let Some(value) = value else {
        return Ok(DEFAULT_DURATION);
    };
    let secs: u64 = value.parse().map_err(|_| {
        CredentialsError::setting(setting, format!("{value:?} is not a number of seconds"))
    })?;
    let duration = Duration::from_secs(secs);
    if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
        return Err(CredentialsError::setting(
            setting,
            format!(
                "{secs} s is outside STS's {}..={} s",
                MIN_DURATION.as_secs(),
                MAX_DURATION.as_secs()
            ),
        ));
    }
    Ok(duration)
}

/// A session name for the audit log when none is configured: the SDKs' habit of a tool name
/// and a time.
pub(crate) fn default_session_name(clock: &SharedClock) -> String {
    let secs = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("cams-flows-{secs}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_selection_follows_the_sdks() {
        let e = |explicit, region, vpc| endpoint(explicit, region, vpc).expect("valid").to_string();
        assert_eq!(e(None, None, false), "https://sts.aliyuncs.com/");
        assert_eq!(e(None, None, true), "https://sts.aliyuncs.com/");
        assert_eq!(
            e(None, Some("cn-hangzhou"), true),
            "https://sts-vpc.cn-hangzhou.aliyuncs.com/"
        );
        assert_eq!(
            e(None, Some("cn-shanghai"), false),
            "https://sts.cn-shanghai.aliyuncs.com/"
        );
        assert_eq!(
            e(Some("sts.example.com"), Some("cn-shanghai"), true),
            "https://sts.example.com/"
        );
        assert_eq!(
            e(Some("http://127.0.0.1:9"), None, false),
            "http://127.0.0.1:9/"
        );
        let err = endpoint(Some("ftp://x"), None, false).expect_err("not http");
        assert!(err.to_string().contains(ENV_STS_ENDPOINT), "{err}");
    }

    #[test]
    fn settings_read_the_variables() {
        let vars = Vars::from_pairs([(ENV_STS_REGION, "cn-beijing"), (ENV_VPC_ENDPOINT, "TRUE")]);
        let s = StsSettings::from_vars(&vars, None, None, DEFAULT_TIMEOUTS).expect("valid");
        assert_eq!(
            s.endpoint.as_str(),
            "https://sts-vpc.cn-beijing.aliyuncs.com/"
        );
        let s =
            StsSettings::from_vars(&vars, Some("ap-southeast-1"), Some(false), DEFAULT_TIMEOUTS)
                .expect("valid");
        assert_eq!(
            s.endpoint.as_str(),
            "https://sts.ap-southeast-1.aliyuncs.com/"
        );
    }

    #[test]
    fn duration_bounds() {
        assert_eq!(duration("d", None).expect("default"), DEFAULT_DURATION);
        assert_eq!(duration("d", Some("900")).expect("min"), MIN_DURATION);
        for bad in ["899", "43201", "x", "-1"] {
            let err = duration("d", Some(bad)).expect_err(bad).to_string();
            assert!(err.starts_with("d: "), "{err}");
        }
    }
}
