//! The settings reference of docs/configuration.md, made from the key table like `--help`, and
//! the test that keeps the document and the code in step.

use std::{fmt::Write, path::Path};

use crate::config::{
    env::REDIS_PASSWORD_ENV,
    keys::{ALL, CONFIG_ENV, CONFIG_HELP, Key, Shown},
    settings::Settings,
};

const BEGIN: &str = "<!-- BEGIN GENERATED: settings -->";
const END: &str = "<!-- END GENERATED: settings -->";
const UPDATE: &str = "CAMS_FLOWS_UPDATE_DOCS";
const DOCUMENT: &str = "docs/configuration.md";

/// One table of every setting: TOML key, flag, environment variable, default, meaning.
fn settings_table() -> String {
    let defaults = serde_json::to_value(Settings::default()).expect("the defaults serialize");
    let mut table = String::from(
        "| TOML key | flag | environment variable | default | meaning |\n|---|---|---|---|---|\n",
    );
    let mut row = |cells: [String; 5]| {
        let _ = writeln!(table, "| {} |", cells.join(" | "));
    };
    row([
        "—".into(),
        "`--config FILE`".into(),
        format!("`{CONFIG_ENV}`"),
        "none".into(),
        text(CONFIG_HELP),
    ]);
    for key in ALL {
        row(key_row(key, &defaults));
        if key.name == "redis.url" {
            row([
                "—".into(),
                "—".into(),
                format!("`{REDIS_PASSWORD_ENV}`"),
                "none".into(),
                "The Redis password, when the URL carries none; environment only, never logged"
                    .into(),
            ]);
        }
    }
    table
}

fn key_row(key: &Key, defaults: &serde_json::Value) -> [String; 5] {
    let (flag, env) = if key.file_only {
        ("file only".to_owned(), "file only".to_owned())
    } else {
        let value = if key.switch {
            format!("[={}]", key.value_name)
        } else {
            format!(" {}", key.value_name)
        };
        let mut flag = format!("`--{}{}`", key.flag(), value.replace('|', "\\|"));
        let mut env = format!("`{}`", key.env());
        if let (Some(alias), Some(alias_env)) = (key.alias, key.alias_env()) {
            let _ = write!(flag, " (old: `--{alias}`)");
            let _ = write!(env, " (old: `{alias_env}`)");
        }
        (flag, env)
    };
    let default = match key.default_shown(defaults) {
        Some(Shown::Value(value)) => format!("`{value}`"),
        Some(Shown::Words(words)) => text(words),
        None => "—".to_owned(),
    };
    let mut meaning = text(key.help);
    if let Some(variable) = key.stands_in_for {
        let _ = write!(meaning, ". Stands in for `{variable}`");
    }
    [format!("`{}`", key.name), flag, env, default, meaning]
}

/// Plain text in a table cell.
fn text(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('*', "\\*")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn every_setting_says_what_it_means_and_what_it_takes() {
    for key in ALL {
        assert!(!key.help.is_empty(), "{}: no doc comment", key.name);
        assert!(!key.value_name.is_empty(), "{}: no value name", key.name);
    }
}

#[test]
fn the_settings_reference_is_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT);
    let document = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let (before, rest) = document
        .split_once(&format!("{BEGIN}\n"))
        .unwrap_or_else(|| panic!("{DOCUMENT} has no line {BEGIN}"));
    let (written, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{DOCUMENT} has no {END} after {BEGIN}"));
    let generated = format!("\n{}\n", settings_table());
    if written == generated {
        return;
    }
    if std::env::var(UPDATE).as_deref() == Ok("1") {
        std::fs::write(&path, format!("{before}{BEGIN}\n{generated}{END}{after}"))
            .expect("rewrite docs/configuration.md");
        return;
    }
    let differs = written
        .lines()
        .zip(generated.lines())
        .find(|(w, g)| w != g)
        .map_or_else(
            || "one has more lines than the other".to_owned(),
            |(w, g)| format!("first difference:\n  written:   {w}\n  generated: {g}"),
        );
    panic!(
        "the settings reference in {DOCUMENT} is not the code's ({differs}).\nRegenerate it with \
         `{UPDATE}=1 cargo test --lib config::`"
    );
}

/// The example file of the document is one an operator may copy: it loads, and says what it
/// seems to say.
#[test]
fn the_example_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DOCUMENT);
    let document = std::fs::read_to_string(&path).expect("docs/configuration.md");
    let example = document
        .split_once("## An example file")
        .and_then(|(_, rest)| rest.split_once("```toml\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(toml, _)| toml)
        .unwrap_or_else(|| panic!("{DOCUMENT} has no TOML block under \"An example file\""));
    let config = super::resolve_file(example)
        .unwrap_or_else(|e| panic!("the example file of {DOCUMENT} does not load: {e}"));
    // Values that differ from the defaults: the example's sections are read, not skipped.
    assert_eq!(config.limits.tenant.rps, 2.0);
    assert!(
        config
            .limits
            .tenants
            .keys()
            .any(|tenant| tenant.as_str() == "cams-kei1")
    );
}
