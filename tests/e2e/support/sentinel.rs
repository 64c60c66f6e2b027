//! Redis Sentinel as platform teams run it, on loopback: one primary, its replica(s), and three
//! Sentinels (quorum 2) that promote a replica when the primary is gone. Every process is a
//! [`RedisServer`], killed when the set is dropped.
//!
//! What Redis 7.0 does that a test must expect:
//! - After `SENTINEL FAILOVER` (planned), the old primary stays a master until the Sentinels
//!   turn it into a replica, about 10 s later (they wait 4 hello periods before "fixing" an
//!   instance whose role disagrees with theirs); then it closes its clients' connections. Until
//!   then it accepts writes, unless `min-replicas-to-write` fences it: the initial primary is
//!   started with it, so it refuses writes (`NOREPLICAS`) as soon as its replica leaves.
//! - A primary that comes back after a SIGKILL with its original config is a master (empty) for
//!   the same ~10 s, until the Sentinels convert it.

use std::time::Duration;

use super::{
    poll,
    redis::{RedisOptions, RedisServer},
    resp::{self, Reply},
};

/// How the set runs; `SentinelOptions::default()` is what [`SentinelSet::start`] runs.
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// `sentinel down-after-milliseconds`: how long the primary may not answer before a Sentinel
    /// deems it down.
    pub down_after: Duration,
    /// `sentinel failover-timeout`: a failover whose promotion is not seen within it is
    /// aborted, and a Sentinel that lost an election waits twice this before trying again.
    pub failover_timeout: Duration,
    /// How many replicas of the primary.
    pub replicas: usize,
    /// `min-replicas-to-write` and `min-replicas-max-lag` (seconds) of the initial primary, if
    /// any: it refuses writes once it has fewer replicas acknowledging within the lag.
    pub min_replicas: Option<(u32, u32)>,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        Self {
            down_after: Duration::from_millis(1000),
            failover_timeout: Duration::from_millis(2000),
            replicas: 1,
            min_replicas: Some((1, 2)),
        }
    }
}

/// The name the Sentinels monitor the primary under.
const MASTER_NAME: &str = "cams-flows";

/// How many Sentinels, and how many must agree that the primary is down.
const SENTINELS: usize = 3;
const QUORUM: usize = 2;

/// How long starting the set may take: the Sentinels find one another through the primary's
/// hello channel, published every 2 s.
const SETTLE: Duration = Duration::from_secs(20);

pub struct SentinelSet {
    options: SentinelOptions,
    /// Every data node; the primary is `servers[primary]`.
    servers: Vec<RedisServer>,
    primary: usize,
    sentinels: Vec<RedisServer>,
}

impl SentinelSet {
    /// One primary (fenced by `min-replicas-to-write 1`, lag 2 s), one replica, three
    /// Sentinels (down after 1 s, failover timeout 2 s); returns once every Sentinel names the
    /// primary, sees the replica and knows the other two Sentinels (so that a failover can be
    /// authorised).
    pub fn start() -> Self {
        Self::start_with(SentinelOptions::default())
    }

    pub fn start_with(options: SentinelOptions) -> Self {
        let mut primary_options = RedisOptions::default();
        if let Some((to_write, max_lag)) = options.min_replicas {
            primary_options = primary_options.min_replicas(to_write, max_lag);
        }
        let primary = RedisServer::start_with(primary_options);
        let mut servers = vec![primary];
        for _ in 0..options.replicas {
            servers.push(RedisServer::start_with(
                RedisOptions::default().replica_of(servers[0].port()),
            ));
        }
        let sentinels = (0..SENTINELS)
            .map(|_| {
                RedisServer::start_sentinel(vec![
                    format!(
                        "sentinel monitor {MASTER_NAME} 127.0.0.1 {} {QUORUM}",
                        servers[0].port()
                    ),
                    format!(
                        "sentinel down-after-milliseconds {MASTER_NAME} {}",
                        options.down_after.as_millis()
                    ),
                    format!(
                        "sentinel failover-timeout {MASTER_NAME} {}",
                        options.failover_timeout.as_millis()
                    ),
                    format!("sentinel parallel-syncs {MASTER_NAME} 1"),
                ])
            })
            .collect();
        let set = Self {
            options,
            servers,
            primary: 0,
            sentinels,
        };
        let (sentinels, primary, replicas) = (
            set.sentinel_addrs(),
            set.primary_addr(),
            set.replica_addrs(),
        );
        poll::blocking_until(
            SETTLE,
            "the Sentinels to agree on the primary, see its replicas and one another",
            || settled(&sentinels, &primary, &replicas),
        );
        set
    }

