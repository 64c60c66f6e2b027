//! One signed attempt at one of CAMS's Flow reads over a pooled HTTPS client. Retrying,
//! limiting and caching live above this layer; this one turns a [`Read`] into one HTTP exchange
//! and its outcome.

use std::{sync::Arc, time::Duration};

use reqwest::{
    Url,
    header::{HeaderMap, HeaderValue},
};

use super::{
    error::CamsError,
    skew::{CamsClock, ClockSkew},
    wire,
};
use crate::{
    acs::{
        openapi::{
            API_VERSION, CUST_SPACE_ID_PARAM, FLOW_ID_PARAM, FLOW_NAME_PARAM, PAGE_PARAM,
            RETRY_AFTER_HEADER,
        },
        v3::{self, EMPTY_BODY_SHA256, RequestToSign},
    },
    clock::SharedClock,
    credentials::{Credentials, CredentialsError, CredentialsProvider},
    domain::{Answer, Read, What},
};

/// Tunables of the upstream HTTP client: the validated `[upstream]` section. Its defaults are the
/// section's: `UpstreamConfig::new(endpoint)` (`config::sections::upstream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub endpoint: Url,
    pub connect_timeout: Duration,
    /// Bound on one attempt when the caller sets no shorter deadline.
    pub request_timeout: Duration,
    /// Largest response body read; a larger one is refused unread.
    pub max_body_bytes: usize,
}

/// Signs and sends CAMS's Flow reads. Cheap to share: holds one connection pool.
#[derive(Debug, Clone)]
pub struct CamsClient {
    http: reqwest::Client,
    /// `scheme://host[:port]/`, the URL every call starts from; parsed once, so that a call
    /// only adds its query.
    base: Url,
    /// The `host` header value as reqwest will send it (port only when not the default).
    host: Arc<str>,
    credentials: Arc<dyn CredentialsProvider>,
    /// Dates every signature (plus the skew's offset).
    clock: SharedClock,
    /// The gateway's clock against CAMS's, from the `Date` of each answer.
    skew: Arc<ClockSkew>,
    config: UpstreamConfig,
}

impl CamsClient {
    pub fn new(
        config: UpstreamConfig,
        credentials: Arc<dyn CredentialsProvider>,
        clock: SharedClock,
    ) -> Result<Self, ClientError> {
        let endpoint = &config.endpoint;
        let host = endpoint
            .host_str()
            .ok_or_else(|| ClientError::Endpoint(endpoint.to_string()))?;
        let host = match endpoint.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            // A redirect would carry a signature computed for another URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cams-flows/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ClientError::Http)?;
        Ok(Self {
            http,
            base: Url::parse(&format!("{}://{host}/", endpoint.scheme()))
                .map_err(|_| ClientError::Endpoint(endpoint.to_string()))?,
            host: host.into(),
            credentials,
            clock,
            skew: Arc::default(),
            config,
        })
    }

    /// The credentials the next attempt will be signed with. Asked for before an account-quota
    /// slot is taken, so that a slow credential source never holds a slot.
    pub async fn credentials(&self) -> Result<Arc<Credentials>, CamsError> {
        self.credentials
            .credentials()
            .await
            .map_err(CamsError::Credentials)
    }

    /// One attempt with the current credentials: what a caller that needs neither a quota nor
    /// retries (the benchmark baselines, a smoke test) does.
    pub async fn fetch(&self, read: &Read) -> Result<Answer, CamsError> {
        let credentials = self.credentials().await?;
        self.read(read, &credentials, None).await
    }

    /// The host calls go to, as spans name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The skew to CAMS's clock last measured, in milliseconds (CAMS minus the gateway); `None`
    /// until CAMS has answered once with a `Date`.
    pub fn measured_skew_ms(&self) -> Option<i64> {
        self.skew.measured_ms()
    }

