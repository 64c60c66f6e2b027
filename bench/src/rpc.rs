//! Which of FlowService's four reads a call makes, and on which key. Each read is named by the
//! CAMS action that answers it ([`Action`]): its gRPC method for the client's counts, its CAMS name
//! for the simulated CAMS's.

use cams_flows::domain::Action;

use crate::cli::RpcChoice;

impl RpcChoice {
    /// The read call number `seq` makes, and the number that picks its key. In a mixed run the
    /// four calls of a cycle share one key, as a client that reads a flow, its space's list, its
    /// preview and its Flow JSON would; a single-read run spreads consecutive calls over the keys.
    pub fn for_call(self, seq: u64) -> (Action, u64) {
        match self {
            Self::GetFlow => (Action::GetFlow, seq),
            Self::ListFlows => (Action::ListFlow, seq),
            Self::PreviewUrl => (Action::GetFlowPreviewUrl, seq),
            Self::JsonAsset => (Action::GetFlowJsonAsset, seq),
            Self::Mixed => {
                let reads = Action::ALL.len() as u64;
                (Action::ALL[(seq % reads) as usize], seq / reads)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mixed_run_cycles_the_four_reads_on_one_key() {
        let cycle: Vec<_> = (8..12).map(|seq| RpcChoice::Mixed.for_call(seq)).collect();
        assert_eq!(
            cycle,
            [
                (Action::GetFlow, 2),
                (Action::ListFlow, 2),
                (Action::GetFlowPreviewUrl, 2),
                (Action::GetFlowJsonAsset, 2),
            ]
        );
        assert_eq!(
            RpcChoice::JsonAsset.for_call(9),
            (Action::GetFlowJsonAsset, 9)
        );
    }
}
