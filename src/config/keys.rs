//! The one table of settings that flags and environment variables are made from.
//!
//! A key is written once, as its TOML path; the rest follows by rule: `limits.account_rps` is the
//! environment variable `CAMS_FLOWS_LIMITS_ACCOUNT_RPS` and the flag `--limits-account-rps`.
//! Keys renamed by the rule keep their old flag and variable as aliases.

pub(super) const ENV_PREFIX: &str = "CAMS_FLOWS_";
/// The file itself is not a key of the tree; it is named by flag or variable only.
pub(super) const CONFIG_ENV: &str = "CAMS_FLOWS_CONFIG";

/// One scalar setting. Maps and arrays (`limits.tenants`, `[[auth.keys]]`) are file-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    /// The TOML path: the one name the flag and variable are derived from.
    pub name: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    /// The flag this key had before the naming rule, without dashes (`account-rps`); its
    /// variable is `CAMS_FLOWS_` and the same words (`CAMS_FLOWS_ACCOUNT_RPS`).
    pub alias: Option<&'static str>,
    /// A bare `--sandbox` means true.
    pub switch: bool,
}

impl Key {
    const fn new(name: &'static str, value_name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            value_name,
            help,
            alias: None,
            switch: false,
        }
    }

    const fn alias(self, alias: &'static str) -> Self {
        Self {
            alias: Some(alias),
            ..self
        }
    }

    const fn switch(self) -> Self {
        Self {
            switch: true,
            ..self
        }
    }

    /// `limits.account_rps` ⇒ `limits-account-rps` (without the leading dashes).
    pub(super) fn flag(&self) -> String {
        self.name.replace(['.', '_'], "-")
    }

    /// `limits.account_rps` ⇒ `CAMS_FLOWS_LIMITS_ACCOUNT_RPS`.
    pub(super) fn env(&self) -> String {
        env_of(&self.name.replace('.', "_"))
    }

    pub(super) fn alias_env(&self) -> Option<String> {
        self.alias.map(|a| env_of(&a.replace('-', "_")))
    }
}

fn env_of(words: &str) -> String {
    format!("{ENV_PREFIX}{}", words.to_ascii_uppercase())
}

