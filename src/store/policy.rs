//! What a server's `INFO memory` says of its eviction policy: the quota's keys must never be
//! evicted, or the lease log could go alone and the replicas admit as if no call were in flight.

/// The policy of the servers that hold data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionPolicy {
    NoEviction,
    /// The first policy found that evicts (`allkeys-lru`, `volatile-ttl`, …).
    Evicting(String),
    /// No server said.
    Unknown,
}

/// The policy across `infos` (one `INFO memory` per server): evicting if any server evicts.
pub(super) fn eviction_policy(infos: &[String]) -> EvictionPolicy {
    let mut seen = false;
    for info in infos {
        let Some(policy) = info
            .lines()
            .find_map(|line| line.trim().strip_prefix("maxmemory_policy:"))
        else {
            continue;
        };
        seen = true;
        if policy != "noeviction" {
            return EvictionPolicy::Evicting(policy.to_owned());
        }
    }
    if seen {
        EvictionPolicy::NoEviction
    } else {
        EvictionPolicy::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_evicting_server_makes_the_store_evicting() {
        let info = |p: &str| format!("# Memory\r\nused_memory:1\r\nmaxmemory_policy:{p}\r\n");
        assert_eq!(
            eviction_policy(&[info("noeviction")]),
            EvictionPolicy::NoEviction
        );
        assert_eq!(
            eviction_policy(&[info("noeviction"), info("allkeys-lru")]),
            EvictionPolicy::Evicting("allkeys-lru".into())
        );
        assert_eq!(
            eviction_policy(&["# Memory\r\n".into()]),
            EvictionPolicy::Unknown
        );
    }
}
