//! Loads go through the real clap command and the real loader; the environment is a list, so
//! no test touches the process's own.

mod callers;
mod credentials;
mod defaults;
mod file;
mod keys;
mod layers;
mod redis;
mod reference;

use std::ffi::OsString;

use clap::{Args, FromArgMatches};

use super::{Config, ConfigError, Environment, ServeArgs};

pub(super) fn args(argv: &[&str]) -> ServeArgs {
    let matches = ServeArgs::augment_args(clap::Command::new("serve"))
        .try_get_matches_from(std::iter::once("serve").chain(argv.iter().copied()))
        .expect("flags parse");
    ServeArgs::from_arg_matches(&matches).expect("flags")
}

pub(super) fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::capture(
        vars.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    )
}

pub(super) fn load(argv: &[&str], vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    args(argv).load(&env(vars))
}

/// A TOML file that lives as long as the returned path.
pub(super) fn toml_file(toml: &str) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), toml).expect("write");
    file.into_temp_path()
}

/// `toml` as the file named by `--config`, with more flags and an environment.
pub(super) fn load_with_file(
    toml: &str,
    argv: &[&str],
    vars: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let path = toml_file(toml);
    let path = path.to_str().expect("utf-8 temp path");
    let argv: Vec<&str> = ["--config", path].iter().chain(argv).copied().collect();
    load(&argv, vars)
}

/// `toml` in the sandbox, which needs no auth mode.
pub(super) fn resolve_file(toml: &str) -> Result<Config, ConfigError> {
    load_with_file(toml, &["--sandbox"], &[])
}
