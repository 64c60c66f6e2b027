//! One connection for commands, whatever the topology: a multiplexed connection to one server,
//! or redis-rs's cluster connection, which routes each command to the node of its keys' slot.

use redis::{
    Cmd, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

/// A connection for commands; cheap to clone (clones share one connection).
#[derive(Clone)]
pub enum Connection {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Connection {
    /// `WAIT numreplicas timeout` after the writes made on this connection to the node that
    /// holds `key`: how many replicas confirmed them.
    pub async fn wait_for_replicas(
        &mut self,
        key: &str,
        replicas: u32,
        timeout_ms: u64,
    ) -> RedisResult<u32> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout_ms);
        match self {
            Self::Node(connection) => wait.query_async(connection).await,
            Self::Cluster(connection) => {
                // WAIT has no key: it must go to the node the writes went to, the master of the
                // key's slot.
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::with_key(key, SlotAddr::Master),
                ));
                let value = connection.route_command(wait, routing).await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }

    /// `INFO <section>` of every server that holds data: the one server, or each master of a
    /// cluster.
    pub async fn info_of_primaries(&mut self, section: &str) -> RedisResult<Vec<String>> {
        let mut info = redis::cmd("INFO");
        info.arg(section);
        match self {
            Self::Node(connection) => Ok(vec![info.query_async(connection).await?]),
            Self::Cluster(connection) => {
                let routing = RoutingInfo::MultiNode((
                    redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                    None,
                ));
                let value = connection.route_command(info, routing).await?;
                match value {
                    Value::Map(pairs) => pairs
                        .into_iter()
                        .map(|(_, text)| Ok(redis::from_redis_value(text)?))
                        .collect(),
                    other => Ok(vec![redis::from_redis_value(other)?]),
                }
            }
        }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
