//! `[redis]`: the Redis the replicas share.

use std::time::Duration;

use secrecy::SecretString;

use serde::{Deserialize, Serialize};

use super::{CacheSettings, bad, millis};
use crate::{
    config::{
        ConfigError,
        keys::settings,
        settings::{boolish, list},
    },
    store::{RedisConfig, Topology},
};

/// `redis.mode` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RedisMode {
    #[default]
    Standalone,
    Sentinel,
    Cluster,
}

settings! {
    /// `[redis]`: off without a URL, and every replica keeps its limits to itself.
    section struct RedisSettings in "redis." {
        /// How the replicas reach the Redis they share: standalone (one server at redis.url),
        /// sentinel (the primary that redis.sentinels name for redis.master_name) or cluster (a
        /// Redis Cluster found from redis.nodes)
        key(value_name = "standalone|sentinel|cluster")
        mode: RedisMode = RedisMode::Standalone,
        /// Redis shared by the replicas (redis:// or rediss://), in standalone mode: the account
        /// quota, the tenant and caller limits and the cache hold for all of them together. A password goes in the URL
        /// or in CAMS_FLOWS_REDIS_PASSWORD
        key(value_name = "URL", default = "none, each replica on its own")
        #[serde(skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// The sentinels, in sentinel mode: host:port (or redis[s]://host:port) of each,
        /// separated by commas. Their password, if they need one, in
        /// CAMS_FLOWS_REDIS_SENTINEL_PASSWORD
        key(value_name = "HOST:PORT,...", default = "none")
        #[serde(deserialize_with = "list", skip_serializing_if = "Vec::is_empty")]
        sentinels: Vec<String>,
        /// The name the sentinels know the primary by, in sentinel mode
        key(value_name = "NAME", default = "none")
        #[serde(skip_serializing_if = "Option::is_none")]
        master_name: Option<String>,
        /// Some nodes of the cluster, in cluster mode: host:port (or redis[s]://host:port) of
        /// each, separated by commas; the others are found from them
        key(value_name = "HOST:PORT,...", default = "none")
        #[serde(deserialize_with = "list", skip_serializing_if = "Vec::is_empty")]
        nodes: Vec<String>,
        /// Prefix of every key the gateway writes in Redis
        key(value_name = "PREFIX")
        key_prefix: String = "cams-flows".to_owned(),
        /// Bound on one Redis command; past it calls that need CAMS fail with
        /// QUOTA_STORE_UNAVAILABLE
        key(value_name = "MS")
        timeout_ms: u64 = 500,
        /// Use an admission to the account's quota only once every replica connected to the
        /// primary has confirmed it (WAIT, within redis.timeout_ms): a failover to one of them
        /// then loses none and costs no quiet period. Off, every failover is taken for a loss
        key(value_name = "BOOL")
        #[serde(deserialize_with = "boolish")]
        wait_for_replicas: bool = true,
        /// The Alibaba Cloud account's UID, which names its state in Redis. The gateway learns
        /// it at start from STS GetCallerIdentity; when set, it must match, and stands in for STS
        /// when STS cannot be reached
        key(value_name = "UID", default = "from STS GetCallerIdentity")
        #[serde(skip_serializing_if = "Option::is_none")]
        account: Option<String>,
    }
}

impl RedisSettings {
    /// `None` without a URL: every replica keeps its limits to itself. The URL may carry a
    /// password, so no message quotes it.
    pub(super) fn validate(&self) -> Result<Option<RedisConfig>, ConfigError> {
        let Some(topology) = self.topology()? else {
            return Ok(None);
        };
        self.with(topology).map(Some)
    }

