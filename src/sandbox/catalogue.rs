//! ListFlow: a catalogue of flows per space, its `FlowName` filter and its `Page`.
//!
//! | `CustSpaceId` | the space lists |
//! |---|---|
//! | absent, empty or any ordinary name | the documented example and the other sample flows, in that fixed order (6 flows) |
//! | `sim:catalogue:<n>[:<tag>]`, `n` from 0 to 10000 | exactly `n` generated flows: `sim:ok:catalogue-<i>` named `catalogue_flow_<i>`, [`CUSTOMER_SUPPORT`, `OTHER`], for `i` from 1 to `n` in that order; a larger or unreadable `n` is 400 `InvalidParameter` |
//! | another `sim:` id of the FlowId table | that fault (`sim:error:<Code>`, `sim:hang`, `sim:slow:<ms>`, `sim:flaky:<n>` …, counted per space), else the samples |
//!
//! CAMS documents neither how `FlowName` matches nor the largest page, so these are the
//! simulation's choices: `FlowName` keeps the flows whose name contains it (case-sensitive
//! substring; absent or empty keeps all), and `Page` is `{"Index":i,"Size":s}` with `i` from 1
//! and `s` from 1 to [`MAX_PAGE_SIZE`], each defaulting (absent or null) to 1 and
//! [`DEFAULT_PAGE_SIZE`]. The filter applies before paging; a page past the end is an empty array.

use std::time::Duration;

use serde_json::Value;

use super::action::Action;
use super::envelope::{ErrorReply, Outcome};
use super::flows::{self, Asked, Plan, Target};
use super::samples::{self, Row};

pub(super) const DEFAULT_PAGE_SIZE: u32 = 20;
pub(super) const MAX_PAGE_SIZE: u32 = 100;
/// The largest catalogue space; its answers are generated on the fly, page by page.
pub(super) const MAX_CATALOGUE: u64 = 10_000;
const CATALOGUE_SPACE_PREFIX: &str = "sim:catalogue:";
/// `Index` is an int32 in CAMS's API.
const MAX_PAGE_INDEX: u64 = i32::MAX as u64;

/// ListFlow's page: `index` from 1, `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Page {
    pub index: u32,
    pub size: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            index: 1,
            size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// Lists the space's catalogue, filtered then paged. Parameters are checked before the space's
/// faults apply, as CAMS validates a request before serving it.
pub(super) fn plan(asked: &Asked<'_>, nth: u64) -> Plan {
    let page = match parse_page(asked.page) {
        Ok(page) => page,
        Err(reply) => return Plan::now(Outcome::Error(reply)),
    };
    let filter = asked.flow_name.unwrap_or_default();
    let space = asked.space.unwrap_or_default();
    if space.starts_with(CATALOGUE_SPACE_PREFIX) {
        let outcome = match flows::number_arg(space, CATALOGUE_SPACE_PREFIX)
            .filter(|n| *n <= MAX_CATALOGUE)
            .and_then(|n| u32::try_from(n).ok())
        {
            Some(n) => list((1..=n).map(samples::catalogue_row), filter, page),
            None => Outcome::Error(ErrorReply::bad_request(
                "InvalidParameter",
                format!(
                    "The specified parameter \"CustSpaceId\" is not valid: a simulated catalogue \
                     is {CATALOGUE_SPACE_PREFIX}<n>[:<tag>] with n from 0 to {MAX_CATALOGUE}."
                ),
            )),
        };
        return Plan::now(outcome);
    }
    let mut delay = Duration::ZERO;
    if space.starts_with("sim:") {
        let (wait, target) = flows::resolve(space, nth, Action::ListFlow);
        if let Target::Fixed(outcome) = target {
            return Plan {
                delay: wait,
                outcome,
            };
        }
        delay = wait;
    }
    Plan {
        delay,
        outcome: list(samples::sample_rows(), filter, page),
    }
}

