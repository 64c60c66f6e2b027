//! What a watched file looked like when last checked; any difference means it was replaced or
//! rewritten.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
    /// Unlike mtime, ctime cannot be set back by the writer, so a same-size rewrite within one
    /// mtime tick still shows.
    #[cfg(unix)]
    changed: (i64, i64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    // metadata() follows symlinks: Kubernetes swaps a `..data` symlink, and the target's inode is
    // what changes then.
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt as _;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        #[cfg(unix)]
        inode: (meta.dev(), meta.ino()),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// Taken before the files are read, so that a write landing during the read shows as a change
/// the next time.
pub(crate) fn stamps_now(files: &[PathBuf]) -> Vec<Option<FileStamp>> {
    files.iter().map(|f| stamp(f)).collect()
}

/// [`stamps_now`] off the async workers: a slow (network) filesystem must not stall one.
pub(super) async fn stamps(files: Arc<[PathBuf]>) -> Vec<Option<FileStamp>> {
    tokio::task::spawn_blocking(move || stamps_now(&files))
        .await
        .unwrap_or_default()
}
