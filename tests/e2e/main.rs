//! The end-to-end tests, in one test binary: the real gateway over loopback against the simulated
//! CAMS, the real binaries as child processes, and the TLS layer with certificates made here.
//! One binary means `support/` is compiled once and every module's tests share one run, so that
//! slow tests of one module overlap with those of the others.

mod support;

mod account;
mod auth;
mod callers;
mod clock_skew;
mod credentials;
mod docs;
mod failover;
mod fair;
mod family;
mod fetch_lock;
mod getflow;
mod hostile;
mod limits;
mod observability;
mod purge;
mod quota;
mod reload;
mod replicas;
mod resilience;
mod secrets;
mod server;
mod shared_cache;
mod slots;
mod tls;
mod topologies;
