//! Redis Cluster as platform teams run it, on loopback: three masters sharing the 16384 slots,
//! each with one replica, made by `redis-cli --cluster create` as an operator would. Every node is
//! a [`RedisServer`] in cluster mode, killed when the cluster is dropped.
//!
//! What Redis 7.0 does that a test must expect: with `cluster-require-full-coverage yes` (the
//! default), every node refuses every command (`CLUSTERDOWN`) from the moment the cluster deems a
//! master failed until its replica is promoted, not only for the lost master's slots.

use std::{
    collections::BTreeSet,
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{
    poll,
    redis::{RedisOptions, RedisServer},
    resp,
};

/// `cluster-node-timeout`: how long a node may not answer before the others suspect it.
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

const MASTERS: usize = 3;
const SLOTS: u32 = 16384;

/// How long creating the cluster may take (`redis-cli --cluster create` and the gossip that
/// follows until every node agrees).
const SETTLE: Duration = Duration::from_secs(30);

/// How long a planned failover may take: the replica catches up with its master, which pauses
/// its clients meanwhile, then takes the slots over.
const PLANNED_FAILOVER: Duration = Duration::from_secs(10);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    /// Where `redis-cli --cluster create` writes what it did.
    dir: tempfile::TempDir,
}

/// A child process killed when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
struct NodeView {
    id: String,
    addr: String,
    flags: Vec<String>,
    master_id: Option<String>,
    connected: bool,
    slots: Vec<(u32, u32)>,
}

impl NodeView {
    fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Whether the node this view comes from deems it reachable and in the cluster.
    fn healthy(&self) -> bool {
        self.connected
            && !["fail", "fail?", "handshake", "noaddr"]
                .iter()
                .any(|f| self.has_flag(f))
    }

    fn owns(&self, slot: u32) -> bool {
        self.has_flag("master") && self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

impl RedisCluster {
    /// Three masters and three replicas (`redis-cli --cluster create <6 addrs> --cluster-replicas
    /// 1`), node timeout 1 s; returns once every node says `cluster_state:ok` with every slot
    /// served, every node sees the five others, and every replica's link to its master is up.
    pub fn start() -> Self {
        let options = RedisOptions::default().cluster(NODE_TIMEOUT);
        let nodes: Vec<RedisServer> = (0..2 * MASTERS)
            .map(|_| RedisServer::start_with(options.clone()))
            .collect();
        let cluster = Self {
            nodes,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        cluster.create();
        let live = cluster.live_addrs();
        poll::blocking_until(SETTLE, "the new cluster to be ok on every node", || {
            healthy(&live)
        });
        cluster
    }

    /// `redis-cli --cluster create`, bounded; its output goes to a file, shown on failure.
    fn create(&self) {
        let log = self.dir.path().join("create.log");
        let out = std::fs::File::create(&log).expect("create.log");
        let child = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(self.nodes())
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("create.log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-cli ({e}): the Redis Cluster tests create the cluster with \
                     it; install it with `apt-get install redis-tools` (Debian; \
                     `redis-server` depends on it) and make sure `redis-cli` is on PATH"
                )
            });
        // Killed if it outlives the bound (the wait panics).
        let mut child = KillOnDrop(child);
        let status =
            poll::blocking_until(
                SETTLE,
                "redis-cli --cluster create to finish",
                || match child.0.try_wait() {
                    Ok(Some(status)) => Ok(status),
                    Ok(None) => Err("still running".to_owned()),
                    Err(e) => Err(e.to_string()),
                },
            );
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.success() && output.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed ({status}):\n{output}"
        );
    }

