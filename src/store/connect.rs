//! Connections to the primary, one way per topology, with TCP settings that let a peer that
//! vanished without closing its socket be noticed: keepalive probes on idle connections, and
//! `TCP_USER_TIMEOUT` so that data nobody acknowledges aborts the connection.

use std::time::Duration;

use redis::{
    AsyncConnectionConfig, Client, ConnectionInfo, IntoConnectionInfo, RedisError, RedisResult,
    aio::PubSub,
    cluster::{ClusterClient, ClusterClientBuilder},
    io::tcp::{TcpSettings, socket2::TcpKeepalive},
    sentinel::{SentinelClientBuilder, SentinelServerType},
};
use secrecy::ExposeSecret;

use super::{
    config::{RedisConfig, Topology},
    connection::Connection,
};

/// How a connection to the primary is made.
pub(super) struct Connector {
    kind: Kind,
    /// Bound on one command, and the basis of the TCP settings.
    timeout: Duration,
}

enum Kind {
    Standalone(ConnectionInfo),
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        master_name: String,
        password: Option<String>,
        sentinel_password: Option<String>,
        tls: bool,
    },
    Cluster {
        client: Box<ClusterClient>,
        nodes: Vec<ConnectionInfo>,
    },
}

/// Keepalive probes start after this much silence on a connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

fn tcp_settings(timeout: Duration) -> TcpSettings {
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(
            TcpKeepalive::new()
                .with_time(KEEPALIVE_IDLE)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(3),
        )
        // Unacknowledged data aborts the connection a little after a command's own bound.
        .set_user_timeout((timeout * 2).max(Duration::from_secs(1)))
}

/// `host:port` or a `redis[s]://` URL, with the password of the data nodes when it carries none.
fn node_info(
    address: &str,
    password: Option<&str>,
    timeout: Duration,
) -> RedisResult<ConnectionInfo> {
    let mut info = if address.contains("://") {
        address.into_connection_info()?
    } else {
        format!("redis://{address}")
            .as_str()
            .into_connection_info()?
    };
    if info.redis_settings().password().is_none()
        && let Some(password) = password
    {
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    Ok(info.set_tcp_settings(tcp_settings(timeout)))
}

impl Connector {
    pub(super) fn new(config: &RedisConfig) -> RedisResult<Self> {
        let timeout = config.timeout;
        let password = config
            .password
            .as_ref()
            .map(|p| p.expose_secret().to_owned());
        let kind = match &config.topology {
            Topology::Standalone { url } => Kind::Standalone(node_info(
                url.expose_secret(),
                password.as_deref(),
                timeout,
            )?),
            Topology::Sentinel {
                sentinels,
                master_name,
                sentinel_password,
            } => Kind::Sentinel {
                tls: sentinels.iter().any(|s| s.starts_with("rediss://")),
                sentinels: sentinels
                    .iter()
                    .map(|s| node_info(s, None, timeout))
                    .collect::<RedisResult<_>>()?,
                master_name: master_name.clone(),
                password,
                sentinel_password: sentinel_password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned()),
            },
            Topology::Cluster { nodes } => {
                let nodes: Vec<ConnectionInfo> = nodes
                    .iter()
                    .map(|n| node_info(n, password.as_deref(), timeout))
                    .collect::<RedisResult<_>>()?;
                let client = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .tcp_settings(tcp_settings(timeout))
                    // The gateway bounds each command itself and reconnects on its own; a
                    // command retried for seconds inside the client would only hold a call.
                    .retries(2)
                    .build()?;
                Kind::Cluster {
                    client: Box::new(client),
                    nodes,
                }
            }
        };
        Ok(Self { kind, timeout })
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    /// The client of the primary: the configured server, or the one the sentinels name now
    /// (asked afresh each time, so that a failover is followed; redis-rs checks that the server
    /// it names answers `ROLE` as a master).
    async fn primary(&self) -> RedisResult<Client> {
        match &self.kind {
            Kind::Standalone(info) => Client::open(info.clone()),
            Kind::Sentinel {
                sentinels,
                master_name,
                password,
                sentinel_password,
                tls,
            } => {
                let mut builder = SentinelClientBuilder::new(
                    sentinels.iter().map(|s| s.addr().clone()),
                    master_name.clone(),
                    SentinelServerType::Master,
                )?
                .set_client_to_redis_tcp_settings(tcp_settings(self.timeout))
                .set_client_to_sentinel_tcp_settings(tcp_settings(self.timeout));
                if let Some(password) = password {
                    builder = builder.set_client_to_redis_password(password);
                }
                if let Some(password) = sentinel_password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if *tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
                }
                // A fresh client each time: one kept would hold connections to sentinels that
                // may have died without a word.
                builder.build()?.async_get_client().await
            }
            Kind::Cluster { .. } => Err(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a cluster has no single primary",
            ))),
        }
    }

    /// A new connection for commands.
    pub(super) async fn connect(&self) -> RedisResult<Connection> {
        match &self.kind {
            Kind::Cluster { client, .. } => {
                Ok(Connection::Cluster(client.get_async_connection().await?))
            }
            _ => {
                let client = self.primary().await?;
                let connection = client
                    .get_multiplexed_async_connection_with_config(&self.config())
                    .await?;
                Ok(Connection::Node(connection))
            }
        }
    }

    /// A connection of its own for subscriptions: the primary's; in a cluster any node's, since
    /// a cluster passes every `PUBLISH` to all its nodes.
    pub(super) async fn pubsub(&self) -> RedisResult<PubSub> {
        match &self.kind {
            Kind::Cluster { nodes, .. } => {
                let mut last = None;
                for node in nodes {
                    let subscribed = match Client::open(node.clone()) {
                        Ok(client) => {
                            tokio::time::timeout(self.timeout * 2, client.get_async_pubsub()).await
                        }
                        Err(error) => Ok(Err(error)),
                    };
                    match subscribed {
                        Ok(Ok(pubsub)) => return Ok(pubsub),
                        Ok(Err(error)) => last = Some(error),
                        Err(_) => {}
                    }
                }
                Err(last.unwrap_or_else(|| {
                    RedisError::from((redis::ErrorKind::Io, "no node of the cluster answered"))
                }))
            }
            _ => self.primary().await?.get_async_pubsub().await,
        }
    }
}
