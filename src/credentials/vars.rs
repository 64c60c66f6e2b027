//! The environment the providers read: the standard `ALIBABA_CLOUD_*` variables and `HOME`,
//! captured once, so that tests hand over their own instead of changing the process's.

use std::{collections::BTreeMap, fmt, path::PathBuf};

#[derive(Clone, Default)]
pub struct Vars {
    values: BTreeMap<String, String>,
}

/// Names only: the values include the AccessKey secret.
impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Vars {
    /// The process's `ALIBABA_CLOUD_*` variables and `HOME`.
    pub fn process() -> Self {
        Self::from_pairs(
            std::env::vars()
                .filter(|(name, _)| name.starts_with("ALIBABA_CLOUD_") || name == "HOME"),
        )
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Sets (or replaces) one variable: `[credentials]` settings override the environment this
    /// way.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.values.insert(name.into(), value.into());
    }

    /// The trimmed value, `None` when unset or blank (the SDKs treat both alike).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `true` (any case) switches a feature on, as in the SDKs; anything else leaves it off.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    pub(crate) fn home(&self) -> Option<PathBuf> {
        self.get("HOME").map(PathBuf::from)
    }
}

/// `~/` at the start of a configured path means the home directory, as the SDKs read it.
pub(crate) fn expand_home(path: &str, vars: &Vars) -> PathBuf {
    match (path.strip_prefix("~/"), vars.home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}
