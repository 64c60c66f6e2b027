//! Where the configuration comes from, kept so that it can be read again: the flags, the
//! environment as captured at start, and the file they name (`--config`, `CAMS_FLOWS_CONFIG`). A
//! reload reads the file again with the same layering, so flags and environment variables still
//! override it.

use std::{
    path::PathBuf,
    sync::{Mutex, PoisonError},
};

use super::{Config, ConfigError, Environment, ServeArgs};
use crate::reload::{FileStamp, stamps_now};

#[derive(Debug)]
pub struct ConfigSource {
    args: ServeArgs,
    env: Environment,
    /// The file's stamp taken just before it was last read.
    loaded: Mutex<Vec<Option<FileStamp>>>,
}

impl ConfigSource {
    pub fn new(args: ServeArgs, env: Environment) -> Self {
        Self {
            args,
            env,
            loaded: Mutex::new(Vec::new()),
        }
    }

    /// The configuration file, if one is named.
    pub fn file(&self) -> Option<PathBuf> {
        self.args
            .config
            .clone()
            .or_else(|| self.env.config_file().cloned())
    }

    /// The validated configuration, read now.
    pub fn load(&self) -> Result<Config, ConfigError> {
        // Stamped before it is read: a write landing during the read shows as a change later.
        let stamps = stamps_now(&self.files());
        let config = self.args.load(&self.env);
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
        config
    }

    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.file().into_iter().collect()
    }

    /// The file's stamps taken just before the last [`Self::load`].
    pub(crate) fn loaded(&self) -> Vec<Option<FileStamp>> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
