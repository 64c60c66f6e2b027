//! Command-line arguments of `cams-flows-bench`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator and baselines for the cams-flows gateway (see BENCHMARKS.md).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// Tokio worker threads [default: one per core].
    #[arg(long, global = true, value_parser = clap::value_parser!(usize))]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Unary FlowService calls (GetFlow by default) against a gRPC target at a fixed concurrency.
    Load(LoadArgs),
    /// Serve a bare FlowService that answers every call of each RPC with one constant, real
    /// response.
    BaselineGrpc(BareArgs),
    /// The same calls straight to a simulated CAMS over HTTP with one pooled CamsClient.
    BaselineHttp(DirectArgs),
    /// Serve a bare FlowService that forwards every GetFlow to CAMS with one CamsClient and
    /// nothing else: the least any gRPC-to-CAMS gateway can cost.
    BaselineProxy(ProxyArgs),
    /// Render the results that scripts/bench.sh collected as the Markdown of BENCHMARKS.md.
    Report(ReportArgs),
}

/// How many calls, how hard, and over which (tenant, flow) keys; shared by `load` and
/// `baseline-http` so that both make the same calls.
#[derive(Debug, Clone, Args)]
pub struct Shape {
    /// Calls in flight at once (closed loop: each worker sends its next call when one returns).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: u32,
    /// How long to measure, after the warm-up (e.g. `10s`, `500ms`) [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "calls")]
    pub duration: Option<Duration>,
    /// Measure this many calls instead of a duration.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: Option<u64>,
    /// Calls made before measuring starts; their results are not counted.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Spread calls over this many CustSpaceIds: `<tenant-prefix>0` ..
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub tenants: u32,
    #[arg(long, default_value = "tenant-")]
    pub tenant_prefix: String,
    /// Spread calls over this many flow ids: `<flow-prefix>0` ..
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub flows: u32,
    /// The default gives the simulated CAMS's fast sample flows, any number of them.
    #[arg(long, default_value = "sim:ok:")]
    pub flow_prefix: String,
    /// Use exactly this flow id for every call (overrides --flows and --flow-prefix).
    #[arg(long)]
    pub flow_id: Option<String>,
    /// Each worker starts at most one call per this interval (e.g. `1s`), for callers that call
    /// at a steady pace rather than as fast as answers come.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub pace: Option<Duration>,
    /// Deadline of each call (sent as grpc-timeout; the HTTP baseline uses it as its deadline).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the summary as JSON on stdout (the human table then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// A name for this run, carried into the summary.
    #[arg(long)]
    pub label: Option<String>,
}

impl Shape {
    pub fn measure_for(&self) -> Duration {
        self.duration.unwrap_or(Duration::from_secs(10))
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// gRPC target, `http://host:port`; repeat it to spread the calls over several servers
    /// (replicas) in turn.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: Vec<String>,
    /// Distinct HTTP/2 connections per target; calls take them in turn.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: u32,
    /// Base URL of the simulated CAMS behind the target(s): its statistics before and after the
    /// measured phase give the CAMS calls it accepted meanwhile, and the client calls answered
    /// per CAMS call.
    #[arg(long)]
    pub cams_stats: Option<String>,
    /// Which RPC to call; `mixed` cycles GetFlow, ListFlows, GetFlowPreviewUrl and
    /// GetFlowJsonAsset by call number, the four calls of a cycle on the same key.
    #[arg(long, value_enum, default_value_t = RpcChoice::GetFlow)]
    pub rpc: RpcChoice,
    /// `page_size` of ListFlows calls (0: the gateway's default, 20). Each asks for the first
    /// page of its tenant's space (`--tenant-prefix sim:catalogue:100:` gives spaces of 100 flows
    /// at the simulated CAMS).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub page_size: i32,
    #[command(flatten)]
    pub shape: Shape,
}

/// `--rpc`: one of the four reads, or all of them in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RpcChoice {
    GetFlow,
    ListFlows,
    PreviewUrl,
    JsonAsset,
    Mixed,
}

#[derive(Debug, Clone, Args)]
pub struct BareArgs {
    /// Address to serve on; port 0 picks a free one (printed as `listening <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// TCP_NODELAY on accepted connections (`false` mimics a server that leaves Nagle on).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub tcp_nodelay: bool,
    /// Flows in the constant ListFlows page (the first page of a catalogue space of 100 flows,
    /// as the load generator's `--page-size` asks for it).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub page_size: u32,
}

/// Where the simulated CAMS is and the AccessKey it accepts.
#[derive(Debug, Clone, Args)]
pub struct UpstreamArgs {
    /// Base URL of the simulated CAMS, `http://host:port`.
    #[arg(long)]
    pub endpoint: String,
    #[arg(long, default_value = "sandbox-id")]
    pub access_key_id: String,
    #[arg(long, default_value = "sandbox-secret", hide_default_value = true)]
    pub access_key_secret: String,
}

#[derive(Debug, Clone, Args)]
pub struct DirectArgs {
    #[command(flatten)]
    pub upstream: UpstreamArgs,
    #[command(flatten)]
    pub shape: Shape,
}

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address to serve on; port 0 picks a free one (printed as `listening <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub upstream: UpstreamArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Directory holding the results of one bench.sh run.
    #[arg(long)]
    pub dir: PathBuf,
    /// Cores of the machine (`nproc`).
    #[arg(long)]
    pub cores: String,
    /// When the suite ran.
    #[arg(long)]
    pub date: String,
    /// The command that produced the results, quoted verbatim in the report.
    #[arg(long)]
    pub command: String,
    /// The source revision measured.
    #[arg(long, default_value = "")]
    pub revision: String,
}
