//! The flags of `cams-flows serve`, generated from the key table.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches, value_parser};

use super::{
    keys::{CONFIG_ENV, CONFIG_HELP, KEYS, Key, Shown},
    settings::Settings,
};

/// The flags of `cams-flows serve`, one per key of [`KEYS`] (plus `--config`), with their old
/// names as hidden aliases. Values stay text here: the figment parses them, so that a bad one is
/// reported like a bad file or environment value.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub flags: Vec<FlagValue>,
}

/// One flag given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    pub key: &'static str,
    /// As typed, with its dashes, for error messages.
    pub flag: String,
    pub value: String,
}

const CONFIG_ID: &str = "config";

fn alias_id(alias: &str) -> String {
    format!("old-name:{alias}")
}

impl clap::Args for ServeArgs {
    fn augment_args(mut cmd: Command) -> Command {
        cmd = cmd.arg(
            Arg::new(CONFIG_ID)
                .long("config")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .help(format!(
                    "{CONFIG_HELP}, with the [toml: ...] keys below [env: {CONFIG_ENV}]"
                )),
        );
        let defaults = serde_json::to_value(Settings::default()).unwrap_or_default();
        for key in KEYS {
            let canonical =
                valued(Arg::new(key.name).long(key.flag()), key).help(help(key, &defaults));
            cmd = cmd.arg(canonical);
            if let Some(alias) = key.alias {
                let old = valued(Arg::new(alias_id(alias)).long(alias), key)
                    .hide(true)
                    .conflicts_with(key.name);
                cmd = cmd.arg(old);
            }
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

/// The key's meaning, then where else it is set, its default and its old names.
fn help(key: &Key, defaults: &serde_json::Value) -> String {
    let mut help = key.help.to_owned();
    if let Some(variable) = key.stands_in_for {
        help.push_str(&format!(" [stands in for {variable}]"));
    }
    help.push_str(&format!(" [toml: {}] [env: {}]", key.name, key.env()));
    match key.default_shown(defaults) {
        Some(Shown::Value(value)) => help.push_str(&format!(" [default: {value}]")),
        Some(Shown::Words(words)) => help.push_str(&format!(" [default: {words}]")),
        None => {}
    }
    if let (Some(alias), Some(env)) = (key.alias, key.alias_env()) {
        help.push_str(&format!(" [old names: --{alias}, {env}]"));
    }
    help
}

fn valued(arg: Arg, key: &Key) -> Arg {
    let arg = arg.value_name(key.value_name).action(ArgAction::Set);
    if key.switch {
        arg.num_args(0..=1).default_missing_value("true")
    } else {
        arg
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self {
            config: get::<PathBuf>(matches, CONFIG_ID)?.cloned(),
            flags: Vec::new(),
        };
        for key in KEYS {
            let names = std::iter::once((key.name.to_owned(), key.flag()))
                .chain(key.alias.map(|a| (alias_id(a), a.to_owned())));
            for (id, flag) in names {
                if let Some(value) = get::<String>(matches, &id)? {
                    args.flags.push(FlagValue {
                        key: key.name,
                        flag: format!("--{flag}"),
                        value: value.clone(),
                    });
                }
            }
        }
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// `ArgMatches::get_one` panics on an id it does not know; a command built by something other
/// than `augment_args` gets an error instead.
fn get<'m, T: std::any::Any + Clone + Send + Sync + 'static>(
    matches: &'m ArgMatches,
    id: &str,
) -> Result<Option<&'m T>, clap::Error> {
    matches
        .try_get_one::<T>(id)
        .map_err(|e| clap::Error::raw(clap::error::ErrorKind::InvalidValue, e))
}
