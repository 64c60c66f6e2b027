//! `baseline-http`: the calls the gateway would make, made straight to the simulated CAMS with
//! the gateway's own client (one pooled reqwest client, ACS3 signing included) and no gRPC. The
//! gap between this and the cache-miss scenario is what the gateway adds per call.

use std::{borrow::Cow, sync::Arc};

use anyhow::Context;
use cams_flows::{
    cams::{CamsClient, CamsError, UpstreamConfig},
    clock,
    credentials::{Credentials, StaticCredentials},
    domain::{Action, FlowId, Read, TenantId},
};
use secrecy::SecretString;

use crate::{
    cli::{DirectArgs, UpstreamArgs},
    drive::drive,
    keys::Keys,
    record::{Outcome, RunInfo},
};

/// The keys as the client takes them, parsed once so that parsing is not measured.
struct ParsedKeys {
    keys: Keys,
    tenants: Vec<TenantId>,
    flows: Vec<FlowId>,
}

pub async fn run(args: DirectArgs) -> anyhow::Result<()> {
    let shape = &args.shape;
    let keys = parse_keys(Keys::from_shape(shape))?;
    let info = RunInfo::new(shape, &keys.keys, "http", &args.upstream.endpoint, None);
    let client = client(&args.upstream)?;
    let keys = Arc::new(keys);
    let timeout = shape.timeout;
    let call = move |seq: u64| {
        let client = client.clone();
        let keys = Arc::clone(&keys);
        async move {
            let (tenant, flow) = keys.keys.pick(seq);
            // Two small clones: nothing beside an HTTP exchange.
            let read = Read::flow(keys.tenants[tenant].clone(), keys.flows[flow].clone());
            let result = tokio::time::timeout(timeout, client.fetch(&read)).await;
            let outcome = match result {
                Ok(Ok(_)) => Outcome::Ok { cache: None },
                Ok(Err(error)) => Outcome::Failed {
                    kind: error_kind(&error),
                    detail: error.to_string(),
                },
                Err(_) => Outcome::Failed {
                    kind: Cow::Borrowed("DeadlineExceeded"),
                    detail: "no answer within the timeout".to_owned(),
                },
            };
            (Action::GetFlow, outcome)
        }
    };
    let (tally, elapsed) = drive(shape, call).await?;
    tally.summarize(info, elapsed).print(shape.json)
}

fn parse_keys(keys: Keys) -> anyhow::Result<ParsedKeys> {
    let tenants = keys
        .tenants
        .iter()
        .map(|t| TenantId::parse(t.as_str()).with_context(|| format!("tenant {t:?}")))
        .collect::<anyhow::Result<_>>()?;
    let flows = keys
        .flows
        .iter()
        .map(|f| FlowId::parse(f.as_str()).with_context(|| format!("flow id {f:?}")))
        .collect::<anyhow::Result<_>>()?;
    Ok(ParsedKeys {
        keys,
        tenants,
        flows,
    })
}

/// The gateway's defaults, so that every run uses the same client settings.
pub fn client(args: &UpstreamArgs) -> anyhow::Result<CamsClient> {
    let endpoint = args
        .endpoint
        .parse()
        .with_context(|| format!("bad endpoint {:?}", args.endpoint))?;
    let credentials = Credentials::new(
        args.access_key_id.clone(),
        SecretString::from(args.access_key_secret.clone()),
        None,
    );
    CamsClient::new(
        UpstreamConfig::new(endpoint),
        Arc::new(StaticCredentials::new(credentials)),
        clock::system(),
    )
    .map_err(anyhow::Error::from)
}

/// CAMS's own code for errors CAMS reported, the variant's name for the rest. The name comes from
/// `Debug` so that a variant added to `CamsError` later is still reported under its own name.
fn error_kind(error: &CamsError) -> Cow<'static, str> {
    if let CamsError::Api(api) = error {
        return Cow::Owned(api.code.clone());
    }
    let debug = format!("{error:?}");
    let name = debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    Cow::Owned(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_named_by_code_or_variant() {
        assert_eq!(error_kind(&CamsError::Timeout), "Timeout");
        let bad = CamsError::BadResponse {
            http_status: 502,
            detail: "html".into(),
        };
        assert_eq!(error_kind(&bad), "BadResponse");
    }
}
