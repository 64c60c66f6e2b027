//! The documents against the code, so that they cannot drift apart unnoticed: the module table of
//! `docs/development.md` against `src/lib.rs` and the modules' users, the metric table of
//! `docs/observability.md` against the families a gateway exports on `/metrics`, and every
//! relative link of the Markdown files against the files and headings it points to.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::Duration,
};

use cams_flows::{credentials::RefreshPolicy, store::RedisConfig};

use crate::support::{TestApp, redis::RedisServer, wait};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The lines of a Markdown text outside fenced code blocks, with their line numbers.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push((n + 1, line));
        }
    }
    lines
}

/// The cells of a table row, `\|` kept as a `|` inside its cell.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    let mut cells = vec![String::new()];
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                chars.next();
                cells.last_mut().expect("a cell").push('|');
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("a cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The body rows of the one table in `doc` whose header is `header`.
fn table(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines = prose(doc);
    let starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, l))| l.starts_with('|') && cells(l) == header)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), 1, "one table with the header {header:?}");
    lines[starts[0] + 2..]
        .iter()
        .take_while(|(_, l)| l.starts_with('|'))
        .map(|(_, l)| cells(l))
        .collect()
}

/// What is written between backticks in a cell.
fn code_spans(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// The modules declared at the top level of `src/lib.rs`, with their visibility as written.
fn declared_modules(lib: &str) -> BTreeMap<String, String> {
    let mut modules = BTreeMap::new();
    for line in lib.lines() {
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let (visibility, rest) = if let Some(rest) = line.strip_prefix("pub(crate) mod ") {
            ("pub(crate)", rest)
        } else if let Some(rest) = line.strip_prefix("pub mod ") {
            ("pub", rest)
        } else if let Some(rest) = line.strip_prefix("mod ") {
            ("private", rest)
        } else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        modules.insert(name, visibility.to_owned());
    }
    modules
}

/// Where each kind of user of the library lives, by the name the module table gives it.
const USERS: [(&str, &[&str]); 4] = [
    ("binaries", &["src/main.rs", "bench/src"]),
    ("benches", &["benches"]),
    ("fuzz targets", &["fuzz/fuzz_targets"]),
    ("tests", &["tests"]),
];

fn rust_files(path: &Path, found: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "rs") {
            found.push(path.to_owned());
        }
        return;
    }
    let entries =
        std::fs::read_dir(path).unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
    for entry in entries {
        rust_files(&entry.expect("a directory entry").path(), found);
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `source` names the library's module `module`: `cams_flows::module…`, or `module` as
/// an item of a `use cams_flows::{…}` group.
fn names_module(source: &str, module: &str) -> bool {
    let path = format!("cams_flows::{module}");
    let by_path = source.match_indices(&path).any(|(at, _)| {
        !source[at + path.len()..]
            .chars()
            .next()
            .is_some_and(is_ident)
    });
    by_path
        || source
            .match_indices("cams_flows::{")
            .any(|(at, open)| group_items(&source[at + open.len()..]).contains(&module))
}

/// The first identifier of each top-level item of a `{…}` group whose text starts after `{`.
fn group_items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(|item| {
            let item = item.trim_start();
            let end = item.find(|c: char| !is_ident(c)).unwrap_or(item.len());
            &item[..end]
        })
        .collect()
}

