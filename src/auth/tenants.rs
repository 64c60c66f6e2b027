//! Which tenants a caller may read: exact ids, `prefix*` patterns, or `*` for all.

use crate::domain::{IdError, TenantId};

/// A tenant pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?}: `*` may only end a pattern")]
    MisplacedWildcard(String),
    #[error("{pattern:?}: {problem}")]
    BadId {
        pattern: String,
        #[source]
        problem: IdError,
    },
}

/// The tenants one caller may query: exact ids, `prefix*` patterns, or `*` for all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSet {
    exact: Vec<String>,
    prefixes: Vec<String>,
    all: bool,
}

impl TenantSet {
    pub fn parse(patterns: &[String]) -> Result<Self, PatternError> {
        let mut set = Self::default();
        for p in patterns {
            if p == "*" {
                set.all = true;
            } else if let Some(prefix) = p.strip_suffix('*') {
                if prefix.contains('*') {
                    return Err(PatternError::MisplacedWildcard(p.clone()));
                }
                set.prefixes.push(prefix.to_owned());
            } else if p.contains('*') {
                return Err(PatternError::MisplacedWildcard(p.clone()));
            } else {
                TenantId::parse(p.as_str()).map_err(|problem| PatternError::BadId {
                    pattern: p.clone(),
                    problem,
                })?;
                set.exact.push(p.clone());
            }
        }
        Ok(set)
    }

    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    pub fn allows(&self, tenant: &TenantId) -> bool {
        let t = tenant.as_str();
        self.all
            || self.exact.iter().any(|e| e == t)
            || self.prefixes.iter().any(|p| t.starts_with(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(p: &[&str]) -> TenantSet {
        TenantSet::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid")
    }

    #[test]
    fn tenant_patterns() {
        let set = tenants(&["cams-a", "team-*", ""]);
        let t = |s: &str| TenantId::parse(s).expect("id");
        assert!(set.allows(&t("cams-a")));
        assert!(!set.allows(&t("cams-ab")));
        assert!(set.allows(&t("team-x")) && set.allows(&t("team-")));
        assert!(set.allows(&t("")));
        assert!(!set.allows(&t("other")));
        assert!(tenants(&["*"]).allows(&t("anything")));
        assert!(!TenantSet::default().allows(&t("")));
        assert!(TenantSet::parse(&["a*b".into()]).is_err());
        assert!(TenantSet::parse(&["**".into()]).is_err());
    }
}
