//! What a caller may do besides reading its tenants: the roles of `[[auth.keys]]` and
//! `[[auth.identities]]` entries, and who has them.

use std::collections::HashSet;

/// What a key or identity may do besides reading its tenants, as `roles` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// May call `FlowAdminService` (purge cached answers of the tenants it may read).
    Admin,
}

impl Role {
    /// Every role, by the name the configuration gives it.
    pub const ALL: [(&'static str, Self); 1] = [("admin", Self::Admin)];

    /// The role named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, role)| *role)
    }
}

/// The callers with the `admin` role: keys by name, identities by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admins {
    pub keys: HashSet<String>,
    pub identities: HashSet<String>,
}
