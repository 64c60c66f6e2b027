//! The certificate files as one of the targets of the reload watcher ([`crate::reload`]).

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, PoisonError, Weak},
    time::Duration,
};

use super::TlsServer;
use crate::reload::{self, Cause, FileStamp, Reload};

impl TlsServer {
    /// Reloads on SIGHUP and when any of the files' modification time, size, inode or change time
    /// differs from when they were last read, checked every `poll` (`Duration::ZERO`: on SIGHUP
    /// only): a watcher of its own, for a server used without the application (which watches
    /// every reloadable part with one watcher and one SIGHUP listener). The caller runs it
    /// (spawns it, and aborts or drops it to stop it); it must be polled within a Tokio runtime.
    /// It holds no strong reference: it ends by itself once the last `Arc<TlsServer>` is dropped.
    /// Once it runs, SIGHUP no longer ends the process.
    pub fn reloader(self: &Arc<Self>, poll: Duration) -> impl Future<Output = ()> + Send + 'static {
        reload::watch(vec![self.watched()], poll, reload::hangup_signal())
    }

    /// This server as a target of the reload watcher.
    pub(crate) fn watched(self: &Arc<Self>) -> Weak<dyn Reload> {
        let target: Arc<dyn Reload> = Arc::clone(self) as Arc<dyn Reload>;
        Arc::downgrade(&target)
    }
}

impl Reload for TlsServer {
    fn what(&self) -> &'static str {
        "TLS certificates"
    }

    fn files(&self) -> Vec<PathBuf> {
        self.settings.files()
    }

    fn loaded(&self) -> Vec<Option<FileStamp>> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn reload(&self, _cause: Cause) {
        // reload() logs its own outcome; a failure keeps the old certificates.
        let _ = TlsServer::reload(self);
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
