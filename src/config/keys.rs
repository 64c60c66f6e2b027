//! The table of settings that flags, environment variables, `--help` and the settings reference
//! are made from. Nobody writes it: each section declares its fields once with [`settings!`]
//! (type, default, meaning, value name, old name), and the table is the sections' fields, read
//! from the root [`Settings`](super::settings::Settings) down, at compile time.
//!
//! A key is named once, as its TOML path; the rest follows by rule: `limits.account_rps` is the
//! environment variable `CAMS_FLOWS_LIMITS_ACCOUNT_RPS` and the flag `--limits-account-rps`.
//! Keys renamed by the rule keep their old flag and variable as aliases.
//!
//! A declarative macro rather than a derived JSON schema: the table is built by the compiler, so
//! its names are `&'static str` and nothing can fail while `serve` starts, and no schema (its
//! `$ref`s, optional values as `anyOf`, the `boolish` switches) has to be walked to find what a
//! field declares in one line anyway.

use super::settings::Settings;

pub(super) const ENV_PREFIX: &str = "CAMS_FLOWS_";
/// The file itself is not a key of the tree; it is named by flag or variable only.
pub(super) const CONFIG_ENV: &str = "CAMS_FLOWS_CONFIG";
/// The meaning of `--config`, in `--help` and in the settings reference.
pub(super) const CONFIG_HELP: &str = "TOML configuration file";

/// One field of a section, as [`settings!`] declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    /// The TOML path: the one name the flag and variable are derived from. Inside a file-only
    /// map or array, the path of any entry (`limits.tenants."<id>".rps`, `auth.keys[].name`).
    pub name: &'static str,
    pub value_name: &'static str,
    /// The field's doc comment.
    pub help: &'static str,
    /// The flag this key had before the naming rule, without dashes (`account-rps`); its
    /// variable is `CAMS_FLOWS_` and the same words (`CAMS_FLOWS_ACCOUNT_RPS`).
    pub alias: Option<&'static str>,
    /// A bare `--sandbox` means true.
    pub switch: bool,
    /// The default in words, for a key whose default is not a value of its own (an optional key,
    /// or one that follows another); otherwise the default is the section's value.
    pub default: Option<&'static str>,
    /// The standard `ALIBABA_CLOUD_*` variable this key stands in for (and wins over).
    pub stands_in_for: Option<&'static str>,
    /// Set in the file only: a map or an array, or a field of their entries.
    pub file_only: bool,
    pub nested: Nested,
}

/// What a field holds besides a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nested {
    /// A scalar.
    None,
    /// A section (`[limits]`): its own fields, and no key of its own.
    Section(&'static [Key]),
    /// A map or an array of entries (`limits.tenants`, `[[auth.keys]]`): the fields of one entry.
    Entries(&'static [Key]),
}

impl Key {
    /// A scalar setting: a flag and a variable besides its TOML key.
    pub(super) const fn setting(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            value_name: "",
            help,
            alias: None,
            switch: false,
            default: None,
            stands_in_for: None,
            file_only: false,
            nested: Nested::None,
        }
    }

    pub(super) const fn section(name: &'static str, fields: &'static [Key]) -> Self {
        Self {
            nested: Nested::Section(fields),
            ..Self::setting(name, "")
        }
    }

    /// A map or an array: file only, like the fields of its entries ([`Self::entries`]).
    pub(super) const fn file_only(name: &'static str, help: &'static str) -> Self {
        Self {
            file_only: true,
            ..Self::setting(name, help)
        }
    }

    pub(super) const fn value_name(self, value_name: &'static str) -> Self {
        Self { value_name, ..self }
    }

    pub(super) const fn alias(self, alias: &'static str) -> Self {
        Self {
            alias: Some(alias),
            ..self
        }
    }

    pub(super) const fn switch(self, switch: bool) -> Self {
        Self { switch, ..self }
    }

    pub(super) const fn default(self, default: &'static str) -> Self {
        Self {
            default: Some(default),
            ..self
        }
    }

    pub(super) const fn stands_in_for(self, variable: &'static str) -> Self {
        Self {
            stands_in_for: Some(variable),
            ..self
        }
    }

    pub(super) const fn entries(self, fields: &'static [Key]) -> Self {
        Self {
            nested: Nested::Entries(fields),
            ..self
        }
    }

    /// `limits.account_rps` ⇒ `limits-account-rps` (without the leading dashes); lower case,
    /// as flags are (`limits.actions.ListFlow.account_rps` ⇒ `limits-actions-listflow-account-rps`).
    pub(super) fn flag(&self) -> String {
        self.name.replace(['.', '_'], "-").to_ascii_lowercase()
    }

    /// `limits.account_rps` ⇒ `CAMS_FLOWS_LIMITS_ACCOUNT_RPS`.
    pub(super) fn env(&self) -> String {
        env_of(&self.name.replace('.', "_"))
    }

    pub(super) fn alias_env(&self) -> Option<String> {
        self.alias.map(|a| env_of(&a.replace('-', "_")))
    }

    /// The default as `--help` and the settings reference show it: the value in `defaults` (the
    /// serialized [`Settings::default`]) at this key, or the default in words.
    pub(super) fn default_shown(&self, defaults: &serde_json::Value) -> Option<Shown> {
        if let Some(words) = self.default {
            return Some(Shown::Words(words));
        }
        match self
            .name
            .split('.')
            .try_fold(defaults, |value, part| value.get(part))?
        {
            serde_json::Value::String(s) => Some(Shown::Value(s.clone())),
            value => Some(Shown::Value(value.to_string())),
        }
    }
}

