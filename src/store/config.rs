//! The validated `[redis]` section: where the shared state lives (its topology), and what every
//! exchange with it is held to. Addresses and passwords may be secret: `Debug` shows neither.

use std::{fmt, time::Duration};

use secrecy::{ExposeSecret, SecretString};

/// How the gateway finds the primary that holds the shared state.
#[derive(Clone)]
pub enum Topology {
    /// One server at one address (`redis.url`), perhaps a stable name that moves with the
    /// primary (a Kubernetes Service, a managed endpoint).
    Standalone { url: SecretString },
    /// The primary the sentinels name (`redis.sentinels`, `redis.master_name`), asked again
    /// after a failover.
    Sentinel {
        /// `host:port` or `redis[s]://host:port` of each sentinel.
        sentinels: Vec<String>,
        master_name: String,
        /// For the sentinels themselves (`CAMS_FLOWS_REDIS_SENTINEL_PASSWORD`).
        sentinel_password: Option<SecretString>,
    },
    /// A Redis Cluster, found from any of its nodes (`redis.nodes`).
    Cluster {
        /// `host:port` or `redis[s]://host:port` of some nodes.
        nodes: Vec<String>,
    },
}

impl Topology {
    /// `standalone`, `sentinel` or `cluster`, as `redis.mode` names them.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Standalone { .. } => "standalone",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }
}

/// The validated `[redis]` section.
#[derive(Clone)]
pub struct RedisConfig {
    pub topology: Topology,
    /// For the data nodes, when the URL carries none (`CAMS_FLOWS_REDIS_PASSWORD`).
    pub password: Option<SecretString>,
    pub key_prefix: String,
    pub timeout: Duration,
    /// Whether admissions to the quota wait for the replicas' confirmation (`WAIT`).
    pub wait_for_replicas: bool,
    /// The account's UID, as the operator states it; learnt from STS when `None`.
    pub account: Option<String>,
}

impl RedisConfig {
    /// A standalone Redis at `url` with the section's other defaults (tests, benchmarks).
    pub fn standalone(url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            topology: Topology::Standalone {
                url: SecretString::from(url.into()),
            },
            password: None,
            key_prefix: key_prefix.into(),
            timeout: Duration::from_millis(500),
            wait_for_replicas: true,
            account: None,
        }
    }

    /// What logs may say of where the state lives: addresses without user information.
    pub fn describe(&self) -> String {
        match &self.topology {
            Topology::Standalone { url } => endpoint_of(url.expose_secret()),
            Topology::Sentinel {
                sentinels,
                master_name,
                ..
            } => format!(
                "sentinel {master_name} via {}",
                sentinels
                    .iter()
                    .map(|s| endpoint_of(s))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Topology::Cluster { nodes } => format!(
                "cluster via {}",
                nodes
                    .iter()
                    .map(|n| endpoint_of(n))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("mode", &self.topology.mode())
            .field("endpoint", &self.describe())
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl PartialEq for RedisConfig {
    /// The same store: the same servers, prefix and account (passwords are not compared).
    fn eq(&self, other: &Self) -> bool {
        let same_topology = match (&self.topology, &other.topology) {
            (Topology::Standalone { url: a }, Topology::Standalone { url: b }) => {
                a.expose_secret() == b.expose_secret()
            }
            (
                Topology::Sentinel {
                    sentinels: a,
                    master_name: m,
                    ..
                },
                Topology::Sentinel {
                    sentinels: b,
                    master_name: n,
                    ..
                },
            ) => a == b && m == n,
            (Topology::Cluster { nodes: a }, Topology::Cluster { nodes: b }) => a == b,
            _ => false,
        };
        same_topology
            && self.key_prefix == other.key_prefix
            && self.timeout == other.timeout
            && self.wait_for_replicas == other.wait_for_replicas
            && self.account == other.account
    }
}

/// `scheme://host:port/db` of a URL or `host:port`, without user information: what logs may say.
pub(crate) fn endpoint_of(address: &str) -> String {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("redis://{address}")
    };
    match reqwest::Url::parse(&url) {
        Ok(parsed) => format!(
            "{}://{}:{}{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or("?"),
            parsed.port().unwrap_or(6379),
            parsed.path()
        ),
        Err(_) => "(unparsable address)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_without_the_password() {
        let mut config = RedisConfig::standalone("redis://user:hunter2@redis.example:6380/2", "p");
        config.password = Some(SecretString::from("also-secret".to_owned()));
        let shown = format!("{config:?}");
        assert!(shown.contains("redis://redis.example:6380/2"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("also-secret"));
        config.topology = Topology::Sentinel {
            sentinels: vec![
                "redis://:s3cret@10.0.0.1:26379".into(),
                "10.0.0.2:26379".into(),
            ],
            master_name: "cams".into(),
            sentinel_password: Some(SecretString::from("sentinel-secret".to_owned())),
        };
        let shown = format!("{config:?}");
        assert!(
            shown.contains("sentinel cams via redis://10.0.0.1:26379,redis://10.0.0.2:26379"),
            "{shown}"
        );
        assert!(!shown.contains("s3cret") && !shown.contains("sentinel-secret"));
    }
}