/// `docs/development.md` lists every top-level module of `src/lib.rs` with its visibility, and
/// each `pub` one with who outside the library uses it: a module made `pub` or `pub(crate)`,
/// added, removed or no longer used where the table says fails here.
#[test]
fn the_module_table_matches_src_lib_rs() {
    let declared = declared_modules(&read(&root().join("src/lib.rs")));
    assert!(
        declared.len() > 10,
        "modules found in src/lib.rs: {declared:?}"
    );
    let doc = read(&root().join("docs/development.md"));
    let rows = table(&doc, &["module", "visibility", "used by"]);
    let mut documented = BTreeMap::new();
    let mut users_of = BTreeMap::new();
    for row in &rows {
        let [module, visibility] = [&row[0], &row[1]].map(|cell| match code_spans(cell)[..] {
            [one] => one.to_owned(),
            _ => panic!("one `name` per cell in {row:?}"),
        });
        documented.insert(module.clone(), visibility);
        users_of.insert(module, row[2].clone());
    }
    assert_eq!(
        documented, declared,
        "docs/development.md's module table (left) against src/lib.rs (right)"
    );

    let mut sources: BTreeMap<&str, Vec<(PathBuf, String)>> = BTreeMap::new();
    for (kind, paths) in USERS {
        let mut files = Vec::new();
        for path in paths {
            rust_files(&root().join(path), &mut files);
        }
        assert!(!files.is_empty(), "no Rust files for the {kind}");
        let files = files.into_iter().map(|f| {
            let text = read(&f);
            (f, text)
        });
        sources.insert(kind, files.collect());
    }
    for (module, users) in &users_of {
        if documented[module] != "pub" {
            assert_eq!(users, "—", "{module} is not pub: nothing outside uses it");
            continue;
        }
        let users: Vec<&str> = users.split(',').map(str::trim).collect();
        assert!(
            !users.is_empty() && users.iter().all(|u| !u.is_empty()),
            "{module} is pub: the table must say who uses it"
        );
        for user in users {
            let files = sources.get(user).unwrap_or_else(|| {
                panic!(
                    "{module}: unknown user {user:?}; one of {:?}",
                    USERS.map(|u| u.0)
                )
            });
            assert!(
                files.iter().any(|(_, text)| names_module(text, module)),
                "the table says the {user} use {module}, but none of their files names it"
            );
        }
    }
}

#[test]
fn module_users_are_found_in_paths_and_use_groups() {
    let source = "use cams_flows::{\n    domain::TenantId,\n    limits::{Quota, x},\n    pb,\n};\n\
                  let c = cams_flows::clock::system();";
    for module in ["domain", "limits", "pb", "clock"] {
        assert!(names_module(source, module), "{module}");
    }
    for module in ["dom", "x", "Quota", "system", "cams"] {
        assert!(!names_module(source, module), "{module}");
    }
}

/// The metric families `docs/observability.md` documents, named as a query names them.
fn documented_metrics() -> BTreeSet<String> {
    let doc = read(&root().join("docs/observability.md"));
    let rows = table(&doc, &["metric", "type", "labels", "what"]);
    let mut names = BTreeSet::new();
    for row in rows {
        let spans = code_spans(&row[0]);
        assert!(!spans.is_empty(), "a metric name in {row:?}");
        names.extend(spans.into_iter().map(str::to_owned));
    }
    names
}

/// The families in a scrape, named as a query names them: a counter with its `_total`.
fn exported_metrics(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(match kind.trim() {
                "counter" if !name.ends_with("_total") => format!("{name}_total"),
                _ => name.to_owned(),
            })
        })
        .collect()
}

/// Every family the gateway exports is in the metric table of `docs/observability.md`, and
/// every family there is exported. The gateway runs with everything that adds a family: a
/// Redis, temporary credentials, and a call answered by CAMS (the clock skew).
#[tokio::test]
async fn the_metric_table_lists_exactly_the_exported_families() {
    let documented = documented_metrics();
    assert!(documented.len() > 20, "documented: {documented:?}");

    let redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::builder()
        .admin()
        .sts(Duration::from_secs(900), RefreshPolicy::default())
        .config(move |c| {
            c.cache.ttl = Duration::from_secs(60);
            // The cache's own Redis: the quota stays in this process, so no call waits out the
            // shared quota's quiet period after a fresh Redis.
            c.cache_redis = Some(RedisConfig {
                timeout: Duration::from_millis(500),
                account: None,
                ..cams_flows::store::RedisConfig::standalone(url, "docs")
            });
        })
        .spawn()
        .await;
    app.call("100000000000002", "t-docs")
        .await
        .expect("a call answered by CAMS");

    // Some families are gauges read at scrape time, absent until their value exists (Redis's
    // first answer, the credentials' first expiry reading); wait for them, with a bound.
    let exported = wait::until(
        Duration::from_secs(15),
        "every documented metric family on /metrics",
        || async { exported_metrics(&app.scrape().await) },
        |exported| documented.is_subset(exported),
    )
    .await;
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "exported on /metrics but not in docs/observability.md's metric table: {undocumented:?}"
    );
    drop(redis);
}

