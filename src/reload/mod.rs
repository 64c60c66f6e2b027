//! Reloading what may change while the gateway runs (the TLS files, the configuration file): one
//! watcher for all of it, on SIGHUP and when a watched file changes.
//!
//! The SIGHUP listener is installed once, at start, whatever the configuration
//! ([`hangup_signal`]): from then on SIGHUP never takes its default action, which would end the
//! process. Each SIGHUP reloads every target; a file change reloads the target that reads the
//! file. A file is checked every `poll` by its modification time, size, inode and change time
//! against the stamps taken just before its contents were last read, so a write landing during a
//! read shows as a change the next time.

mod stamp;

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

pub(crate) use stamp::{FileStamp, stamps_now};

/// Something the watcher reloads.
pub(crate) trait Reload: Send + Sync + 'static {
    /// What it is, for the log (`TLS certificates`, `configuration`).
    fn what(&self) -> &'static str;
    /// The files it reads; none: it reloads on SIGHUP only.
    fn files(&self) -> Vec<PathBuf>;
    /// The files' stamps taken just before the running state was read from them.
    fn loaded(&self) -> Vec<Option<FileStamp>>;
    /// Reads the files again and applies them, or keeps the running state when they are not
    /// usable; logs its own outcome. Reads files synchronously: the watcher calls it off the
    /// async workers.
    fn reload(&self, cause: Cause);
}

/// Why a target is reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Hangup,
    FileChange,
}

impl Cause {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "SIGHUP",
            Self::FileChange => "file change",
        }
    }
}

struct Watched {
    target: Weak<dyn Reload>,
    what: &'static str,
    files: Arc<[PathBuf]>,
    seen: Vec<Option<FileStamp>>,
}

/// Reloads `targets` on each SIGHUP `hangup` hears and when their files change (checked every
/// `poll`; `Duration::ZERO`: on SIGHUP only). Holds no strong reference: it ends by itself once
/// every target it was given is dropped (with no target at all, it only answers SIGHUPs). The
/// targets' state is read now, not when the future is first polled. The caller runs it (spawns
/// it, and aborts or drops it to stop it); it must be polled within a Tokio runtime.
pub(crate) fn watch(
    targets: Vec<Weak<dyn Reload>>,
    poll: Duration,
    hangup: Option<Hangup>,
) -> impl Future<Output = ()> + Send + 'static {
    let watched: Vec<Watched> = targets
        .into_iter()
        .filter_map(|target| {
            let live = target.upgrade()?;
            Some(Watched {
                what: live.what(),
                files: live.files().into(),
                seen: live.loaded(),
                target,
            })
        })
        .collect();
    run(watched, poll, hangup)
}

async fn run(mut watched: Vec<Watched>, poll: Duration, mut hangup: Option<Hangup>) {
    let had_targets = !watched.is_empty();
    let polled = watched.iter().any(|w| !w.files.is_empty());
    let mut ticks = (!poll.is_zero() && polled).then(|| {
        let mut ticks = tokio::time::interval(poll);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    if hangup.is_none() && ticks.is_none() {
        if had_targets {
            tracing::warn!("nothing will be reloaded: no SIGHUP handler and no polling");
        }
        return;
    }
    loop {
        tokio::select! {
            () = next_hangup(&mut hangup) => {
                if watched.is_empty() {
                    tracing::info!("SIGHUP: nothing to reload");
                }
                for w in &mut watched {
                    let Some(target) = w.target.upgrade() else {
                        continue;
                    };
                    w.seen = stamp::stamps(Arc::clone(&w.files)).await;
                    reload(target, w.what, Cause::Hangup).await;
                }
            }
            () = next_tick(&mut ticks) => {
                for w in &mut watched {
                    if w.files.is_empty() {
                        continue;
                    }
                    let now = stamp::stamps(Arc::clone(&w.files)).await;
                    if now == w.seen {
                        continue;
                    }
                    let Some(target) = w.target.upgrade() else {
                        continue;
                    };
                    w.seen = now;
                    reload(target, w.what, Cause::FileChange).await;
                }
            }
        }
        watched.retain(|w| w.target.strong_count() > 0);
        if had_targets && watched.is_empty() {
            return;
        }
    }
}

async fn reload(target: Arc<dyn Reload>, what: &'static str, cause: Cause) {
    tracing::info!(cause = cause.as_str(), what, "reloading");
    // The target logs its own outcome; a failure keeps the running state and is retried on the
    // next change or SIGHUP.
    let _ = tokio::task::spawn_blocking(move || target.reload(cause)).await;
}

#[cfg(unix)]
pub(crate) type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
pub(crate) type Hangup = ();

/// Listens for SIGHUP from now on (within a Tokio runtime): from the moment this returns, SIGHUP
/// no longer ends the process, even before anything awaits the listener.
#[cfg(unix)]
pub(crate) fn hangup_signal() -> Option<Hangup> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reloads only on file changes");
            None
        }
    }
}

#[cfg(not(unix))]
pub(crate) fn hangup_signal() -> Option<Hangup> {
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
