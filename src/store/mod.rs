//! Shared state for several replicas: one Redis client ([`redis`]) that the shared backends of
//! the account quota, the tenant limits and (later) the cache use, each through its own seam.

mod redis;

pub use self::redis::{
    CACHE_WHEN_DOWN, QUOTA_WHEN_DOWN, Redis, RedisConfig, StoreError, account_tag,
};