fn list(rows: impl Iterator<Item = Row>, filter: &str, page: Page) -> Outcome {
    let size = usize::try_from(page.size).unwrap_or(usize::MAX);
    let skip = usize::try_from(page.index - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(size);
    let rows: Vec<Value> = rows
        .filter(|row| row.name.contains(filter))
        .skip(skip)
        .take(size)
        .map(|row| row.to_json())
        .collect();
    samples::success(Value::Array(rows))
}

/// `Page` as the SDK sends it: one compact JSON object (`{"Index":1,"Size":20}`).
pub(super) fn parse_page(raw: Option<&str>) -> Result<Page, ErrorReply> {
    let Some(raw) = raw else {
        return Ok(Page::default());
    };
    let invalid = |why: &str| {
        ErrorReply::bad_request(
            "InvalidParameter",
            format!("The specified parameter \"Page\" is not valid: {why}."),
        )
    };
    let value: Value = serde_json::from_str(raw).map_err(|_| invalid("it is not JSON"))?;
    let Value::Object(fields) = value else {
        return Err(invalid("it is not a JSON object"));
    };
    let field = |name: &str, default: u32, max: u64| match fields.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=max).contains(n))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(&format!("{name} must be an integer from 1 to {max}"))),
    };
    Ok(Page {
        index: field("Index", 1, MAX_PAGE_INDEX)?,
        size: field("Size", DEFAULT_PAGE_SIZE, u64::from(MAX_PAGE_SIZE))?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn list_of(space: Option<&str>, flow_name: Option<&str>, page: Option<&str>) -> Outcome {
        let asked = Asked {
            space,
            flow_name,
            page,
            ..Asked::default()
        };
        plan(&asked, 1).outcome
    }

    /// The rows' FlowIds, or the error's Code.
    fn ids(outcome: Outcome) -> Result<Vec<String>, String> {
        match outcome {
            Outcome::Success { body, .. } => Ok(body["Data"]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|row| row["FlowId"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default()),
            other => Err(other.code()),
        }
    }

    fn catalogue_ids(range: std::ops::RangeInclusive<u32>) -> Vec<String> {
        range.map(|i| format!("sim:ok:catalogue-{i}")).collect()
    }

    #[test]
    fn page_defaults_and_bounds() {
        assert_eq!(parse_page(None).ok(), Some(Page { index: 1, size: 20 }));
        let page = |raw: &str| parse_page(Some(raw)).ok();
        assert_eq!(
            page(r#"{"Index":1,"Size":20}"#),
            Some(Page { index: 1, size: 20 })
        );
        assert_eq!(page(r#"{"Index":3}"#), Some(Page { index: 3, size: 20 }));
        assert_eq!(
            page(r#"{"Size":100}"#),
            Some(Page {
                index: 1,
                size: 100
            })
        );
        assert_eq!(page(r#"{}"#), Some(Page::default()));
        assert_eq!(
            page(r#"{"Index":null,"Size":5,"Other":true}"#),
            Some(Page { index: 1, size: 5 })
        );
        assert_eq!(
            page(r#"{"Index":2147483647,"Size":1}"#),
            Some(Page {
                index: 2_147_483_647,
                size: 1
            })
        );
    }

    #[test]
    fn bad_pages_are_invalid_parameters_naming_page() {
        let cases = [
            ("", "it is not JSON"),
            ("Index=1", "it is not JSON"),
            (r#"{"Index":1"#, "it is not JSON"),
            ("[1,20]", "it is not a JSON object"),
            ("20", "it is not a JSON object"),
            (
                r#"{"Index":0}"#,
                "Index must be an integer from 1 to 2147483647",
            ),
            (
                r#"{"Index":-1}"#,
                "Index must be an integer from 1 to 2147483647",
            ),
            (
                r#"{"Index":1.5}"#,
                "Index must be an integer from 1 to 2147483647",
            ),
            (
                r#"{"Index":"1"}"#,
                "Index must be an integer from 1 to 2147483647",
            ),
            (
                r#"{"Index":2147483648}"#,
                "Index must be an integer from 1 to 2147483647",
            ),
            (r#"{"Size":0}"#, "Size must be an integer from 1 to 100"),
            (r#"{"Size":101}"#, "Size must be an integer from 1 to 100"),
        ];
        for (raw, why) in cases {
            let reply = parse_page(Some(raw)).expect_err(raw);
            assert_eq!(reply.status.as_u16(), 400, "{raw}");
            assert_eq!(reply.code, "InvalidParameter", "{raw}");
            assert_eq!(
                reply.message,
                format!("The specified parameter \"Page\" is not valid: {why}."),
                "{raw}"
            );
        }
        // A bad page is refused whatever the space would have answered.
        assert_eq!(
            ids(list_of(Some("sim:hang"), None, Some(r#"{"Size":0}"#))),
            Err("InvalidParameter".to_owned())
        );
    }

    #[test]
    fn ordinary_spaces_list_the_samples_in_a_fixed_order() {
        let samples = Ok(vec![
            "926753328126430".to_owned(),
            "100000000000002".to_owned(),
            "100000000000003".to_owned(),
            "100000000000004".to_owned(),
            "100000000000005".to_owned(),
            "100000000000009".to_owned(),
        ]);
        for space in [None, Some(""), Some("tenant-a"), Some("sim:ok:x")] {
            assert_eq!(ids(list_of(space, None, None)), samples, "{space:?}");
        }
        let Outcome::Success { body, .. } = list_of(None, None, None) else {
            panic!("a list");
        };
        assert_eq!(
            body["Data"][0],
            serde_json::json!({
                "FlowId": "926753328126430",
                "FlowName": "flow_001",
                "Categories": ["SIGN_UP"],
            })
        );
        assert_eq!(body["Code"], "OK");
    }

    #[test]
    fn catalogue_spaces_page_through_exactly_n_flows() {
        let space = Some("sim:catalogue:45");
        let page = |raw| ids(list_of(space, None, Some(raw)));
        assert_eq!(ids(list_of(space, None, None)), Ok(catalogue_ids(1..=20)));
        assert_eq!(page(r#"{"Index":2,"Size":20}"#), Ok(catalogue_ids(21..=40)));
        assert_eq!(page(r#"{"Index":3,"Size":20}"#), Ok(catalogue_ids(41..=45)));
        assert_eq!(page(r#"{"Index":4,"Size":20}"#), Ok(Vec::new()));
        assert_eq!(page(r#"{"Index":2147483647,"Size":100}"#), Ok(Vec::new()));
        assert_eq!(page(r#"{"Size":100}"#), Ok(catalogue_ids(1..=45)));

        assert_eq!(
            ids(list_of(Some("sim:catalogue:0"), None, None)),
            Ok(Vec::new())
        );
        let largest = ids(list_of(
            Some("sim:catalogue:10000:big"),
            None,
            Some(r#"{"Index":100,"Size":100}"#),
        ));
        assert_eq!(largest, Ok(catalogue_ids(9901..=10000)));
        for bad in ["sim:catalogue:10001", "sim:catalogue:", "sim:catalogue:x"] {
            assert_eq!(
                ids(list_of(Some(bad), None, None)),
                Err("InvalidParameter".to_owned()),
                "{bad}"
            );
        }
    }

    /// The rows of a catalogue space are what GetFlow answers for the same ids.
    #[test]
    fn catalogue_rows_match_get_flow() {
        let Outcome::Success { body, .. } = list_of(
            Some("sim:catalogue:3"),
            None,
            Some(r#"{"Index":3,"Size":1}"#),
        ) else {
            panic!("a list");
        };
        let row = &body["Data"][0];
        let asked = Asked {
            flow_id: row["FlowId"].as_str(),
            ..Asked::default()
        };
        let Outcome::Success { body: flow, .. } =
            flows::plan(Action::GetFlow, &asked, 1, SystemTime::now()).outcome
        else {
            panic!("a flow");
        };
        for field in ["FlowId", "FlowName", "Categories"] {
            assert_eq!(row[field], flow["Data"][field], "{field}");
        }
        assert_eq!(row["FlowName"], "catalogue_flow_3");
    }

    #[test]
    fn flow_name_filters_by_case_sensitive_substring_before_paging() {
        let space = Some("sim:catalogue:200");
        let filtered = |name, raw| ids(list_of(space, Some(name), raw));
        // catalogue_flow_1, 10 to 19, 100 to 199: 111 flows.
        let ones: Vec<String> = [1]
            .into_iter()
            .chain(10..=19)
            .chain(100..=199)
            .map(|i| format!("sim:ok:catalogue-{i}"))
            .collect();
        assert_eq!(
            filtered("flow_1", Some(r#"{"Size":100}"#)),
            Ok(ones[..100].to_vec())
        );
        assert_eq!(
            filtered("flow_1", Some(r#"{"Index":2,"Size":100}"#)),
            Ok(ones[100..].to_vec())
        );
        assert_eq!(filtered("flow_199", None), Ok(catalogue_ids(199..=199)));
        assert_eq!(filtered("FLOW_1", None), Ok(Vec::new()), "case-sensitive");
        assert_eq!(
            filtered("", None),
            Ok(catalogue_ids(1..=20)),
            "empty keeps all"
        );
        let samples_named = |name| ids(list_of(Some("tenant"), Some(name), None));
        assert_eq!(
            samples_named("_s"),
            Ok(vec![
                "100000000000002".to_owned(),
                "100000000000003".to_owned()
            ])
        );
        assert_eq!(
            samples_named("flow"),
            Ok(vec![
                "926753328126430".to_owned(),
                "100000000000009".to_owned()
            ])
        );
        assert_eq!(samples_named("no such flow"), Ok(Vec::new()));
    }

    #[test]
    fn fault_spaces_fail_list_flow_as_fault_ids_fail_the_others() {
        let code = |space, nth| {
            let asked = Asked {
                space: Some(space),
                ..Asked::default()
            };
            let plan = plan(&asked, nth);
            (plan.delay, ids(plan.outcome))
        };
        assert_eq!(
            code("sim:error:Ram.PermissionDeny", 1).1,
            Err("Ram.PermissionDeny".to_owned())
        );
        assert_eq!(code("sim:hang", 1).1, Err("hang".to_owned()));
        assert_eq!(
            code("sim:flaky:1", 1).1,
            Err("ServiceUnavailable".to_owned())
        );
        assert_eq!(code("sim:flaky:1", 2).1.map(|ids| ids.len()), Ok(6));
        let (delay, rows) = code("sim:slow:250", 1);
        assert_eq!(delay, Duration::from_millis(250));
        assert_eq!(rows.map(|ids| ids.len()), Ok(6));
    }
}
