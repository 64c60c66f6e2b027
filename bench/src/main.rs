#![forbid(unsafe_code)]
//! `cams-flows-bench`: the load generator and the baselines behind BENCHMARKS.md.
//!
//! - `load`: closed-loop unary calls of one of FlowService's reads, or of the four in turn,
//!   against a gRPC target (the gateway or the bare baseline server), checking the status and
//!   content of every response.
//! - `baseline-grpc`: a bare tonic FlowService answering each RPC with a constant, real response;
//!   the limit of the gRPC stack on this machine.
//! - `baseline-http`: the same calls made straight to a simulated CAMS through one pooled
//!   `CamsClient`; the limit of the upstream.
//! - `baseline-proxy`: a bare FlowService forwarding every call through one `CamsClient`; the
//!   least a gRPC hop in front of CAMS can cost, without anything a gateway does.
//! - `report`: turns the JSON results of `scripts/bench.sh` into the Markdown of BENCHMARKS.md.
//!
//! Not part of the product and not run by the tests: CI only builds it, so it cannot rot.

/// The gateway's allocator, so that the baselines and the gateway are compared like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare;
mod cli;
mod direct;
mod drive;
mod keys;
mod load;
mod proxy;
mod record;
mod report;
mod rpc;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let threads = cli.threads;
    match cli.command {
        // The report needs no runtime.
        Command::Report(args) => report::run(&args),
        Command::Load(args) => runtime(threads)?.block_on(load::run(args)),
        Command::BaselineGrpc(args) => runtime(threads)?.block_on(bare::run(args)),
        Command::BaselineHttp(args) => runtime(threads)?.block_on(direct::run(args)),
        Command::BaselineProxy(args) => runtime(threads)?.block_on(proxy::run(args)),
    }
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    Ok(builder.build()?)
}
