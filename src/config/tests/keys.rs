//! The key table against the serde tree, the old names against the table, the defaults against
//! `Config::new`.

use std::{cell::RefCell, collections::BTreeSet};

use serde::{
    Deserialize,
    de::{self, IntoDeserializer, Visitor, value::Error},
};

use super::args;
use crate::config::{
    Config,
    keys::{self, KEYS},
    sections,
    settings::Settings,
};

#[test]
fn the_key_table_and_the_settings_tree_agree() {
    let found = RefCell::new(Found::default());
    Settings::deserialize(Probe {
        path: String::new(),
        found: &found,
    })
    .expect("the probe walks the whole tree");
    let found = found.into_inner();
    let table: BTreeSet<String> = KEYS.iter().map(|k| k.name.to_owned()).collect();
    assert_eq!(
        table, found.scalars,
        "every scalar of the tree, and only those"
    );
    let file_only: BTreeSet<String> = ["auth.identities", "auth.keys", "limits.tenants"]
        .map(String::from)
        .into();
    assert_eq!(found.compounds, file_only);
}

#[test]
fn flag_and_variable_names_are_unique() {
    let mut flags = BTreeSet::from(["config".to_owned()]);
    let mut vars = BTreeSet::from([keys::CONFIG_ENV.to_owned()]);
    for key in KEYS {
        assert!(flags.insert(key.flag()), "{}", key.flag());
        assert!(vars.insert(key.env()), "{}", key.env());
        if let (Some(alias), Some(env)) = (key.alias, key.alias_env()) {
            assert!(flags.insert(alias.to_owned()), "{alias}");
            assert!(vars.insert(env.clone()), "{env}");
        }
    }
}

/// Every flag `serve` had before the naming rule, with the key it set; its variable was
/// `CAMS_FLOWS_` and the flag's words.
const OLD_FLAGS: &[(&str, &str)] = &[
    ("listen", "listen"),
    ("endpoint", "endpoint"),
    ("log-format", "log_format"),
    ("sandbox", "sandbox"),
    ("drain-timeout-ms", "drain_timeout_ms"),
    ("call-timeout-ms", "call_timeout_ms"),
    ("upstream-connect-timeout-ms", "upstream.connect_timeout_ms"),
    ("upstream-request-timeout-ms", "upstream.request_timeout_ms"),
    ("upstream-max-body-bytes", "upstream.max_body_bytes"),
    ("account-rps", "limits.account_rps"),
    ("tenant-rps", "limits.tenant_rps"),
    ("tenant-burst", "limits.tenant_burst"),
    ("max-wait-ms", "limits.max_wait_ms"),
    ("max-queue", "limits.max_queue"),
    ("cache-ttl-ms", "cache.ttl_ms"),
    ("cache-max-entries", "cache.max_entries"),
    ("stale-if-error-ms", "cache.stale_if_error_ms"),
    ("retry-max-attempts", "retry.max_attempts"),
    ("retry-budget-ratio", "retry.budget_ratio"),
    ("max-in-flight", "server.max_in_flight"),
    ("max-concurrent-streams", "server.max_concurrent_streams"),
    ("auth-mode", "auth.mode"),
    ("tls-cert-file", "tls.cert_file"),
    ("tls-key-file", "tls.key_file"),
    ("tls-client-ca-file", "tls.client_ca_file"),
];

#[test]
fn every_old_flag_and_variable_still_sets_its_key() {
    for (flag, key) in OLD_FLAGS {
        let parsed = args(&[&format!("--{flag}"), "1"]);
        assert_eq!(parsed.flags.len(), 1, "--{flag}");
        assert_eq!(parsed.flags[0].key, *key, "--{flag}");
        assert_eq!(parsed.flags[0].flag, format!("--{flag}"));
        let var = format!("CAMS_FLOWS_{}", flag.replace('-', "_").to_ascii_uppercase());
        assert_eq!(keys::by_env(&var).map(|(k, _)| k.name), Some(*key), "{var}");
    }
    assert!(args(&["--config", "x.toml"]).config.is_some());
}

#[test]
fn the_defaults_are_config_new() {
    let settings = Settings::default();
    let mut defaults = settings.clone();
    defaults.sandbox = true;
    let c = sections::config(&defaults).expect("the defaults are valid");
    let new = Config::new(c.listen, c.upstream.endpoint.clone());
    assert_eq!(
        (c.drain_timeout, c.call_timeout),
        (new.drain_timeout, new.call_timeout)
    );
    assert_eq!(
        (
            c.upstream.connect_timeout,
            c.upstream.request_timeout,
            c.upstream.max_body_bytes
        ),
        (
            new.upstream.connect_timeout,
            new.upstream.request_timeout,
            new.upstream.max_body_bytes
        )
    );
    assert_eq!(
        (c.max_in_flight, c.max_concurrent_streams, c.log_format),
        (
            new.max_in_flight,
            new.max_concurrent_streams,
            new.log_format
        )
    );
    assert_eq!(c.listen.to_string(), settings.listen);
}

// A deserializer that fills in nothing but records where the tree's scalars and its maps or
// lists are, from the field lists serde generates: the tree as the compiler sees it.

#[derive(Default)]
struct Found {
    scalars: BTreeSet<String>,
    compounds: BTreeSet<String>,
}

struct Probe<'a> {
    path: String,
    found: &'a RefCell<Found>,
}

impl Probe<'_> {
    fn scalar(&self) {
        self.found.borrow_mut().scalars.insert(self.path.clone());
    }

    fn compound(&self) {
        self.found.borrow_mut().compounds.insert(self.path.clone());
    }
}

macro_rules! scalar {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.scalar();
            visitor.$visit($value)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: a type the probe does not know",
            self.path
        )))
    }

    scalar! {
        deserialize_bool => visit_bool(false),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.scalar();
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(first))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            fields: fields.iter(),
            current: "",
            parent: &self,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.compound();
        visitor.visit_map(Empty)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.compound();
        visitor.visit_seq(Empty)
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct
        identifier ignored_any
    }
}

struct Fields<'p, 'a> {
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
    parent: &'p Probe<'a>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        seed.deserialize(IntoDeserializer::<Error>::into_deserializer(*field))
            .map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let path = match self.parent.path.as_str() {
            "" => self.current.to_owned(),
            parent => format!("{parent}.{}", self.current),
        };
        seed.deserialize(Probe {
            path,
            found: self.parent.found,
        })
    }
}

struct Empty;

impl<'de> de::MapAccess<'de> for Empty {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        _: K,
    ) -> Result<Option<K::Value>, Error> {
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, Error> {
        Err(de::Error::custom("an empty map has no values"))
    }
}

impl<'de> de::SeqAccess<'de> for Empty {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        _: T,
    ) -> Result<Option<T::Value>, Error> {
        Ok(None)
    }
}
