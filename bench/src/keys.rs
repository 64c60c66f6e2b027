//! Which (tenant, flow) a call asks for.

use crate::cli::Shape;

/// The tenants and flows calls are spread over.
#[derive(Debug, Clone)]
pub struct Keys {
    pub tenants: Vec<String>,
    pub flows: Vec<String>,
}

impl Keys {
    pub fn from_shape(shape: &Shape) -> Self {
        let tenants = (0..shape.tenants)
            .map(|i| format!("{}{i}", shape.tenant_prefix))
            .collect();
        let flows = match &shape.flow_id {
            Some(id) => vec![id.clone()],
            None => (0..shape.flows)
                .map(|i| format!("{}{i}", shape.flow_prefix))
                .collect(),
        };
        Self { tenants, flows }
    }

    /// Indexes of the tenant and flow of call number `seq`. Consecutive calls get distinct
    /// pairs until every pair has been used, so the calls in flight at one time never share a
    /// key when there are more pairs than workers: a cache-miss run then measures misses, not
    /// coalescing.
    pub fn pick(&self, seq: u64) -> (usize, usize) {
        let tenants = self.tenants.len() as u64;
        let flows = self.flows.len() as u64;
        let tenant = seq % tenants;
        let flow = (seq / tenants) % flows;
        (tenant as usize, flow as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_calls_cover_every_pair() {
        let keys = Keys {
            tenants: vec!["a".into(), "b".into()],
            flows: vec!["1".into(), "2".into(), "3".into()],
        };
        let mut seen: Vec<_> = (0..6).map(|seq| keys.pick(seq)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 6);
        assert_eq!(keys.pick(6), keys.pick(0));
    }
}
