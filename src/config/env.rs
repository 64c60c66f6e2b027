//! The environment layer: the `CAMS_FLOWS_*` variables of the process, read once, with a warning
//! for any that is not a setting (a typo would otherwise be silently ignored).

use secrecy::SecretString;
use std::{collections::BTreeMap, ffi::OsString, fmt, path::PathBuf};

use super::keys::{self, CONFIG_ENV, ENV_PREFIX};

/// `CAMS_FLOWS_*` variables that are not settings of `serve` but are read by something else, so
/// that finding them set is no typo.
/// The Redis password, for a `[redis] url` that carries none.
pub(super) const REDIS_PASSWORD_ENV: &str = "CAMS_FLOWS_REDIS_PASSWORD";
/// The sentinels' password, in sentinel mode, when they need one.
pub(super) const REDIS_SENTINEL_PASSWORD_ENV: &str = "CAMS_FLOWS_REDIS_SENTINEL_PASSWORD";

const READ_ELSEWHERE: &[&str] = &[
    // examples/python/client.py, examples/node/client.js and `cams-flows purge`: the gateway
    // address the clients dial, and the API key they send.
    "CAMS_FLOWS_TARGET",
    "CAMS_FLOWS_API_KEY",
];

/// Something in the environment that is ignored. Names only: values may be secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    UnknownVariable {
        name: String,
        suggestion: Option<String>,
    },
    /// Both a key's old and new variable are set; the new one wins.
    AliasShadowed { alias: String, canonical: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownVariable { name, suggestion } => {
                write!(f, "{name} is not a cams-flows setting and is ignored")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean {s}?)"),
                    None => Ok(()),
                }
            }
            Self::AliasShadowed { alias, canonical } => {
                write!(f, "{alias} is ignored: {canonical} sets the same key")
            }
        }
    }
}

/// The `CAMS_FLOWS_*` variables of the process, read once: the environment layer, the config
/// file it may name, and warnings about the rest.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// key ⇒ (variable as set, value, set under its old name)
    values: BTreeMap<&'static str, (String, String, bool)>,
    config_file: Option<PathBuf>,
    /// A setting whose value is not UTF-8 (key, variable): an error when loading.
    not_utf8: Option<(&'static str, String)>,
    warnings: Vec<Warning>,
    redis_password: Option<SecretString>,
    redis_sentinel_password: Option<SecretString>,
    /// The standard OpenTelemetry variables the gateway reads itself ([`OTEL_READ`]).
    otel: BTreeMap<String, String>,
}

/// The `OTEL_*` variables read with the configuration: whether and where to export traces. The
/// others (headers, which may hold a token, timeouts, batching) are the exporter's to read.
const OTEL_READ: &[&str] = &[
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
];

impl Environment {
    /// Reads `vars`, normally `std::env::vars_os()`; tests pass their own.
    pub fn capture(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        let mut env = Self::default();
        for (name, value) in vars {
            if let (Some(otel), Some(value)) = (
                name.to_str().filter(|n| OTEL_READ.contains(n)),
                value.to_str(),
            ) {
                env.otel.insert(otel.to_owned(), value.to_owned());
                continue;
            }
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                continue;
            };
            if name == CONFIG_ENV {
                env.config_file = Some(PathBuf::from(value));
                continue;
            }
            // A secret: only ever read from the environment, never a key of the tree (and so
            // never in an error that quotes a value).
            if name == REDIS_PASSWORD_ENV || name == REDIS_SENTINEL_PASSWORD_ENV {
                let secret = value
                    .into_string()
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(SecretString::from);
                if name == REDIS_PASSWORD_ENV {
                    env.redis_password = secret;
                } else {
                    env.redis_sentinel_password = secret;
                }
                continue;
            }
            let Some((key, alias)) = keys::by_env(name) else {
                if !READ_ELSEWHERE.contains(&name) {
                    env.warnings.push(Warning::UnknownVariable {
                        name: name.to_owned(),
                        suggestion: closest(name),
                    });
                }
                continue;
            };
            let Ok(value) = value.into_string() else {
                env.not_utf8.get_or_insert((key.name, name.to_owned()));
                continue;
            };
            env.set(key.name, name, value, alias);
        }
        env
    }

    /// The new name wins over the old one whatever their order in the environment.
    fn set(&mut self, key: &'static str, name: &str, value: String, alias: bool) {
        let shadowed = match self.values.get(key) {
            Some((other, _, false)) if alias => Some((name.to_owned(), other.clone())),
            Some((other, _, true)) if !alias => Some((other.clone(), name.to_owned())),
            _ => None,
        };
        match shadowed {
            Some((alias_name, canonical)) => {
                self.warnings.push(Warning::AliasShadowed {
                    alias: alias_name,
                    canonical,
                });
                if !alias {
                    self.values.insert(key, (name.to_owned(), value, alias));
                }
            }
            None => {
                self.values.insert(key, (name.to_owned(), value, alias));
            }
        }
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// (key, variable as set, value) for each key set.
    pub(super) fn values(&self) -> impl Iterator<Item = (&'static str, String, String)> + '_ {
        self.values
            .iter()
            .map(|(key, (name, value, _))| (*key, name.clone(), value.clone()))
    }

    /// The standard OpenTelemetry variables that were set, by name.
    pub(super) fn otel(&self) -> &BTreeMap<String, String> {
        &self.otel
    }

    pub(super) fn redis_password(&self) -> Option<&SecretString> {
        self.redis_password.as_ref()
    }

    pub(super) fn redis_sentinel_password(&self) -> Option<&SecretString> {
        self.redis_sentinel_password.as_ref()
    }

    pub(super) fn config_file(&self) -> Option<&PathBuf> {
        self.config_file.as_ref()
    }

    /// A setting whose value is not UTF-8: (key, variable).
    pub(super) fn not_utf8(&self) -> Option<&(&'static str, String)> {
        self.not_utf8.as_ref()
    }
}

/// The known variable nearest to a misspelt one, if it is near enough to be the likely intent.
fn closest(name: &str) -> Option<String> {
    keys::env_names()
        .map(|known| (distance(name, &known), known))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, known)| known)
}

/// Levenshtein distance, in bytes: variable names are ASCII.
fn distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
