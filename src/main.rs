#![forbid(unsafe_code)]
//! The `cams-flows` command line: parses arguments and hands over to the library.

use std::process::ExitCode;

#[cfg(feature = "sandbox")]
use cams_flows::sandbox::{Identity, IdentityConfig, Sandbox, SandboxConfig};
use cams_flows::{
    app::{
        Application,
        purge::{PurgeOrder, purge},
    },
    config::{ConfigSource, Environment, ServeArgs},
    telemetry::{self, ErrorChain},
};
use clap::{Parser, Subcommand};

/// mimalloc: the call path allocates many small, short-lived buffers across worker threads, and
/// glibc's allocator spent a tenth of the gateway's CPU on them, partly waiting on arena locks
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// gRPC gateway in front of Alibaba Cloud CAMS's WhatsApp Flows API.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve cams.flows.v1.FlowService over gRPC (with health and reflection).
    ///
    /// Credentials come from the Alibaba Cloud default chain (environment AccessKey, RRSA/OIDC,
    /// aliyun CLI profile, credentials file, ECS RAM role, credentials URI) or the provider
    /// that [credentials] pins, unless --sandbox is given.
    Serve(Box<ServeArgs>),
    /// Run the simulated CAMS alone (real HTTP; checks ACS3 signatures; throttles like CAMS), and
    /// with --sts-listen a simulated STS and ECS metadata service beside it.
    #[cfg(feature = "sandbox")]
    Sandbox(SandboxArgs),
    /// Print the SHA-256 of an API key (read from standard input) for `[[auth.keys]] sha256`.
    HashKey(HashKeyArgs),
    /// Drop cached answers of a tenant on every replica (FlowAdminService/InvalidateFlows): the
    /// named flows', or all of the tenant's. Needs a key or identity with roles = ["admin"].
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("space").required(true).args(["tenant", "own_space"])))]
struct PurgeArgs {
    /// The tenant (CustSpaceId) whose cached answers are dropped.
    #[arg(long, value_name = "CUST_SPACE_ID")]
    tenant: Option<String>,
    /// The account's own space (the answers read with no CustSpaceId) instead of a tenant.
    #[arg(long)]
    own_space: bool,
    /// A flow to drop (GetFlow, its preview URL and JSON asset, and the tenant's ListFlows
    /// pages); repeat for several. None: every cached answer of the tenant.
    #[arg(long = "flow", value_name = "FLOW_ID")]
    flows: Vec<String>,
    /// The gateway: host:port, or http(s)://host:port. Any replica will do: it tells the others.
    #[arg(
        long,
        env = "CAMS_FLOWS_TARGET",
        default_value = "localhost:50051",
        value_name = "ADDRESS"
    )]
    target: String,
    /// The API key to send (auth.mode = api_key); prefer the environment variable, which stays
    /// out of the shell's history and the process list.
    #[arg(
        long,
        env = "CAMS_FLOWS_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    api_key: Option<String>,
    /// Dial with TLS, verifying the gateway's certificate with this CA (PEM).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present (auth.mode = mtls), with --key-file.
    #[arg(long, value_name = "FILE", requires = "key_file")]
    cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert_file")]
    key_file: Option<std::path::PathBuf>,
    /// The name the gateway's certificate must carry, when not the target's host.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// How long to wait for the gateway's answer, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    timeout_ms: u64,
    /// Send the API key without TLS to a gateway on another host (a mesh sidecar that
    /// encrypts, say); without it, the key goes in cleartext only to this host.
    #[arg(long)]
    plaintext: bool,
}

#[derive(Debug, clap::Args)]
struct HashKeyArgs {
    /// Generate a new random key and print it with its hash, instead of reading one.
    #[arg(long)]
    generate: bool,
}

#[cfg(feature = "sandbox")]
#[derive(Debug, clap::Args)]
struct SandboxArgs {
    /// Address to serve HTTP on.
    #[arg(long, env = "CAMS_SANDBOX_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// The AccessKeyId the simulated CAMS accepts.
    #[arg(long, env = "CAMS_SANDBOX_ACCESS_KEY_ID", default_value = "sandbox-id")]
    access_key_id: String,
    /// The AccessKey secret the simulated CAMS verifies signatures with.
    #[arg(
        long,
        env = "CAMS_SANDBOX_ACCESS_KEY_SECRET",
        default_value = "sandbox-secret",
        hide_default_value = true,
        hide_env_values = true
    )]
    access_key_secret: String,
    /// Accepted calls per sliding second per AccessKeyId and per action (each Flow read has its
    /// own budget) before Throttling.User (CAMS: 5).
    #[arg(long, env = "CAMS_SANDBOX_RPS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rps: u32,
    /// STS token the simulated CAMS requires (x-acs-security-token); none by default.
    #[arg(long, env = "CAMS_SANDBOX_SECURITY_TOKEN", hide_env_values = true)]
    security_token: Option<String>,
    /// Also serve a simulated STS (AssumeRoleWithOIDC, AssumeRole) and ECS metadata service on
    /// this address; the keys they issue are accepted by the simulated CAMS until they expire.
    #[arg(long, env = "CAMS_SANDBOX_STS_LISTEN")]
    sts_listen: Option<std::net::SocketAddr>,
    /// Lifetime of the keys the simulated STS and metadata service issue, in seconds (at most
    /// 43200, the longest real STS grants).
    #[arg(long, env = "CAMS_SANDBOX_STS_LIFETIME_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=43_200))]
    sts_lifetime_secs: u64,
    /// The RAM role of the simulated ECS instance.
    #[arg(
        long,
        env = "CAMS_SANDBOX_ECS_ROLE",
        default_value = "cams-flows-sandbox"
    )]
    ecs_role_name: String,
    /// The simulated metadata service answers only reads that carry a session token (IMDSv2).
    #[arg(long)]
    metadata_hardened: bool,
    /// Run the simulated services' clock this many milliseconds ahead of the host's (negative:
    /// behind, at most a day either way): their `Date` header, their check of the signature's
    /// date, the keys' expiry and the `PreviewUrlExpires` they send follow it.
    #[arg(long, env = "CAMS_SANDBOX_CLOCK_OFFSET_MS", default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-86_400_000..=86_400_000))]
    clock_offset_ms: i64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: cams_flows::config::LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => sandbox(args).await,
        Command::HashKey(args) => hash_key(&args),
        Command::Purge(args) => purge_cached(args).await,
    }
}