    /// Where the shared state lives, as `redis.mode` says; `None` when nothing is set.
    fn topology(&self) -> Result<Option<Topology>, ConfigError> {
        let url = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let elsewhere = |key: &str, mode: &str| {
            bad(
                key,
                format!("is not used in {mode} mode (redis.mode); remove it, or set redis.mode"),
            )
        };
        match self.mode {
            RedisMode::Standalone => {
                if !self.sentinels.is_empty() || self.master_name.is_some() {
                    return Err(bad(
                        if self.sentinels.is_empty() {
                            "redis.master_name"
                        } else {
                            "redis.sentinels"
                        },
                        "is used in sentinel mode only: set redis.mode = \"sentinel\"",
                    ));
                }
                if !self.nodes.is_empty() {
                    return Err(bad(
                        "redis.nodes",
                        "is used in cluster mode only: set redis.mode = \"cluster\"",
                    ));
                }
                let Some(url) = url else {
                    return Ok(None);
                };
                check_url("redis.url", url)?;
                Ok(Some(Topology::Standalone {
                    url: SecretString::from(url.to_owned()),
                }))
            }
            RedisMode::Sentinel => {
                if url.is_some() {
                    return Err(elsewhere("redis.url", "sentinel"));
                }
                if !self.nodes.is_empty() {
                    return Err(elsewhere("redis.nodes", "sentinel"));
                }
                let sentinels = addresses("redis.sentinels", &self.sentinels, "sentinel")?;
                let master_name = match self.master_name.as_deref().map(str::trim) {
                    Some(name) if !name.is_empty() && !name.chars().any(char::is_whitespace) => {
                        name.to_owned()
                    }
                    Some(_) => {
                        return Err(bad(
                            "redis.master_name",
                            "must be the name the sentinels monitor, without spaces",
                        ));
                    }
                    None => {
                        return Err(bad(
                            "redis.master_name",
                            "not set: sentinel mode needs the name the sentinels know the \
                             primary by",
                        ));
                    }
                };
                Ok(Some(Topology::Sentinel {
                    sentinels,
                    master_name,
                    sentinel_password: None,
                }))
            }
            RedisMode::Cluster => {
                if url.is_some() {
                    return Err(elsewhere("redis.url", "cluster"));
                }
                if !self.sentinels.is_empty() || self.master_name.is_some() {
                    return Err(elsewhere(
                        if self.sentinels.is_empty() {
                            "redis.master_name"
                        } else {
                            "redis.sentinels"
                        },
                        "cluster",
                    ));
                }
                let nodes = addresses("redis.nodes", &self.nodes, "cluster")?;
                Ok(Some(Topology::Cluster { nodes }))
            }
        }
    }

    /// The Redis of the shared cache: `cache.redis_url` when set, else `[redis]`'s; `None` when
    /// the cache is not shared.
    pub(super) fn validate_for_cache(
        &self,
        cache: &CacheSettings,
    ) -> Result<Option<RedisConfig>, ConfigError> {
        let own = cache
            .redis_url
            .as_deref()
            .map(str::trim)
            .is_some_and(|u| !u.is_empty());
        let state = self.topology()?.is_some();
        let shared = cache.shared.unwrap_or(own || state);
        if !shared {
            return Ok(None);
        }
        if !own && !state {
            return Err(bad(
                "cache.shared",
                "a shared cache needs a Redis: set redis.url, redis.sentinels or redis.nodes (or \
                 cache.redis_url)",
            ));
        }
        match cache
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            Some(url) => {
                check_url("cache.redis_url", url)?;
                self.with(Topology::Standalone {
                    url: SecretString::from(url.to_owned()),
                })
                .map(Some)
            }
            None => self.validate(),
        }
    }

    /// The store at `topology`, with this section's other settings.
    fn with(&self, topology: Topology) -> Result<RedisConfig, ConfigError> {
        let prefix = self.key_prefix.trim();
        if prefix.is_empty()
            || prefix.len() > 64
            || prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
        {
            return Err(bad(
                "redis.key_prefix",
                format!("{prefix:?} must be 1 to 64 characters without spaces or braces"),
            ));
        }
        let timeout = millis("redis.timeout_ms", self.timeout_ms)?;
        if timeout > Duration::from_secs(10) {
            return Err(bad(
                "redis.timeout_ms",
                format!(
                    "{} ms is over 10 s: calls would wait that long for a lost Redis",
                    self.timeout_ms
                ),
            ));
        }
        let account = match self.account.as_deref().map(str::trim) {
            Some("") => return Err(bad("redis.account", "must not be empty")),
            Some(a) if a.len() > 128 || a.chars().any(char::is_control) => {
                return Err(bad(
                    "redis.account",
                    "must be at most 128 printable characters",
                ));
            }
            other => other.map(str::to_owned),
        };
        Ok(RedisConfig {
            topology,
            password: None,
            key_prefix: prefix.to_owned(),
            timeout,
            wait_for_replicas: self.wait_for_replicas,
            account,
        })
    }
}

/// A URL may hold a password: no message repeats it.
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(bad(
            key,
            "must be a redis:// or rediss:// URL (the value is not repeated: it may hold a \
             password)",
        ));
    }
    if redis::Client::open(url).is_err() {
        return Err(bad(
            key,
            "is not a usable Redis URL (the value is not repeated: it may hold a password)",
        ));
    }
    Ok(())
}

/// Each address is `host:port` or a `redis[s]://` URL; at least one is needed.
fn addresses(key: &str, list: &[String], mode: &str) -> Result<Vec<String>, ConfigError> {
    if list.is_empty() {
        return Err(bad(
            key,
            format!("not set: {mode} mode needs at least one host:port"),
        ));
    }
    for (i, address) in list.iter().enumerate() {
        let usable = if address.contains("://") {
            (address.starts_with("redis://") || address.starts_with("rediss://"))
                && redis::Client::open(address.as_str()).is_ok()
        } else {
            address
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        };
        if !usable {
            return Err(bad(
                format!("{key}[{i}]"),
                "must be host:port or a redis:// or rediss:// URL (the value is not repeated: \
                 it may hold a password)",
            ));
        }
    }
    Ok(list.to_vec())
}