/// A default, as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Shown {
    Value(String),
    Words(&'static str),
}

fn env_of(words: &str) -> String {
    format!("{ENV_PREFIX}{}", words.to_ascii_uppercase())
}

/// Every field of the configuration, sections flattened away, in declaration order: the scalar
/// settings and, file only, the maps and arrays with the fields of their entries.
pub(super) const ALL: &[Key] = &flatten::<{ count(Settings::FIELDS) }>(Settings::FIELDS);

/// The settings that have a flag and a variable: every scalar outside a map or an array.
pub(super) const KEYS: &[Key] = &select_settings::<{ count_settings(ALL) }>(ALL);

const fn count(fields: &[Key]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < fields.len() {
        n += match fields[i].nested {
            Nested::None => 1,
            Nested::Section(fields) => count(fields),
            Nested::Entries(fields) => 1 + count(fields),
        };
        i += 1;
    }
    n
}

/// Writes `fields` into `out` from `at`, and returns where it stopped.
const fn fill(fields: &[Key], file_only: bool, out: &mut [Key], mut at: usize) -> usize {
    let mut i = 0;
    while i < fields.len() {
        let mut key = fields[i];
        match key.nested {
            Nested::Section(fields) => at = fill(fields, file_only, out, at),
            Nested::Entries(entry) => {
                key.file_only = true;
                out[at] = key;
                at = fill(entry, true, out, at + 1);
            }
            Nested::None => {
                key.file_only = key.file_only || file_only;
                out[at] = key;
                at += 1;
            }
        }
        i += 1;
    }
    at
}

const fn flatten<const N: usize>(root: &[Key]) -> [Key; N] {
    let mut out = [Key::setting("", ""); N];
    let written = fill(root, false, &mut out, 0);
    assert!(written == N);
    out
}