    /// "127.0.0.1:port" of all six nodes, as a client's seed list (a killed one included).
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// The nodes that run and are not frozen: those the waits ask and expect to agree.
    fn live_addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.is_answering())
            .map(RedisServer::addr)
            .collect()
    }

    /// A node by its "127.0.0.1:port" (to freeze it, read its INFO, ...).
    pub fn node(&self, addr: &str) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of the cluster"))
    }

    fn node_mut(&mut self, addr: &str) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of the cluster"))
    }

    /// The current masters that serve slots, as a live node sees them, in slot order.
    pub fn masters(&self) -> Vec<String> {
        let mut masters: Vec<NodeView> = self
            .view()
            .into_iter()
            .filter(|n| n.has_flag("master") && !n.slots.is_empty())
            .collect();
        masters.sort_by_key(|n| n.slots.iter().map(|s| s.0).min());
        masters.into_iter().map(|n| n.addr).collect()
    }

    /// The live replicas of the master at `addr`.
    pub fn replicas_of(&self, addr: &str) -> Vec<String> {
        let view = self.view();
        let Some(master) = view.iter().find(|n| n.addr == addr) else {
            panic!("no node {addr} in the cluster's view {view:?}")
        };
        view.iter()
            .filter(|n| {
                n.master_id.as_deref() == Some(master.id.as_str())
                    && n.has_flag("slave")
                    && n.healthy()
            })
            .map(|n| n.addr.clone())
            .collect()
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot_of(&self, key: &str) -> u32 {
        let reply = resp::call(&self.any_live(), &["CLUSTER", "KEYSLOT", key])
            .unwrap_or_else(|e| panic!("{e}"));
        reply
            .int()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or_else(|| panic!("CLUSTER KEYSLOT {key}: {reply:?}"))
    }

    /// The master that serves `key`'s slot, as a live node sees it.
    pub fn master_of(&self, key: &str) -> String {
        let slot = self.slot_of(key);
        let view = self.view();
        view.iter()
            .find(|n| n.owns(slot))
            .map(|n| n.addr.clone())
            .unwrap_or_else(|| panic!("no master serves slot {slot} in {view:?}"))
    }

    /// A planned failover of `key`'s shard (`CLUSTER FAILOVER` sent to its replica, as for
    /// maintenance: the master pauses its clients until the replica has caught up, so nothing
    /// written before is lost); returns the new master once every node agrees it serves the
    /// slot and the cluster is ok everywhere.
    pub async fn failover_shard_of(&self, key: &str) -> String {
        let (master, replicas, slot) = self.shard_of(key);
        let replica = replicas[0].clone();
        let reply =
            resp::call(&replica, &["CLUSTER", "FAILOVER"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            reply.text().as_deref(),
            Some("OK"),
            "CLUSTER FAILOVER to {replica}"
        );
        let live = self.live_addrs();
        let promoted = replica.clone();
        poll::until(
            PLANNED_FAILOVER,
            &format!("{replica} to take slot {slot} over from {master}"),
            move || serves(&live, &promoted, slot),
        )
        .await;
        replica
    }

    /// What the loss of a master takes at most until its replica serves its slots: the node
    /// timeout until it is suspected, the gossip until a majority of masters deem it failed, the
    /// replica's delay (0.5 to 1 s, plus 1 s per better-placed replica) and its election.
    pub fn promotion_time(&self) -> Duration {
        4 * NODE_TIMEOUT + Duration::from_secs(3)
    }

    /// SIGKILL to the master of `key`'s shard; waits (within
    /// [`promotion_time`](Self::promotion_time)) until its replica serves the slot on every live
    /// node's view and the cluster is ok again; returns the new master. The killed node stays
    /// dead until [`restart_node`](Self::restart_node).
    pub async fn kill_master_of(&mut self, key: &str) -> String {
        let (master, replicas, slot) = self.shard_of(key);
        self.node_mut(&master).kill();
        self.await_promotion(&master, replicas, slot).await
    }

    /// SIGSTOP to the master of `key`'s shard (a node that vanished without closing its
    /// sockets: its clients' connections stay open and never answer); waits for its replica's
    /// promotion as [`kill_master_of`](Self::kill_master_of) does and returns the new master.
    /// Thawed (`node(addr).freeze(false)`), the old master rejoins as a replica of the new one;
    /// [`wait_healthy`](Self::wait_healthy) awaits that.
    pub async fn freeze_master_of(&self, key: &str) -> String {
        let (master, replicas, slot) = self.shard_of(key);
        self.node(&master).freeze(true);
        self.await_promotion(&master, replicas, slot).await
    }

    /// The master of `key`'s shard, its live replicas (at least one) and the key's slot.
    fn shard_of(&self, key: &str) -> (String, Vec<String>, u32) {
        let slot = self.slot_of(key);
        let master = self.master_of(key);
        let replicas = self.replicas_of(&master);
        assert!(
            !replicas.is_empty(),
            "the master of {key}, {master}, has no live replica to promote"
        );
        (master, replicas, slot)
    }

    async fn await_promotion(&self, master: &str, replicas: Vec<String>, slot: u32) -> String {
        let live = self.live_addrs();
        poll::until(
            self.promotion_time(),
            &format!("a replica of {master} to take slot {slot} over"),
            move || {
                let owner = owner_of(&live, slot)?;
                if !replicas.contains(&owner) {
                    return Err(format!("slot {slot} is served by {owner}"));
                }
                serves(&live, &owner, slot)?;
                Ok(owner)
            },
        )
        .await
    }

    /// Restarts a killed node on its port with its `nodes.conf` (a rescheduled pod that kept its
    /// volume): it rejoins empty, as a replica of the master that took its slots over. Waits
    /// until the cluster is ok on every node, the node included.
    pub async fn restart_node(&mut self, addr: &str) {
        self.node_mut(addr).restart();
        let live = self.live_addrs();
        poll::until(
            SETTLE,
            &format!("{addr} to rejoin the cluster"),
            move || healthy(&live),
        )
        .await;
    }

    /// Waits until the cluster is ok on every live node, every node sees the live ones as
    /// healthy, and every live replica's link is up.
    pub async fn wait_healthy(&self, bound: Duration) {
        let live = self.live_addrs();
        poll::until(bound, "the cluster to be ok on every node", move || {
            healthy(&live)
        })
        .await;
    }

    /// The cluster as the first live node that answers sees it.
    fn view(&self) -> Vec<NodeView> {
        let mut errors = Vec::new();
        for addr in self.live_addrs() {
            match cluster_nodes(&addr) {
                Ok(view) => return view,
                Err(e) => errors.push(e),
            }
        }
        panic!("no node of the cluster answers CLUSTER NODES: {errors:?}")
    }

    fn any_live(&self) -> String {
        self.live_addrs()
            .into_iter()
            .next()
            .expect("a live node in the cluster")
    }
}

/// `CLUSTER NODES` from `addr`, parsed.
fn cluster_nodes(addr: &str) -> Result<Vec<NodeView>, String> {
    let reply = resp::call(addr, &["CLUSTER", "NODES"])?;
    let text = reply
        .text()
        .ok_or_else(|| format!("CLUSTER NODES from {addr}: {reply:?}"))?;
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [
                id,
                address,
                flags,
                master,
                _ping,
                _pong,
                _epoch,
                link,
                slots @ ..,
            ] = fields.as_slice()
            else {
                return Err(format!("bad CLUSTER NODES line from {addr}: {line:?}"));
            };
            // "ip:port@bus-port[,hostname]"
            let address = address.split(['@', ',']).next().unwrap_or_default();
            let slots = slots
                .iter()
                // A slot being imported or migrated is listed in brackets; it has an owner too.
                .filter(|s| !s.starts_with('['))
                .map(|s| {
                    let (a, b) = s.split_once('-').unwrap_or((s, s));
                    Ok((
                        a.parse().map_err(|_| format!("bad slot {s:?}"))?,
                        b.parse().map_err(|_| format!("bad slot {s:?}"))?,
                    ))
                })
                .collect::<Result<_, String>>()?;
            Ok(NodeView {
                id: (*id).to_owned(),
                addr: address.to_owned(),
                flags: flags.split(',').map(str::to_owned).collect(),
                master_id: (*master != "-").then(|| (*master).to_owned()),
                connected: *link == "connected",
                slots,
            })
        })
        .collect()
}

