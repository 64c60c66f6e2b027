//! The CAMS actions the simulation answers: the four Flow reads. Each has its own quota at CAMS,
//! so the throttle and the statistics are kept per action.

use std::fmt;

use crate::acs::openapi::{
    ACTION_GET_FLOW, ACTION_GET_FLOW_JSON_ASSET, ACTION_GET_FLOW_PREVIEW_URL, ACTION_LIST_FLOW,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Action {
    GetFlow,
    ListFlow,
    GetFlowPreviewUrl,
    /// `GetFlowJSONAssest`, as CAMS spells it.
    GetFlowJsonAsset,
}

impl Action {
    pub(super) const ALL: [Action; 4] = [
        Action::GetFlow,
        Action::ListFlow,
        Action::GetFlowPreviewUrl,
        Action::GetFlowJsonAsset,
    ];

    /// The `x-acs-action` value, exactly as CAMS names it.
    pub(super) fn name(self) -> &'static str {
        match self {
            Action::GetFlow => ACTION_GET_FLOW,
            Action::ListFlow => ACTION_LIST_FLOW,
            Action::GetFlowPreviewUrl => ACTION_GET_FLOW_PREVIEW_URL,
            Action::GetFlowJsonAsset => ACTION_GET_FLOW_JSON_ASSET,
        }
    }

    /// Case-sensitive, as CAMS's gateway is: `getflow` is no action.
    pub(super) fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|action| action.name() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_exact() {
        for action in Action::ALL {
            assert_eq!(Action::from_name(action.name()), Some(action));
        }
        assert_eq!(
            Action::from_name("GetFlowJSONAssest"),
            Some(Action::GetFlowJsonAsset)
        );
        for other in ["GetFlowJSONAsset", "getflow", "DeleteFlow", ""] {
            assert_eq!(Action::from_name(other), None, "{other}");
        }
    }
}