    /// One freshly signed attempt, ended by the configured request timeout
    /// ([`CamsError::Timeout`]). The caller's deadline is the caller's business: it drops the
    /// future when the deadline passes. A signature CAMS finds too old or too new
    /// (`InvalidTimeStamp.Expired`, the gateway's clock is off) is signed once more, dated by
    /// CAMS's clock as its `Date` header gave it; CAMS refuses such a call before counting it
    /// against the quota, so the retry stays within the one slot. With `trace`, the request
    /// carries that context (`traceparent`, `tracestate`) to CAMS.
    pub async fn read(
        &self,
        read: &Read,
        credentials: &Credentials,
        trace: Option<&opentelemetry::Context>,
    ) -> Result<Answer, CamsError> {
        let (result, measured) = self.attempt(read, credentials, trace).await;
        match (result, measured) {
            (Err(CamsError::Api(api)), Some(skew_ms)) if api.code == TIMESTAMP_EXPIRED => {
                self.skew.adopt(skew_ms);
                tracing::warn!(
                    tenant = read.tenant.as_str(),
                    action = read.action().cams_name(),
                    skew_ms,
                    "CAMS refused the signature's date; signing once more by CAMS's clock"
                );
                self.attempt(read, credentials, trace).await.0
            }
            (result, _) => result,
        }
    }

    /// How far the gateway's clock was from CAMS's at the last answer, in milliseconds, as used
    /// to date signatures (0 while within a minute).
    pub fn clock_offset_ms(&self) -> i64 {
        self.skew.offset_ms()
    }

    /// CAMS's clock as this client knows it: the gateway's clock plus the offset measured from
    /// CAMS's answers, whatever its size (zero before the first). The cache's clock: the
    /// `PreviewUrlExpires` it compares are CAMS's.
    pub fn cams_clock(&self) -> SharedClock {
        Arc::new(CamsClock::new(
            Arc::clone(&self.clock),
            Arc::clone(&self.skew),
        ))
    }

    /// One signed exchange, and the skew measured from its `Date` header (when it had one).
    async fn attempt(
        &self,
        read: &Read,
        credentials: &Credentials,
        trace: Option<&opentelemetry::Context>,
    ) -> (Result<Answer, CamsError>, Option<i64>) {
        let sent = self.clock.now();
        let date = crate::acs::format_timestamp(self.skew.corrected(sent));
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let signed = SignedRead::of(&self.host, read, credentials, &date, &nonce);

        // The canonical query is already percent-encoded with the unreserved set, which the URL
        // parser leaves as it is: the query on the wire is the one signed.
        let mut url = self.base.clone();
        if !signed.query.is_empty() {
            url.set_query(Some(&signed.query));
        }
        let result = async {
            let mut request = self
                .http
                .post(url)
                .header("accept", "application/json")
                .header(
                    "authorization",
                    sensitive(&signed.authorization, "the signature")?,
                )
                .header("content-length", "0");
            // Outside the signature: CAMS checks only the headers the signature lists.
            if let Some(cx) = trace {
                let mut headers = HeaderMap::new();
                crate::telemetry::trace::inject(cx, &mut headers);
                request = request.headers(headers);
            }
            // `host` is set by reqwest from the URL, exactly as signed.
            for (name, value) in signed.headers.iter().filter(|(name, _)| *name != "host") {
                if *name == "x-acs-security-token" {
                    request = request.header(*name, sensitive(value, "the STS token")?);
                } else {
                    request = request.header(*name, *value);
                }
            }
            request.send().await.map_err(transport_error)
        }
        .await;
        let response = match result {
            Ok(response) => response,
            Err(error) => return (Err(error), None),
        };
        let measured = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|date| self.skew.observe(date, sent, self.clock.now()));
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let result = match read_capped(response, self.config.max_body_bytes).await {
            Ok(body) => wire::decode(read.action(), status, &body, retry_after),
            Err(error) => Err(error),
        };
        (result, measured)
    }
}

/// CAMS's answer to a signature dated more than 15 minutes off its clock.
const TIMESTAMP_EXPIRED: &str = "InvalidTimeStamp.Expired";

