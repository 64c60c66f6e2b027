//! Shared state for several replicas: one Redis handle ([`Redis`]) that the shared backends of
//! the account quota, the tenant and caller limits and the cache use, each through its own seam,
//! whatever the topology ([`Topology`]: one server, Sentinel, Cluster).
//!
//! - `config.rs`: the validated `[redis]` section.
//! - `connect.rs`: a connection to the primary, per topology, with TCP settings that notice a
//!   peer that vanished.
//! - `connection.rs`: the connection every command runs on.
//! - `handle.rs`: the handle: commands bounded, suspect connections replaced, state logged.
//! - `policy.rs`: the eviction policy a Redis holding the quota must have.

mod config;
mod connect;
mod connection;
mod handle;
mod policy;

pub use self::{
    config::{RedisConfig, Topology},
    connection::Connection,
    handle::{CACHE_WHEN_DOWN, Purpose, QUOTA_WHEN_DOWN, Redis, StoreError},
    policy::EvictionPolicy,
};

/// The hash tag of one account's keys: `{acct:<first 16 hex digits of its SHA-256>}`. Hashed,
/// so that the account is not spelled out in Redis; a hash tag, so that in a Redis Cluster a
/// script can touch all of one account's keys (they share a slot).
pub fn account_tag(account: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(account.as_bytes()));
    format!("{{acct:{}}}", &digest[..16])
}
