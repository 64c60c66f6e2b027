//! A real `redis-server` on a free loopback port, for the tests of state shared by replicas, and
//! the node the Sentinel and Cluster topologies are made of ([`super::sentinel`],
//! [`super::cluster`]). Debian's `redis-server` is what `.ci/run` installs; without it these
//! tests fail and say how to install it (they never skip).

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::resp::{self, Reply};

/// How a [`RedisServer`] runs, beyond what every one of them has (loopback, no persistence, its
/// own temp dir). `RedisOptions::default()` is what [`RedisServer::start`] runs.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    maxmemory: Option<String>,
    maxmemory_policy: String,
    replica_of: Option<u16>,
    min_replicas: Option<(u32, u32)>,
    cluster_node_timeout: Option<Duration>,
    extra: Vec<(String, String)>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            maxmemory: None,
            // What the quota's store should run: refuse writes rather than evict a quota key.
            maxmemory_policy: "noeviction".to_owned(),
            replica_of: None,
            min_replicas: None,
            cluster_node_timeout: None,
            extra: Vec::new(),
        }
    }
}

impl RedisOptions {
    /// `maxmemory` (Redis's units: "1mb", "100kb", bytes).
    pub fn maxmemory(mut self, limit: &str) -> Self {
        self.maxmemory = Some(limit.to_owned());
        self
    }

    /// `maxmemory-policy` ("noeviction" unless set: "allkeys-lru", "volatile-ttl", ...).
    pub fn maxmemory_policy(mut self, policy: &str) -> Self {
        self.maxmemory_policy = policy.to_owned();
        self
    }

    /// `replicaof 127.0.0.1 <port>`.
    pub fn replica_of(mut self, port: u16) -> Self {
        self.replica_of = Some(port);
        self
    }

    /// `min-replicas-to-write <to_write>` and `min-replicas-max-lag <max_lag_secs>`: as a
    /// primary, refuse writes (`NOREPLICAS`) unless that many replicas acknowledged within the
    /// lag. Replicas acknowledge once a second, so a lag under 2 s refuses writes now and then
    /// on a loaded host.
    pub fn min_replicas(mut self, to_write: u32, max_lag_secs: u32) -> Self {
        self.min_replicas = Some((to_write, max_lag_secs));
        self
    }

    /// Cluster mode: `cluster-enabled yes`, its `nodes.conf` in the node's temp dir (kept across
    /// a restart, so a restarted node rejoins as itself), the bus on a free port of its own
    /// (`cluster-port`), and `cluster-node-timeout`.
    pub fn cluster(mut self, node_timeout: Duration) -> Self {
        self.cluster_node_timeout = Some(node_timeout);
        self
    }

