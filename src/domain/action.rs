/// The CAMS operations the gateway serves: the Flow reads. Each has its own budget of calls per
/// second for the whole account at CAMS, and its own in the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    GetFlow,
    ListFlow,
    GetFlowPreviewUrl,
    GetFlowJsonAsset,
}

impl Action {
    pub const ALL: [Self; 4] = [
        Self::GetFlow,
        Self::ListFlow,
        Self::GetFlowPreviewUrl,
        Self::GetFlowJsonAsset,
    ];

    /// The operation's name at CAMS (`x-acs-action`), also its name in settings, metrics and
    /// logs. `GetFlowJSONAssest` is how CAMS spells it.
    pub fn cams_name(self) -> &'static str {
        match self {
            Self::GetFlow => "GetFlow",
            Self::ListFlow => "ListFlow",
            Self::GetFlowPreviewUrl => "GetFlowPreviewUrl",
            Self::GetFlowJsonAsset => "GetFlowJSONAssest",
        }
    }

    /// The gateway's RPC that serves it, as `grpc_method` labels it.
    pub fn grpc_method(self) -> &'static str {
        match self {
            Self::GetFlow => "GetFlow",
            Self::ListFlow => "ListFlows",
            Self::GetFlowPreviewUrl => "GetFlowPreviewUrl",
            Self::GetFlowJsonAsset => "GetFlowJsonAsset",
        }
    }

    /// A small index, for tables indexed by action.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.cams_name())
    }
}