/// One attempt at a read, signed: what goes on the wire besides the method, path and body.
pub struct SignedRead<'a> {
    /// The canonical query, which is also the query sent.
    pub query: String,
    /// The signed headers as (lower-case name, value), `host` included.
    pub headers: Vec<(&'static str, &'a str)>,
    pub authorization: String,
}

impl<'a> SignedRead<'a> {
    /// Signs a call of `action` with `params` (and the tenant's `CustSpaceId`, when it has one)
    /// for `host` at `date` (RFC 3339, seconds) with a never-reused `nonce`. STS credentials add
    /// their AccessKeyId and token to the signed headers.
    /// `read`, signed: its action and its parameters as CAMS names them.
    pub fn of(
        host: &'a str,
        read: &Read,
        credentials: &'a Credentials,
        date: &'a str,
        nonce: &'a str,
    ) -> Self {
        let page;
        let params = match &read.what {
            What::Flow(id) | What::PreviewUrl(id) | What::JsonAsset(id) => {
                vec![(FLOW_ID_PARAM, id.as_str())]
            }
            What::List(list) => {
                // One compact JSON string, as the official SDKs send it.
                page = format!(r#"{{"Index":{},"Size":{}}}"#, list.index, list.size);
                let mut params = vec![(PAGE_PARAM, page.as_str())];
                if !list.flow_name.is_empty() {
                    params.push((FLOW_NAME_PARAM, list.flow_name.as_str()));
                }
                params
            }
        };
        Self::new(
            host,
            read.action().cams_name(),
            params,
            read.tenant.cust_space_id(),
            credentials,
            date,
            nonce,
        )
    }

    pub fn new<'p>(
        host: &'a str,
        action: &'static str,
        mut params: Vec<(&'p str, &'p str)>,
        cust_space_id: Option<&'p str>,
        credentials: &'a Credentials,
        date: &'a str,
        nonce: &'a str,
    ) -> Self {
        if let Some(space) = cust_space_id {
            params.push((CUST_SPACE_ID_PARAM, space));
        }
        let query = v3::canonical_query(params);
        let mut headers = vec![
            ("host", host),
            ("x-acs-action", action),
            ("x-acs-version", API_VERSION),
            ("x-acs-date", date),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-content-sha256", EMPTY_BODY_SHA256),
        ];
        if let Some(token) = credentials.security_token() {
            headers.push(("x-acs-accesskey-id", credentials.access_key_id()));
            headers.push(("x-acs-security-token", token));
        }
        let signature = RequestToSign {
            method: "POST",
            path: "/",
            canonical_query: &query,
            headers: &headers,
            body_sha256: EMPTY_BODY_SHA256,
        }
        .sign(credentials.access_key_secret());
        let authorization = v3::authorization(credentials.access_key_id(), &signature);
        Self {
            query,
            headers,
            authorization,
        }
    }
}

/// A header value that HTTP libraries keep out of their logs and `Debug` output.
fn sensitive(value: &str, what: &'static str) -> Result<HeaderValue, CamsError> {
    let mut value = HeaderValue::from_str(value)
        .map_err(|_| CamsError::Credentials(CredentialsError::NotAHeaderValue(what)))?;
    value.set_sensitive(true);
    Ok(value)
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_millis)
}

/// Reads the body chunk by chunk and stops at the cap, so a huge or endless body costs at most
/// `limit` bytes of memory.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, CamsError> {
    let http_status = response.status().as_u16();
    let too_large = CamsError::BodyTooLarge { http_status, limit };
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large);
    }
    let mut body =
        Vec::with_capacity(response.content_length().unwrap_or(1024).min(limit as u64) as usize);
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Describes a transport failure without the URL (it carries caller input) and without any
/// header (they carry the signature and the STS token).
fn transport_error(err: reqwest::Error) -> CamsError {
    if err.is_timeout() {
        return CamsError::Timeout;
    }
    let failure = crate::http_failure::describe(err);
    CamsError::Transport {
        what: failure.what,
        detail: failure.detail,
        source: failure.error,
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the CAMS endpoint {0} has no usable host")]
    Endpoint(String),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}