/// The Markdown files whose links are checked: the README, every document in `docs/`, and the
/// other READMEs and BENCHMARKS.md that link into them.
fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "README.md",
        "BENCHMARKS.md",
        "examples/README.md",
        "examples/python/README.md",
        "examples/node/README.md",
        "fuzz/README.md",
    ]
    .iter()
    .map(|f| root().join(f))
    .collect();
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/");
    let mut in_docs: Vec<PathBuf> = docs
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    in_docs.sort();
    assert!(in_docs.len() >= 10, "documents in docs/: {in_docs:?}");
    files.extend(in_docs);
    files
}

/// A line without its code spans, which may hold `[x](y)` that is not a link.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The targets of the inline links (and images) of a Markdown text, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((n, after[..end].trim().to_owned()));
            rest = &after[end..];
        }
    }
    found
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text's headings (a repeated heading gets `-1`, `-2`, …).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    let text = "# Title\n## The `[credentials]` section\n```\n# not a heading\n```\n## Dup\n## Dup\n\
                ## Caching, coalescing and retries\n#no-space\n";
    let expected = [
        "title",
        "the-credentials-section",
        "dup",
        "dup-1",
        "caching-coalescing-and-retries",
    ];
    assert_eq!(anchors(text), expected.map(String::from).into());
    let links = links("[a](b.md#c) and `[not](a-link)` and ![i](img.png)\n```\n[x](y)\n```\n");
    assert_eq!(
        links,
        vec![(1, "b.md#c".to_owned()), (1, "img.png".to_owned())]
    );
}

/// Every relative link of the README, the documents in `docs/` and the other READMEs points to a
/// file that exists, and every `#anchor` into a Markdown file to one of its headings.
#[test]
fn every_relative_link_points_to_a_file_and_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = file.parent().expect("a file's directory");
        let shown = file.strip_prefix(root()).unwrap_or(&file).display();
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = match target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (target.as_str(), None),
            };
            let resolved = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            if !resolved.exists() {
                broken.push(format!("{shown}:{line}: {target}: no such file"));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if resolved.extension().is_none_or(|e| e != "md") {
                broken.push(format!(
                    "{shown}:{line}: {target}: an anchor into a non-Markdown file"
                ));
            } else if !anchors(&read(&resolved)).contains(anchor) {
                broken.push(format!("{shown}:{line}: {target}: no such heading"));
            }
        }
    }
    assert!(checked > 50, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Longest source file docs/development.md allows, tests aside.
const MAX_SOURCE_LINES: usize = 500;

/// Whether a file under `src/` holds tests only: `<file>_tests.rs`, a folder's `tests.rs`, or
/// anything under a `tests/` folder.
fn holds_tests_only(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.components().any(|c| c.as_os_str() == "tests")
}

/// "Where tests go" in docs/development.md: no source file over 500 lines, tests aside, so a
/// file's unit tests move beside it when they would push it over; and each `<file>_tests.rs`
/// is the tests of the `<file>.rs` beside it, declared there.
#[test]
fn source_files_follow_the_test_placement_convention() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "src/ read: {} files", files.len());
    let mut broken = Vec::new();
    for path in &files {
        let shown = path
            .strip_prefix(root())
            .unwrap_or(path)
            .display()
            .to_string();
        let source = read(path);
        if !holds_tests_only(path) && source.lines().count() > MAX_SOURCE_LINES {
            broken.push(format!(
                "{shown}: {} lines (at most {MAX_SOURCE_LINES}; move its unit tests to a \
                 _tests.rs file beside it, or split it)",
                source.lines().count()
            ));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix("_tests.rs") {
            let owner = path.with_file_name(format!("{stem}.rs"));
            let declared = format!("#[path = \"{name}\"]");
            if !owner.exists() || !read(&owner).contains(&declared) {
                broken.push(format!(
                    "{shown}: not declared as the tests of {stem}.rs beside it ({declared})"
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
