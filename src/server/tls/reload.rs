//! Watching the certificate files (and SIGHUP) and reloading when they change.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, Weak},
    time::{Duration, SystemTime},
};

use super::TlsServer;

impl TlsServer {
    /// Reloads on SIGHUP and when any of the files' modification time, size, inode or change time
    /// differs from when they were last read, checked every `poll` (`Duration::ZERO`: on SIGHUP
    /// only). The caller runs it (spawns it, and aborts or drops it to stop it); it must be polled
    /// within a Tokio runtime. It holds no strong reference: it ends by itself once the last
    /// `Arc<TlsServer>` is dropped. Once it runs, SIGHUP no longer ends the process.
    pub fn reloader(self: &Arc<Self>, poll: Duration) -> impl Future<Output = ()> + Send + 'static {
        let seen = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        watch_and_reload(Arc::downgrade(self), self.settings.files(), seen, poll)
    }
}

/// What a file looked like when last checked; any difference means it was replaced or rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileStamp {
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
pub(super) fn stamps_now(files: &[PathBuf]) -> Vec<Option<FileStamp>> {
    files.iter().map(|f| stamp(f)).collect()
}

async fn stamps(files: &Arc<[PathBuf]>) -> Vec<Option<FileStamp>> {
    let files = Arc::clone(files);
    // A slow (network) filesystem must not stall an async worker.
    tokio::task::spawn_blocking(move || stamps_now(&files))
        .await
        .unwrap_or_default()
}

/// `seen`: the stamps the current configuration was read under; any later change is reloaded.
async fn watch_and_reload(
    server: Weak<TlsServer>,
    files: Vec<PathBuf>,
    mut seen: Vec<Option<FileStamp>>,
    poll: Duration,
) {
    let files: Arc<[PathBuf]> = files.into();
    let mut hangup = hangup_signal();
    let mut ticks = (!poll.is_zero()).then(|| {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    if hangup.is_none() && ticks.is_none() {
        tracing::warn!("TLS certificates will not be reloaded: no SIGHUP handler and no polling");
        return;
    }
    // Stamps are always taken before the files are read, so a write landing during a reload is
    // seen as a change next time.
    loop {
        let cause = tokio::select! {
            () = next_hangup(&mut hangup) => {
                seen = stamps(&files).await;
                "SIGHUP"
            }
            () = next_tick(&mut ticks) => {
                let now = stamps(&files).await;
                if now == seen {
                    if server.strong_count() == 0 {
                        return;
                    }
                    continue;
                }
                seen = now;
                "file change"
            }
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        tracing::info!(cause, "reloading TLS certificates");
        // reload() logs its own outcome; a failure keeps the old certificates and is retried on
        // the next change or SIGHUP.
        let _ = tokio::task::spawn_blocking(move || server.reload()).await;
    }
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Option<Hangup> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; TLS reload only on file changes");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<Hangup> {
    None
}

async fn next_hangup(hangup: &mut Option<Hangup>) {
    #[cfg(unix)]
    if let Some(hangup) = hangup
        && hangup.recv().await.is_some()
    {
        return;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{server::TlsSettings, testing::certs::Ca};

    #[tokio::test]
    async fn the_reloader_holds_no_strong_reference_and_ends_with_the_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leaf = Ca::new("server CA").server_leaf("server");
        let settings = TlsSettings {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            client_ca_file: None,
        };
        std::fs::write(&settings.cert_file, &leaf.cert_pem).expect("write");
        std::fs::write(&settings.key_file, &leaf.key_pem).expect("write");
        let server = TlsServer::load(settings).expect("load");
        let reloader = server.reloader(Duration::from_millis(10));
        assert_eq!(Arc::strong_count(&server), 1);
        // Dropped before the reloader is first polled: it must still end, not wait for a signal.
        drop(server);
        tokio::time::timeout(Duration::from_secs(5), reloader)
            .await
            .expect("the reloader ended");
    }
}