const fn count_settings(all: &[Key]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < all.len() {
        if !all[i].file_only {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn select_settings<const N: usize>(all: &[Key]) -> [Key; N] {
    let mut out = [Key::setting("", ""); N];
    let mut n = 0;
    let mut i = 0;
    while i < all.len() {
        if !all[i].file_only {
            out[n] = all[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == N);
    out
}

/// A doc comment's lines, joined by the compiler, without the space that starts them.
pub(super) const fn help(doc: &'static str) -> &'static str {
    doc.trim_ascii()
}

/// The key an environment variable sets, and whether it did so under its old name.
pub(super) fn by_env(name: &str) -> Option<(&'static Key, bool)> {
    KEYS.iter().find_map(|k| {
        if k.env() == name {
            Some((k, false))
        } else if k.alias_env().as_deref() == Some(name) {
            Some((k, true))
        } else {
            None
        }
    })
}

/// Every variable name `serve` reads as a setting, for suggestions on a typo.
pub(super) fn env_names() -> impl Iterator<Item = String> {
    KEYS.iter()
        .flat_map(|k| std::iter::once(k.env()).chain(k.alias_env()))
        .chain(std::iter::once(CONFIG_ENV.to_owned()))
}

/// Declares one struct of the written configuration, each field once: its doc comment (its
/// meaning, in `--help` and the settings reference), its kind and marks, serde attributes if
/// any, its type, and (in a `section`) its default. Generates the struct (serde, with
/// `deny_unknown_fields`), its `Default` (a `section`'s only: an `entry` has required fields),
/// and `FIELDS`, its part of the key table.
///
/// ```text
/// settings! {
///     /// `[limits]`: ...
///     section struct LimitsSettings in "limits." {
///         /// The account's CAMS GetFlow quota: ...
///         key(value_name = "N", alias = "account-rps")
///         account_rps: u32 = 5,
///         section sub: SubSettings,
///         file_only(value_name = "TABLE", entries = TenantSettings::FIELDS)
///         tenants: BTreeMap<String, TenantSettings>,
///     }
/// }
/// ```
///
/// `in` is the prefix of the fields' keys (`""` at the root; `"limits.tenants.\"<id>\"."` for
/// an entry of a map). A field is a `key` (a scalar setting), a `section` (a struct of its own,
/// whose fields are keys), or `file_only` (a map or an array of `entry` structs). Their marks
/// are the builder methods of [`Key`]: `value_name`, `alias` (the old flag name), `switch`
/// (a bare flag means true), `default` (the default in words, where it is not a value),
/// `stands_in_for` (a standard variable), `entries` (the fields of a map's or array's entries).
/// A field without `= default` defaults to its type's `Default`.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        section struct $name:ident in $prefix:literal { $($fields:tt)* }
    ) => {
        $crate::config::keys::settings!(@struct [$(#[$meta])*] [#[serde(default)]] $name $prefix { $($fields)* });
        $crate::config::keys::settings!(@default $name { $($fields)* });
    };
    (
        $(#[$meta:meta])*
        entry struct $name:ident in $prefix:literal { $($fields:tt)* }
    ) => {
        $crate::config::keys::settings!(@struct [$(#[$meta])*] [] $name $prefix { $($fields)* });
    };
    (@struct [$($meta:tt)*] [$($container:tt)*] $name:ident $prefix:literal {
        $(
            $(#[doc = $doc:literal])*
            $kind:ident $(( $($mark:ident = $value:expr),* $(,)? ))?
            $(#[serde $serde:tt])*
            $field:ident : $ty:ty $(= $default:expr)?
        ),* $(,)?
    }) => {
        $($meta)*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        $($container)*
        pub(crate) struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde $serde])*
                pub $field: $ty,
            )*
        }

        impl $name {
            /// This struct's part of the key table ([`crate::config::keys`]).
            pub(in crate::config) const FIELDS: &'static [$crate::config::keys::Key] = &[$(
                $crate::config::keys::settings!(
                    @key $kind,
                    concat!($prefix, stringify!($field)),
                    $crate::config::keys::help(concat!("" $(, $doc)*)),
                    $ty
                ) $($(.$mark($value))*)?
            ),*];
        }
    };
    (@default $name:ident {
        $(
            $(#[doc = $doc:literal])*
            $kind:ident $(( $($mark:ident = $value:expr),* $(,)? ))?
            $(#[serde $serde:tt])*
            $field:ident : $ty:ty $(= $default:expr)?
        ),* $(,)?
    }) => {
        impl Default for $name {
            fn default() -> Self {
                Self {
                    $($field: $crate::config::keys::settings!(@value $($default)?),)*
                }
            }
        }
    };
    (@key key, $name:expr, $help:expr, $ty:ty) => {
        $crate::config::keys::Key::setting($name, $help)
    };
    (@key section, $name:expr, $help:expr, $ty:ty) => {
        $crate::config::keys::Key::section($name, <$ty>::FIELDS)
    };
    (@key file_only, $name:expr, $help:expr, $ty:ty) => {
        $crate::config::keys::Key::file_only($name, $help)
    };
    (@value) => {
        Default::default()
    };
    (@value $default:expr) => {
        $default
    };
}
pub(super) use settings;
