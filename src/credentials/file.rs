//! The credentials file: `ALIBABA_CLOUD_CREDENTIALS_FILE`, else `~/.alibabacloud/credentials.ini`
//! (Python's name) or `~/.alibabacloud/credentials` (Go's). An INI file; the section is
//! `ALIBABA_CLOUD_PROFILE`, else `default`; `type` is `access_key`, `sts`, `ecs_ram_role` or
//! `ram_role_arn`, and `enable = false` switches a section off.

use std::{collections::BTreeMap, path::Path};

use secrecy::SecretString;

use super::{
    CredentialSource, Credentials, CredentialsError,
    plan::{Context, Plan, Probe, RoleToAssume},
    profile::ENV_PROFILE,
    vars::expand_home,
};

pub(crate) const ENV_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";

type Section = BTreeMap<String, String>;

pub(crate) fn probe(cx: &Context) -> Result<Probe, CredentialsError> {
    let explicit = cx.vars.get(ENV_FILE);
    let candidates = match (explicit, cx.vars.home()) {
        (Some(path), _) => vec![expand_home(path, &cx.vars)],
        (None, Some(home)) => {
            let dir = home.join(".alibabacloud");
            vec![dir.join("credentials.ini"), dir.join("credentials")]
        }
        (None, None) => return Ok(Probe::Skip("HOME not set".to_owned())),
    };
    let mut found = None;
    for path in &candidates {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                found = Some((path, text));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {}
            Err(source) => {
                return Err(CredentialsError::Read {
                    what: "the credentials file",
                    path: path.clone(),
                    source,
                });
            }
        }
    }
    let Some((path, text)) = found else {
        let names: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Ok(Probe::Skip(format!("{} do not exist", names.join(" and "))));
    };
    let sections = parse(path, &text)?;
    let name = cx.vars.get(ENV_PROFILE).unwrap_or("default");
    let Some(section) = sections.get(name) else {
        return Ok(Probe::Skip(format!(
            "no [{name}] section in {}",
            path.display()
        )));
    };
    if section
        .get("enable")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return Ok(Probe::Skip(format!(
            "[{name}] in {} has enable = false",
            path.display()
        )));
    }
    let plan = plan(cx, path, name, section)?;
    Ok(Probe::Use {
        plan,
        tentative: false,
    })
}

fn plan(cx: &Context, path: &Path, name: &str, s: &Section) -> Result<Plan, CredentialsError> {
    let bad = |problem: String| CredentialsError::BadFile {
        path: path.to_owned(),
        problem: format!("[{name}]: {problem}"),
    };
    // `key =` with nothing after it is unset, as the SDKs read it.
    let optional = |key: &str| s.get(key).map(String::as_str).filter(|v| !v.is_empty());
    let kind = optional("type").unwrap_or_default();
    let need = |key: &str| optional(key).ok_or_else(|| bad(format!("type {kind} needs {key}")));
    let access_key = |token: Option<&str>| -> Result<Credentials, CredentialsError> {
        Ok(Credentials::new(
            need("access_key_id")?,
            SecretString::from(need("access_key_secret")?.to_owned()),
            token.map(|t| SecretString::from(t.to_owned())),
        )
        .with_source(CredentialSource::CredentialsFile))
    };
    match kind {
        "access_key" => Ok(Plan::Static(access_key(None)?)),
        "sts" | "sts_token" => Ok(Plan::Static(access_key(Some(need("security_token")?))?)),
        "ecs_ram_role" => Ok(Plan::Fetch(Box::new(cx.ecs(optional("role_name"))?))),
        "ram_role_arn" => cx.assume_role(
            Plan::Static(access_key(None)?),
            &RoleToAssume {
                role_arn: need("role_arn")?,
                session_name: optional("role_session_name"),
                policy: optional("policy"),
                external_id: optional("external_id"),
                ..RoleToAssume::default()
            },
        ),
        "" => Err(bad("no type".to_owned())),
        other => Err(bad(format!(
            "type {other:?} is not supported (access_key, sts, ecs_ram_role and ram_role_arn are)"
        ))),
    }
}

/// `[section]` headers, `key = value` lines, `#` and `;` comments; values lose surrounding
/// quotes. A line that is none of these is an error naming its number (never its text, which
/// may hold a secret).
fn parse(path: &Path, text: &str) -> Result<BTreeMap<String, Section>, CredentialsError> {
    let mut sections: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_owned();
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let bad = |problem: &str| CredentialsError::BadFile {
            path: path.to_owned(),
            problem: format!("line {}: {problem}", i + 1),
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad("neither a [section] nor key = value"))?;
        let section = current
            .as_ref()
            .and_then(|c| sections.get_mut(c))
            .ok_or_else(|| bad("a key before any [section]"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        section.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_parses_and_errors_name_the_line_not_the_text() {
        let text = "# comment\n[default]\ntype = access_key\naccess_key_id = \"id\"\n\n; more\n[other]\nenable=false\n";
        let s = parse(Path::new("f"), text).expect("valid");
        assert_eq!(s["default"]["access_key_id"], "id");
        assert_eq!(s["other"]["enable"], "false");
        let err = parse(Path::new("f"), "[a]\nsecret-without-equals\n").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "f: line 2: neither a [section] nor key = value"
        );
        let err = parse(Path::new("f"), "k = v\n").expect_err("bad");
        assert!(err.to_string().contains("before any [section]"), "{err}");
    }
}
