//! The figment: defaults < TOML file < environment < flags, and errors that name the key and the
//! layer its value came from (figment's metadata: `Error::metadata` for a value that does not
//! parse, `Figment::find_metadata` for one that parses but is refused).
//!
//! The environment and the flags are small providers over the key table rather than figment's
//! `Env`: an old variable name must lose to the new one, an error must name the variable as set
//! (not the key upper-cased), and the environment comes in as a list so that tests need not
//! change the process's own.

use std::{collections::BTreeMap, sync::Arc};

use figment::{
    Figment, Metadata, Profile, Provider, Source,
    providers::{Format, Serialized, Toml},
    value::{Dict, Map, Value},
};

use super::{
    Config, ConfigError, Origin, ServeArgs, env::Environment, keys::CONFIG_ENV, sections,
    settings::Settings,
};

const DEFAULTS: &str = "default";
const ENVIRONMENT: &str = "environment variable";
const FLAGS: &str = "flag";

impl ServeArgs {
    /// The validated configuration from the defaults, the file named by `--config` or
    /// `CAMS_FLOWS_CONFIG`, the environment and these flags.
    pub fn load(&self, env: &Environment) -> Result<Config, ConfigError> {
        if let Some((key, name)) = env.not_utf8() {
            return Err(ConfigError {
                key: (*key).to_owned(),
                origin: Some(Origin::Env(name.clone())),
                problem: "is not valid UTF-8".to_owned(),
            });
        }
        let mut figment = Figment::from(Named {
            inner: Serialized::defaults(Settings::default()),
            metadata: Metadata::named(DEFAULTS),
        });
        let file = match (&self.config, env.config_file()) {
            (Some(path), _) => Some((path, Origin::Flag("--config".to_owned()))),
            (None, Some(path)) => Some((path, Origin::Env(CONFIG_ENV.to_owned()))),
            (None, None) => None,
        };
        if let Some((path, origin)) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                key: "config".to_owned(),
                origin: Some(origin),
                problem: format!("cannot read {}: {e}", path.display()),
            })?;
            figment = figment.merge(Named {
                inner: Toml::string(&text),
                metadata: Metadata::from("TOML file", path.as_path()),
            });
        }
        let flags = self
            .flags
            .iter()
            .map(|f| (f.key, f.flag.clone(), f.value.clone()));
        let figment = figment
            .merge(Layer::new(ENVIRONMENT, env.values()))
            .merge(Layer::new(FLAGS, flags));
        let settings: Settings = figment.extract_lossy().map_err(from_figment)?;
        let mut config = sections::config(&settings).map_err(|mut e| {
            e.origin = origin_of(&figment, &e.key);
            e
        })?;
        config.tracing.export =
            crate::telemetry::trace::from_env(env.otel()).map_err(|e| ConfigError {
                key: "tracing".to_owned(),
                origin: Some(Origin::Env(e.variable.to_owned())),
                problem: e.problem,
            })?;
        for redis in [&mut config.redis, &mut config.cache_redis]
            .into_iter()
            .flatten()
        {
            if let Some(password) = env.redis_password() {
                redis.password = Some(password.clone());
            }
            if let (
                Some(password),
                crate::store::Topology::Sentinel {
                    sentinel_password, ..
                },
            ) = (env.redis_sentinel_password(), &mut redis.topology)
            {
                *sentinel_password = Some(password.clone());
            }
        }
        Ok(config)
    }
}

/// Environment variables or flags: (key, name as set, value). Values stay text; the lossy
/// extraction reads numbers and booleans out of them as it would out of the file.
struct Layer {
    kind: &'static str,
    values: Vec<(&'static str, String, String)>,
}

impl Layer {
    fn new(
        kind: &'static str,
        values: impl IntoIterator<Item = (&'static str, String, String)>,
    ) -> Self {
        Self {
            kind,
            values: values.into_iter().collect(),
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let names: Arc<BTreeMap<&'static str, String>> = Arc::new(
            self.values
                .iter()
                .map(|(key, name, _)| (*key, name.clone()))
                .collect(),
        );
        Metadata::named(self.kind).interpolater(move |_: &Profile, path: &[&str]| {
            let key = path.join(".");
            names.get(key.as_str()).cloned().unwrap_or(key)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (key, _, value) in &self.values {
            insert(&mut root, key, Value::from(value.clone()));
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = dict
                .entry(head.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, child) = child {
                insert(child, rest, value);
            }
        }
    }
}

/// A provider under a name of ours, so that its values can be traced to their layer.
struct Named<P> {
    inner: P,
    metadata: Metadata,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// A value that did not parse: the key is the error's path (none for a file that is not TOML).
fn from_figment(errors: figment::Error) -> ConfigError {
    let Some(error) = errors.into_iter().next() else {
        return ConfigError {
            key: "config".to_owned(),
            origin: None,
            problem: "cannot be read".to_owned(),
        };
    };
    let key = if error.path.is_empty() {
        "config".to_owned()
    } else {
        error.path.join(".")
    };
    ConfigError {
        key,
        origin: error.metadata.as_ref().map(|md| origin(md, &error.path)),
        problem: error.kind.to_string().trim_end().to_owned(),
    }
}

/// The layer whose value of `key` won. A key inside a map or array (`limits.tenants."a".rps`,
/// `auth.keys[0].sha256`) is traced to the map or array: the file is their only layer.
fn origin_of(figment: &Figment, key: &str) -> Option<Origin> {
    let path = key.split(['[', '"']).next()?.trim_end_matches('.');
    let metadata = figment.find_metadata(path)?;
    let parts: Vec<&str> = path.split('.').collect();
    Some(origin(metadata, &parts))
}

fn origin(metadata: &Metadata, path: &[impl AsRef<str>]) -> Origin {
    if let Some(Source::File(file)) = &metadata.source {
        return Origin::File(file.clone());
    }
    let name = || metadata.interpolate(&Profile::Default, path);
    match metadata.name.as_ref() {
        ENVIRONMENT => Origin::Env(name()),
        FLAGS => Origin::Flag(name()),
        _ => Origin::Default,
    }
}