/// Who serves `slot`, as the first of `live` that answers sees it.
fn owner_of(live: &[String], slot: u32) -> Result<String, String> {
    let mut errors = Vec::new();
    for addr in live {
        match cluster_nodes(addr) {
            Ok(view) => {
                return view
                    .iter()
                    .find(|n| n.owns(slot))
                    .map(|n| n.addr.clone())
                    .ok_or_else(|| format!("{addr} sees no master of slot {slot}: {view:?}"));
            }
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no live node answers: {errors:?}"))
}

/// `Ok` once `node` answers `ROLE` as a master, serves `slot` in every live node's view, and the
/// cluster is healthy.
fn serves(live: &[String], node: &str, slot: u32) -> Result<(), String> {
    let role = resp::role(node)?;
    if role != "master" {
        return Err(format!("{node} is a {role}"));
    }
    for addr in live {
        let view = cluster_nodes(addr)?;
        if !view.iter().any(|n| n.addr == node && n.owns(slot)) {
            return Err(format!(
                "{addr} does not see {node} serve slot {slot}: {view:?}"
            ));
        }
    }
    healthy(live)
}

/// `Ok` once every node of `live` says `cluster_state:ok` with every slot served, sees every
/// node of `live` as healthy and as a master serving slots or a replica of one, agrees with the others on who serves which slots (live masters,
/// `MASTERS` of them, all slots covered), and, if it is a replica, has its link up.
fn healthy(live: &[String]) -> Result<(), String> {
    let mut agreed: Option<Vec<(u32, u32, String)>> = None;
    for addr in live {
        let info = resp::call(addr, &["CLUSTER", "INFO"])?;
        let info = info.text().unwrap_or_default();
        if !info.contains("cluster_state:ok")
            || !info.contains(&format!("cluster_slots_ok:{SLOTS}"))
        {
            return Err(format!("{addr}: {info}"));
        }
        let view = cluster_nodes(addr)?;
        // Every live node healthy, and in its place: a master serving slots, or a replica of
        // one (a node that lost its slots and is not yet a replica is still moving).
        let serving = |id: &str| {
            view.iter()
                .any(|m| m.id == id && m.has_flag("master") && !m.slots.is_empty())
        };
        for other in live {
            match view.iter().find(|n| &n.addr == other) {
                Some(n)
                    if n.healthy()
                        && (serving(&n.id)
                            || (n.has_flag("slave")
                                && n.master_id.as_deref().is_some_and(serving))) => {}
                seen => return Err(format!("{addr} sees {other} as {seen:?}")),
            }
        }
        let mut owners: Vec<(u32, u32, String)> = view
            .iter()
            .filter(|n| n.has_flag("master"))
            .flat_map(|n| n.slots.iter().map(|&(a, b)| (a, b, n.addr.clone())))
            .collect();
        owners.sort();
        let masters: BTreeSet<&String> = owners.iter().map(|o| &o.2).collect();
        let covered: u32 = owners.iter().map(|(a, b, _)| b - a + 1).sum();
        if covered != SLOTS
            || masters.len() != MASTERS
            || masters.iter().any(|m| !live.contains(*m))
        {
            return Err(format!("{addr} sees the slots served as {owners:?}"));
        }
        match &agreed {
            Some(first) if *first != owners => {
                return Err(format!(
                    "the nodes disagree on the slots: {first:?} against {addr}'s {owners:?}"
                ));
            }
            Some(_) => {}
            None => agreed = Some(owners),
        }
        let me = view
            .iter()
            .find(|n| n.has_flag("myself"))
            .ok_or_else(|| format!("{addr} does not list itself"))?;
        if me.has_flag("slave") {
            let link = resp::info_field(addr, "replication", "master_link_status")?;
            if link != "up" {
                return Err(format!("{addr}'s link to its master is {link}"));
            }
        }
    }
    Ok(())
}
