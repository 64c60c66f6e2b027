//! The configuration as written, before validation: one serde tree that the TOML file, the
//! environment and the flags all fill in. Its root holds the top-level keys and one struct per
//! section, each declared in its own file of [`sections`](super::sections) with its defaults and
//! its validation. `Settings::default()` is the first layer of the figment.
//!
//! Optional values and the file-only lists are left out of the defaults rather than written as
//! empty, so that a key nobody set has no layer to blame in an error message.

use super::{
    keys::settings,
    sections::{
        AdminSettings, AuthSettings, CacheSettings, CredentialsSettings, LimitsSettings,
        RedisSettings, RetrySettings, ServerSettings, TlsFiles, TracingSettings, UpstreamSettings,
    },
};
use crate::{cams::DEFAULT_ENDPOINT, telemetry::LogFormat};

settings! {
    /// The whole file: the top-level keys, then one table per section.
    section struct Settings in "" {
        /// Address to serve gRPC on
        key(value_name = "ADDR")
        listen: String = "0.0.0.0:50051".to_owned(),
        /// CAMS endpoint: https://host[:port]
        key(value_name = "URL")
        endpoint: String = DEFAULT_ENDPOINT.to_owned(),
        /// Log format
        key(value_name = "json|text")
        log_format: LogFormat = LogFormat::Json,
        /// Serve against an in-process simulated CAMS with generated credentials (no cloud
        /// account needed). Ignores --endpoint and the ALIBABA_CLOUD_* variables
        key(value_name = "BOOL", switch = true)
        #[serde(deserialize_with = "boolish")]
        sandbox: bool = false,
        /// Time in-flight calls get to finish after SIGTERM/SIGINT
        key(value_name = "MS")
        drain_timeout_ms: u64 = 10_000,
        /// Bound on every call, and the deadline of a call whose caller sets none
        key(value_name = "MS")
        call_timeout_ms: u64 = 10_000,
        section upstream: UpstreamSettings,
        section limits: LimitsSettings,
        section cache: CacheSettings,
        section retry: RetrySettings,
        section server: ServerSettings,
        section auth: AuthSettings,
        section tls: TlsFiles,
        section redis: RedisSettings,
        section admin: AdminSettings,
        section tracing: TracingSettings,
        section credentials: CredentialsSettings,
    }
}

/// What `--sandbox` accepted when clap parsed it (`y`, `t`, `on`, `1`, ...), from every layer.
pub(super) fn boolish<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a boolean (true/false, yes/no, on/off, 1/0)")
        }
        fn visit_bool<E>(self, b: bool) -> Result<bool, E> {
            Ok(b)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<bool, E> {
            match n {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(n), &self)),
            }
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<bool, E> {
            const TRUE: &[&str] = &["y", "yes", "t", "true", "on", "1"];
            const FALSE: &[&str] = &["n", "no", "f", "false", "off", "0"];
            if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
                Ok(true)
            } else if FALSE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
                Ok(false)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
    }
    deserializer.deserialize_bool(Visitor)
}

/// A list of addresses, written in the file as an array or, like every environment variable and
/// flag, as one comma-separated string (`a:1,b:2`).
pub(super) fn list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of addresses, as an array or separated by commas")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(s.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item.trim().to_owned());
            }
            Ok(items)
        }
    }
    // A hint, not a limit: the configuration's layers are self-describing, and hand an array
    // to `visit_seq` whatever the hint; the hint says that a list is one setting, with a flag
    // and a variable, like any scalar.
    deserializer.deserialize_str(Visitor)
}