async fn purge_cached(args: PurgeArgs) -> ExitCode {
    let order = PurgeOrder {
        target: args.target,
        tenant: args.tenant,
        flows: args.flows,
        api_key: args
            .api_key
            .filter(|k| !k.is_empty())
            .map(secrecy::SecretString::from),
        ca_file: args.ca_file,
        client_cert: args.cert_file.zip(args.key_file),
        server_name: args.server_name,
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        plaintext: args.plaintext,
    };
    match purge(&order).await {
        Ok(purged) => {
            let what = if order.flows.is_empty() {
                "every cached answer".to_owned()
            } else {
                format!("the cached answers of {} flow(s)", order.flows.len())
            };
            let space = order.tenant.as_deref().unwrap_or("the account's own space");
            println!(
                "purged {what} of {space}: {} entries dropped at the replica that answered, {} \
                 from the shared cache; other replicas {}",
                purged.local_entries,
                purged.shared_entries,
                if purged.peers_notified {
                    "notified"
                } else {
                    "not notified (no shared cache)"
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Reads the key from standard input, not the command line, so that it stays out of shell
/// history and process listings.
fn hash_key(args: &HashKeyArgs) -> ExitCode {
    if args.generate {
        let key = format!(
            "cf_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        println!("key:    {key}");
        println!("sha256: {}", cams_flows::auth::hash_key(&key));
        return ExitCode::SUCCESS;
    }
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(_) if !line.trim().is_empty() => {
            println!("{}", cams_flows::auth::hash_key(line.trim()));
            ExitCode::SUCCESS
        }
        Ok(_) => {
            eprintln!(
                "error: no key on standard input (e.g. `printf %s \"$KEY\" | cams-flows hash-key`)"
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: cannot read standard input: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let env = Environment::capture(std::env::vars_os());
    for warning in env.warnings() {
        eprintln!("warning: {warning}");
    }
    let source = ConfigSource::new(args, env);
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let app = match Application::build(config).await {
        Ok(app) => app.reloading(source),
        Err(e) => {
            let e = ErrorChain(&e);
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {}", ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "sandbox")]
async fn sandbox(args: SandboxArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let mut config = SandboxConfig::new(args.access_key_id, args.access_key_secret);
    config.rps_per_key = args.rps;
    config.security_token = args.security_token.map(secrecy::SecretString::from);
    config.clock_offset_ms(args.clock_offset_ms);
    let identity = match args.sts_listen {
        None => None,
        Some(addr) => {
            let mut identity = IdentityConfig::new(std::sync::Arc::clone(&config.keyring));
            identity.lifetime = std::time::Duration::from_secs(args.sts_lifetime_secs);
            identity.role_name = args.ecs_role_name;
            identity.hardened = args.metadata_hardened;
            identity.clock = std::sync::Arc::clone(&config.clock);
            identity.signers = vec![(
                config.access_key_id.clone(),
                config.access_key_secret.clone(),
            )];
            match Identity::bind(addr, identity).await {
                Ok(identity) => Some(identity),
                Err(e) => {
                    eprintln!("error: cannot listen on {addr}: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let sandbox = match Sandbox::bind(args.listen, config).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    tracing::info!(
        endpoint = %sandbox.endpoint(),
        clock_offset_ms = args.clock_offset_ms,
        "simulated CAMS listening"
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let identity = identity.map(|identity| {
        tracing::info!(
            endpoint = %identity.endpoint(),
            lifetime_secs = args.sts_lifetime_secs,
            "simulated STS and ECS metadata service listening"
        );
        tokio::spawn(identity.run_until(stop.clone().cancelled_owned()))
    });
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    let served = sandbox.run_until(stop.cancelled_owned()).await;
    let identity = match identity {
        Some(task) => task.await.unwrap_or(Ok(())),
        None => Ok(()),
    };
    match served.and(identity) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