    /// The name the Sentinels know the primary by (`SENTINEL get-master-addr-by-name <name>`).
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    /// "127.0.0.1:port" of each Sentinel.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::addr).collect()
    }

    /// The Sentinels themselves (to freeze or kill one).
    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn sentinels_mut(&mut self) -> &mut [RedisServer] {
        &mut self.sentinels
    }

    /// The primary as the set last established it (at start, or by the last failover awaited).
    pub fn primary(&self) -> &RedisServer {
        &self.servers[self.primary]
    }

    pub fn primary_addr(&self) -> String {
        self.primary().addr()
    }

    /// The data nodes other than the primary (a killed one included).
    pub fn replicas(&self) -> Vec<&RedisServer> {
        self.others().map(|i| &self.servers[i]).collect()
    }

    /// The data nodes other than the primary that run and are not frozen: those the waits
    /// expect to follow it.
    fn replica_addrs(&self) -> Vec<String> {
        self.replicas()
            .into_iter()
            .filter(|s| s.is_answering())
            .map(RedisServer::addr)
            .collect()
    }

    fn others(&self) -> impl Iterator<Item = usize> + use<> {
        let primary = self.primary;
        (0..self.servers.len()).filter(move |&i| i != primary)
    }

    /// What a failover after the primary's loss takes at most, from the loss to every Sentinel
    /// naming the promoted replica: `down-after`, then agreeing on the loss, electing a leader and
    /// promoting (observed: 1.5 s to the promotion and 2.5 s to every Sentinel's switch with
    /// the defaults, on an idle host), and room for one lost election, after which a Sentinel
    /// waits twice the failover timeout before trying again.
    pub fn detection_time(&self) -> Duration {
        self.options.down_after + 2 * self.options.failover_timeout + Duration::from_secs(1)
    }

    /// SIGKILL to the primary: it vanishes, its sockets closed by the kernel.
    pub fn kill_primary(&mut self) {
        let primary = self.primary;
        self.servers[primary].kill();
    }

    /// Waits until every Sentinel names another primary than the one the set knew, and that
    /// node answers `ROLE` as a master; returns its address, and the set knows it as the
    /// primary from then on. Panics, naming what the Sentinels last said, once `bound` passed.
    pub async fn wait_for_failover(&mut self, bound: Duration) -> String {
        let (sentinels, old) = (self.sentinel_addrs(), self.primary_addr());
        let promoted = poll::until(
            bound,
            &format!("the Sentinels to promote a replica of {old}"),
            move || promoted(&sentinels, &old),
        )
        .await;
        self.primary = self
            .servers
            .iter()
            .position(|s| s.addr() == promoted)
            .unwrap_or_else(|| {
                panic!("the Sentinels promoted {promoted}, which is not in the set")
            });
        promoted
    }

    /// A planned failover (`SENTINEL FAILOVER <name>`, as for maintenance), awaited as
    /// [`wait_for_failover`](Self::wait_for_failover) does. The old primary stays a master
    /// (refusing writes if fenced) until the Sentinels convert it, about 10 s later (see the
    /// module's notes); [`wait_for_replicas`](Self::wait_for_replicas) awaits that.
    pub async fn failover(&mut self, bound: Duration) -> String {
        let sentinel = self.sentinels[0].addr();
        // A Sentinel refuses while it still thinks no replica is fit (just after a restart or a
        // previous failover): ask again until it takes the order.
        poll::until(
            bound,
            "a Sentinel to accept SENTINEL FAILOVER",
            move || match resp::call(&sentinel, &["SENTINEL", "FAILOVER", MASTER_NAME])? {
                Reply::Status(ok) if ok == "OK" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await;
        self.wait_for_failover(bound).await
    }

    /// Restarts every killed data node, empty, as a replica of the current primary (a pod
    /// rescheduled with the right config), then waits as
    /// [`wait_for_replicas`](Self::wait_for_replicas) does.
    pub async fn restart_killed_as_replicas(&mut self, bound: Duration) {
        let primary_port = self.primary().port();
        for i in self.others().collect::<Vec<_>>() {
            if !self.servers[i].is_running() {
                self.servers[i].restart_with(RedisOptions::default().replica_of(primary_port));
            }
        }
        self.wait_for_replicas(bound).await;
    }

    /// Waits until every answering data node but the primary is its replica with a live link, and every
    /// Sentinel names the primary and sees them as healthy replicas: the state in which the
    /// next failover can go through.
    pub async fn wait_for_replicas(&self, bound: Duration) {
        let (sentinels, primary, replicas) = (
            self.sentinel_addrs(),
            self.primary_addr(),
            self.replica_addrs(),
        );
        poll::until(
            bound,
            "the replicas to follow the primary and the Sentinels to see them",
            move || settled(&sentinels, &primary, &replicas),
        )
        .await;
    }
}

/// `Ok` once each replica follows `primary` with its link up, and every Sentinel names `primary`,
/// sees each replica as a healthy replica and knows the other Sentinels.
fn settled(sentinels: &[String], primary: &str, replicas: &[String]) -> Result<(), String> {
    for replica in replicas {
        let info: Vec<(String, String)> = resp::info(replica, "replication")?;
        let field = |name: &str| {
            info.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let following = format!("{}:{}", field("master_host"), field("master_port"));
        if field("role") != "slave" || following != primary || field("master_link_status") != "up" {
            return Err(format!("{replica}: {info:?}"));
        }
    }
    for sentinel in sentinels {
        let named = master_addr(sentinel)?;
        if named != primary {
            return Err(format!("{sentinel} names {named} as the primary"));
        }
        let seen = resp::call(sentinel, &["SENTINEL", "REPLICAS", MASTER_NAME])?;
        for replica in replicas {
            let healthy = seen.items().unwrap_or_default().iter().any(|r| {
                let fields = r.fields();
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                };
                get("name") == Some(replica)
                    && get("flags") == Some("slave")
                    && get("master-link-status") == Some("ok")
            });
            if !healthy {
                return Err(format!("{sentinel} sees the replicas as {seen:?}"));
            }
        }
        let peers = resp::call(sentinel, &["SENTINEL", "SENTINELS", MASTER_NAME])?;
        if peers.items().map(<[Reply]>::len) != Some(sentinels.len() - 1) {
            return Err(format!("{sentinel} knows the other Sentinels as {peers:?}"));
        }
    }
    Ok(())
}

/// `Ok(addr)` once every Sentinel names the same primary `addr`, other than `old`, and it
/// answers `ROLE` as a master.
fn promoted(sentinels: &[String], old: &str) -> Result<String, String> {
    let named = sentinels
        .iter()
        .map(|s| master_addr(s))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &named[0];
    if first == old || named.iter().any(|n| n != first) {
        return Err(format!("the Sentinels name {named:?}"));
    }
    match resp::role(first)?.as_str() {
        "master" => Ok(first.clone()),
        role => Err(format!("the Sentinels name {first}, whose role is {role}")),
    }
}

/// What a Sentinel names as the primary: "ip:port".
fn master_addr(sentinel: &str) -> Result<String, String> {
    let reply = resp::call(
        sentinel,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
    )?;
    match reply.items() {
        Some([ip, port]) => Ok(format!(
            "{}:{}",
            ip.text().unwrap_or_default(),
            port.text().unwrap_or_default()
        )),
        _ => Err(format!("{sentinel} answers {reply:?}")),
    }
}
