/// How an answer was obtained: told to callers in the `x-cams-cache` response header and counted
/// in `cams_flows_cache_results_total{result}`, both with [`CacheResult::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// From this process's cache, without asking CAMS.
    Hit,
    /// From the cache shared with other replicas, without asking CAMS.
    Shared,
    /// Fetched from CAMS for this call.
    Miss,
    /// Shared from a fetch another call started.
    Coalesced,
    /// An answer past its TTL, served because CAMS is failing or throttling.
    Stale,
}

impl CacheResult {
    pub const ALL: [Self; 5] = [
        Self::Hit,
        Self::Shared,
        Self::Miss,
        Self::Coalesced,
        Self::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Shared => "shared",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Stale => "stale",
        }
    }
}