pub(super) const KEYS: &[Key] = &[
    Key::new("listen", "ADDR", "Address to serve gRPC on"),
    Key::new("endpoint", "URL", "CAMS endpoint: https://host[:port]"),
    Key::new("log_format", "json|text", "Log format"),
    Key::new(
        "sandbox",
        "BOOL",
        "Serve against an in-process simulated CAMS with generated credentials (no cloud \
         account needed). Ignores --endpoint and the ALIBABA_CLOUD_* variables",
    )
    .switch(),
    Key::new(
        "drain_timeout_ms",
        "MS",
        "Time in-flight calls get to finish after SIGTERM/SIGINT",
    ),
    Key::new(
        "call_timeout_ms",
        "MS",
        "Bound on every call, and the deadline of a call whose caller sets none",
    ),
    Key::new(
        "upstream.connect_timeout_ms",
        "MS",
        "Connect timeout towards CAMS",
    ),
    Key::new(
        "upstream.request_timeout_ms",
        "MS",
        "Bound on one HTTP exchange with CAMS",
    ),
    Key::new(
        "upstream.max_body_bytes",
        "BYTES",
        "Largest CAMS response body read; larger ones are refused unread",
    ),
    Key::new(
        "limits.account_rps",
        "N",
        "The account's CAMS GetFlow quota: upstream calls in any sliding second, shared by all \
         tenants",
    )
    .alias("account-rps"),
    Key::new(
        "limits.tenant_rps",
        "RATE",
        "Default per-tenant (CustSpaceId) rate, calls per second; fractions allowed",
    )
    .alias("tenant-rps"),
    Key::new("limits.tenant_burst", "N", "Default per-tenant burst").alias("tenant-burst"),
    Key::new(
        "limits.max_wait_ms",
        "MS",
        "Longest a call waits for account capacity; 0 never waits",
    )
    .alias("max-wait-ms"),
    Key::new(
        "limits.max_queue",
        "N",
        "Calls that may wait for account capacity at once",
    )
    .alias("max-queue"),
    Key::new(
        "cache.ttl_ms",
        "MS",
        "How long a flow is served from the cache; 0 disables caching",
    ),
    Key::new("cache.max_entries", "N", "Flows the cache holds at most"),
    Key::new(
        "cache.stale_if_error_ms",
        "MS",
        "How long past its TTL a cached flow may stand in while CAMS fails or throttles; 0 never",
    )
    .alias("stale-if-error-ms"),
    Key::new(
        "cache.refresh_window_ms",
        "MS",
        "A hit this close to the end of its TTL refreshes the flow in the background; 0 turns \
         refresh-ahead off [default: a fifth of cache.ttl_ms]",
    ),
    Key::new(
        "cache.shared",
        "BOOL",
        "Keep answers in Redis too, shared by the replicas (a tier behind each replica's own \
         cache) [default: on when a Redis is configured]",
    ),
    Key::new(
        "cache.redis_url",
        "URL",
        "A Redis of its own for the shared cache (it may evict; losing it only costs CAMS calls) \
         [default: redis.url]",
    ),
    Key::new(
        "cache.ttl_jitter_percent",
        "PERCENT",
        "Each entry's TTL is drawn from within this percentage of cache.ttl_ms either way, so \
         that entries fetched together do not expire together",
    ),
    Key::new(
        "retry.max_attempts",
        "N",
        "Attempts per CAMS fetch, the first included; 1 disables retries",
    ),
    Key::new(
        "retry.base_backoff_ms",
        "MS",
        "First backoff between attempts (full jitter, doubling up to retry.max_backoff_ms)",
    ),
    Key::new(
        "retry.max_backoff_ms",
        "MS",
        "Longest backoff between attempts",
    ),
    Key::new(
        "retry.budget_ratio",
        "RATIO",
        "Retries allowed as a fraction of recent fetches",
    ),
    Key::new(
        "retry.budget_min_retries",
        "N",
        "Retries always allowed per 10 s, so that a quiet gateway can retry",
    ),
    Key::new(
        "server.max_in_flight",
        "N",
        "GetFlow calls served at once; more are refused at once with UNAVAILABLE",
    )
    .alias("max-in-flight"),
    Key::new(
        "server.max_concurrent_streams",
        "N",
        "HTTP/2 streams one client connection may have open",
    )
    .alias("max-concurrent-streams"),
    Key::new(
        "server.max_connections",
        "N",
        "Client connections served at once; past it a new connection is closed at once",
    ),
    Key::new(
        "server.preface_timeout_ms",
        "MS",
        "Time a new connection has to send the HTTP/2 preface (after TLS) before it is closed",
    ),
    Key::new(
        "server.idle_timeout_ms",
        "MS",
        "Time a connection may stay open with no stream before it is told to go away (GOAWAY)",
    ),
    Key::new(
        "server.max_connection_age_ms",
        "MS",
        "Age (±10 %) at which a connection is told to go away however busy, and closed once its \
         calls have had their bound; 0: never",
    ),
    Key::new(
        "auth.mode",
        "MODE",
        "How callers authenticate: api_key, mtls, mesh_header or none. Required outside the \
         sandbox (keys and identities are set in the config file's [auth] section)",
    ),
    Key::new(
        "auth.caller_rps",
        "RATE",
        "Each caller's rate, calls per second, unless its [[auth.keys]] or [[auth.identities]] \
         entry sets its own [default: no caller limit]",
    ),
    Key::new(
        "auth.caller_burst",
        "N",
        "Each caller's burst, with --auth-caller-rps [default: the rate, at least 1]",
    ),
    Key::new(
        "tls.cert_file",
        "FILE",
        "PEM certificate chain the server presents (enables TLS, with --tls-key-file)",
    ),
    Key::new("tls.key_file", "FILE", "PEM private key of --tls-cert-file"),
    Key::new(
        "tls.client_ca_file",
        "FILE",
        "PEM CA certificates that client certificates must chain to (requires client \
         certificates)",
    ),
    Key::new(
        "redis.url",
        "URL",
        "Redis shared by the replicas (redis:// or rediss://): the account quota and the tenant \
         limits hold for all of them together [default: none, each replica on its own]. A \
         password goes in the URL or in CAMS_FLOWS_REDIS_PASSWORD",
    ),
    Key::new(
        "redis.key_prefix",
        "PREFIX",
        "Prefix of every key the gateway writes in Redis",
    ),
    Key::new(
        "redis.timeout_ms",
        "MS",
        "Bound on one Redis command; past it calls that need CAMS fail with \
         QUOTA_STORE_UNAVAILABLE",
    ),
    Key::new(
        "redis.account",
        "NAME",
        "The account's name in Redis, so that two accounts can share one Redis [default: the \
         AccessKeyId]",
    ),
    Key::new(
        "admin.listen",
        "ADDR",
        "Address of the admin listener (plain HTTP: GET /metrics for Prometheus); off to turn it \
         off [default: off; the container image sets 0.0.0.0:9464]",
    ),
    Key::new(
        "tracing.propagate_upstream",
        "BOOL",
        "Send the call's W3C trace context (traceparent, tracestate) on to CAMS, a third party \
         [default: false]. Traces are exported when OTEL_EXPORTER_OTLP_ENDPOINT (or \
         OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set",
    ),
    Key::new(
        "credentials.provider",
        "NAME",
        "Where CAMS credentials come from: chain (the Alibaba Cloud default chain), or one \
         provider pinned: env, oidc, cli_profile, credentials_file, ecs_ram_role, credentials_uri",
    ),
    Key::new(
        "credentials.role_arn",
        "ARN",
        "RRSA role to assume with the OIDC token [stands in for ALIBABA_CLOUD_ROLE_ARN]",
    ),
    Key::new(
        "credentials.oidc_provider_arn",
        "ARN",
        "RRSA OIDC provider [stands in for ALIBABA_CLOUD_OIDC_PROVIDER_ARN]",
    ),
    Key::new(
        "credentials.oidc_token_file",
        "FILE",
        "RRSA OIDC token file, read again at every refresh [stands in for \
         ALIBABA_CLOUD_OIDC_TOKEN_FILE]",
    ),
    Key::new(
        "credentials.role_session_name",
        "NAME",
        "STS session name [stands in for ALIBABA_CLOUD_ROLE_SESSION_NAME] [default: \
         cams-flows-<unix time>]",
    ),
    Key::new(
        "credentials.duration_seconds",
        "SECONDS",
        "Lifetime STS is asked for, 900 to 43200 (OIDC and AssumeRole) [default: 3600]",
    ),
    Key::new(
        "credentials.policy",
        "JSON",
        "A RAM policy that narrows the STS session (OIDC and AssumeRole)",
    ),
    Key::new(
        "credentials.sts_endpoint",
        "URL",
        "STS endpoint, a URL or a host [stands in for ALIBABA_CLOUD_STS_ENDPOINT] [default: \
         from credentials.sts_region, else sts.aliyuncs.com]",
    ),
    Key::new(
        "credentials.sts_region",
        "REGION",
        "STS region: sts.<region>.aliyuncs.com [stands in for ALIBABA_CLOUD_STS_REGION]",
    ),
    Key::new(
        "credentials.sts_vpc_endpoint",
        "BOOL",
        "Use sts-vpc.<region>.aliyuncs.com (needs credentials.sts_region) [stands in for \
         ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED]",
    ),
    Key::new(
        "credentials.profile",
        "NAME",
        "Profile of the aliyun CLI config, or section of the credentials file [stands in for \
         ALIBABA_CLOUD_PROFILE]",
    ),
    Key::new(
        "credentials.cli_config_file",
        "FILE",
        "The aliyun CLI config [stands in for ALIBABA_CLOUD_CONFIG_FILE] [default: \
         ~/.aliyun/config.json]",
    ),
    Key::new(
        "credentials.credentials_file",
        "FILE",
        "The credentials file [stands in for ALIBABA_CLOUD_CREDENTIALS_FILE] [default: \
         ~/.alibabacloud/credentials.ini]",
    ),
    Key::new(
        "credentials.ecs_role_name",
        "NAME",
        "The ECS instance's RAM role, which saves a metadata request [stands in for \
         ALIBABA_CLOUD_ECS_METADATA]",
    ),
    Key::new(
        "credentials.metadata_endpoint",
        "URL",
        "ECS metadata service [stands in for ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT] \
         [default: http://100.100.100.200]",
    ),
    Key::new(
        "credentials.imdsv1_disabled",
        "BOOL",
        "Never read the metadata service without a session token [stands in for \
         ALIBABA_CLOUD_IMDSV1_DISABLED]",
    ),
    Key::new(
        "credentials.uri",
        "URL",
        "URL that answers temporary keys [stands in for ALIBABA_CLOUD_CREDENTIALS_URI]",
    ),
    Key::new(
        "credentials.assume_role_arn",
        "ARN",
        "Assume this RAM role (AssumeRole) with whatever credentials the provider yields",
    ),
    Key::new(
        "credentials.assume_role_session_name",
        "NAME",
        "Session name of credentials.assume_role_arn",
    ),
    Key::new(
        "credentials.assume_role_external_id",
        "ID",
        "External id of credentials.assume_role_arn",
    ),
    Key::new(
        "credentials.sts_connect_timeout_ms",
        "MS",
        "Connect timeout towards STS and the credentials URI",
    ),
    Key::new(
        "credentials.sts_timeout_ms",
        "MS",
        "Bound on one exchange with STS or the credentials URI",
    ),
    Key::new(
        "credentials.metadata_timeout_ms",
        "MS",
        "Connect timeout towards the ECS metadata service, and bound on each exchange with it",
    ),
];

/// The key an environment variable sets, and whether it did so under its old name.
pub(super) fn by_env(name: &str) -> Option<(&'static Key, bool)> {
    KEYS.iter().find_map(|k| {
        if k.env() == name {
            Some((k, false))
        } else if k.alias_env().as_deref() == Some(name) {
            Some((k, true))
        } else {
            None
        }
    })
}

/// Every variable name `serve` reads as a setting, for suggestions on a typo.
pub(super) fn env_names() -> impl Iterator<Item = String> {
    KEYS.iter()
        .flat_map(|k| std::iter::once(k.env()).chain(k.alias_env()))
        .chain(std::iter::once(CONFIG_ENV.to_owned()))
}