    /// Any other directive, written as `name value` in the config file.
    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn config(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What the process is: a data node, or a Sentinel with its config file (which it rewrites, and
/// which is kept across a restart, as a real Sentinel's is).
#[derive(Clone, Debug)]
enum Mode {
    Server(RedisOptions),
    Sentinel { directives: Vec<String> },
}

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    cluster_port: Option<u16>,
    mode: Mode,
    dir: tempfile::TempDir,
    /// Whether the process is stopped (SIGSTOP): the topologies' waits leave it out.
    frozen: AtomicBool,
}

/// How long a started or restarted process has to answer PING.
const READY: Duration = Duration::from_secs(10);

/// Ports are probed free, then given to the process: on a host running other tests, another
/// process may take one in between. Starting again on new ports is the fix.
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    /// Starts an empty Redis with no persistence (as the quota's store should run).
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts an empty Redis with no persistence, run as `options` say.
    pub fn start_with(options: RedisOptions) -> Self {
        Self::start_mode(Mode::Server(options))
    }

    /// Starts a Sentinel whose config file holds `directives` (its `sentinel monitor` and the
    /// rest) after its port, bind address and dir.
    pub(super) fn start_sentinel(directives: Vec<String>) -> Self {
        Self::start_mode(Mode::Sentinel { directives })
    }

    fn start_mode(mode: Mode) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let clustered = matches!(&mode, Mode::Server(o) if o.cluster_node_timeout.is_some());
            let mut server = Self {
                child: None,
                port: free_port(),
                cluster_port: clustered.then(free_port),
                mode: mode.clone(),
                dir: tempfile::tempdir().expect("tempdir"),
                frozen: AtomicBool::new(false),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "redis-server did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n")
        );
    }

    fn config_path(&self) -> PathBuf {
        let name = match self.mode {
            Mode::Server(_) => "redis.conf",
            Mode::Sentinel { .. } => "sentinel.conf",
        };
        self.dir.path().join(name)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The config file: a data node's is written afresh at every launch (a restarted pod gets its
    /// config map again, whatever Sentinel rewrote in it); a Sentinel's only at the first.
    fn write_config(&self) {
        let path = self.config_path();
        let quoted = |p: PathBuf| format!("\"{}\"", p.display());
        let mut lines = vec![
            format!("port {}", self.port),
            "bind 127.0.0.1".to_owned(),
            format!("dir {}", quoted(self.dir.path().to_owned())),
            format!("logfile {}", quoted(self.log_path())),
        ];
        match &self.mode {
            Mode::Sentinel { .. } if path.exists() => return,
            Mode::Sentinel { directives } => lines.extend(directives.iter().cloned()),
            Mode::Server(o) => {
                lines.extend([
                    "save \"\"".to_owned(),
                    "appendonly no".to_owned(),
                    format!("maxmemory-policy {}", o.maxmemory_policy),
                    // A replica's first sync starts at once instead of after 5 s (the default
                    // waits for more replicas to share one transfer).
                    "repl-diskless-sync-delay 0".to_owned(),
                ]);
                if let Some(limit) = &o.maxmemory {
                    lines.push(format!("maxmemory {limit}"));
                }
                if let Some(port) = o.replica_of {
                    lines.push(format!("replicaof 127.0.0.1 {port}"));
                }
                if let Some((to_write, max_lag)) = o.min_replicas {
                    lines.push(format!("min-replicas-to-write {to_write}"));
                    lines.push(format!("min-replicas-max-lag {max_lag}"));
                }
                if let Some(timeout) = o.cluster_node_timeout {
                    lines.extend([
                        "cluster-enabled yes".to_owned(),
                        format!(
                            "cluster-config-file {}",
                            quoted(self.dir.path().join("nodes.conf"))
                        ),
                        format!("cluster-node-timeout {}", timeout.as_millis()),
                        format!("cluster-port {}", self.cluster_port.expect("a bus port")),
                    ]);
                }
                lines.extend(o.extra.iter().map(|(k, v)| format!("{k} {v}")));
            }
        }
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the redis config file");
    }

    /// Runs the process and waits until it answers PING; on an early exit or no answer, says why
    /// (the end of its log).
    fn launch(&mut self) -> Result<(), String> {
        self.write_config();
        let mut cmd = Command::new("redis-server");
        cmd.arg(self.config_path());
        if let Mode::Sentinel { .. } = self.mode {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the tests of state shared through Redis \
                     need a real one (Sentinel and Cluster included, Redis 7.0 or later); \
                     install it with `apt-get install redis-server` (Debian) and make sure \
                     `redis-server` is on PATH"
                )
            });
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until this process answers on its port. The server that answers must be this one
    /// (its process id, from `INFO server`), not one another test started on a port it was also
    /// told was free; if another holds the port, or this one exits, the caller tries other ports.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        loop {
            let child = self.child.as_mut().expect("just spawned");
            let pid = child.id();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited ({status}); its log ends with:\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            match resp::info_field(&self.addr(), "server", "process_id") {
                Ok(answering) if answering == pid.to_string() => return Ok(()),
                Ok(answering) => {
                    self.kill();
                    return Err(format!(
                        "port {} is held by another redis-server (process {answering})",
                        self.port
                    ));
                }
                Err(_) if Instant::now() < deadline => {}
                Err(e) => {
                    self.kill();
                    return Err(format!(
                        "redis-server on port {} did not answer in {READY:?} ({e}); its log \
                         ends with:\n{}",
                        self.port,
                        self.log_tail()
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the process logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:<port>", as Sentinel and Cluster name nodes.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process runs (it has not been killed, or has been restarted since).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends one command and returns the reply (an error reply included); panics if the node
    /// cannot be reached within [`resp::CALL_TIMEOUT`].
    pub fn cmd(&self, args: &[&str]) -> Reply {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis-server on port {}: {e}", self.port))
    }

    /// [`cmd`](Self::cmd), with a transport failure as an `Err` (a frozen or dead node).
    pub fn try_cmd(&self, args: &[&str]) -> Result<Reply, String> {
        resp::call(&self.addr(), args)
    }

    /// `INFO <section>`, field by field.
    pub fn info(&self, section: &str) -> BTreeMap<String, String> {
        resp::info(&self.addr(), section)
            .unwrap_or_else(|e| panic!("redis-server on port {}: {e}", self.port))
            .into_iter()
            .collect()
    }

    /// `ROLE`'s first element: "master", "slave" or "sentinel".
    pub fn role(&self) -> String {
        resp::role(&self.addr()).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn flushall(&self) {
        self.expect_ok(&["FLUSHALL"]);
    }

    /// `DEL key`: how many keys were deleted (0 or 1).
    #[allow(dead_code, reason = "for the tests of the gateway on these topologies")]
    pub fn del(&self, key: &str) -> i64 {
        let reply = self.cmd(&["DEL", key]);
        reply
            .int()
            .unwrap_or_else(|| panic!("DEL {key}: {reply:?}"))
    }

    pub fn config_set(&self, name: &str, value: &str) {
        self.expect_ok(&["CONFIG", "SET", name, value]);
    }

    fn expect_ok(&self, args: &[&str]) {
        let reply = self.cmd(args);
        assert_eq!(
            reply,
            Reply::Status("OK".to_owned()),
            "{} on port {}",
            args.join(" "),
            self.port
        );
    }

    /// SIGSTOP or SIGCONT: a Redis that holds its connections open and answers nothing (a hung
    /// or overloaded server, a network partition), then carries on.
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("redis-server is running");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {signal} redis-server");
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Whether the process runs and is not frozen: whether it can answer.
    pub fn is_answering(&self) -> bool {
        self.is_running() && !self.frozen.load(Ordering::SeqCst)
    }

    /// SIGKILL: Redis dies with whatever it held; the kernel closes its sockets (FIN, or RST
    /// where a client's bytes were unread).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// Starts again, empty, on the same port (a restart without persistence). A cluster node
    /// keeps its `nodes.conf`, so it rejoins the cluster as the node it was; a Sentinel keeps its
    /// config file, and what it had learnt.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.launch() {
            panic!("restarting redis-server: {failure}");
        }
    }

    /// Restarts as a data node run as `options` (same port, dir and cluster bus port; a cluster
    /// node's `options` must be in cluster mode too).
    pub fn restart_with(&mut self, options: RedisOptions) {
        assert!(
            matches!(self.mode, Mode::Server(_)),
            "a Sentinel restarts with its own config file"
        );
        assert_eq!(
            options.cluster_node_timeout.is_some(),
            self.cluster_port.is_some(),
            "a node cannot move into or out of cluster mode on restart"
        );
        self.mode = Mode::Server(options);
        self.restart();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (SIGSTOPped) process too.
        self.kill();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("addr").port()
}
