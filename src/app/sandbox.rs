//! `serve --sandbox`: a simulated CAMS in the same process, with generated credentials.

use std::net::SocketAddr;

use crate::{
    credentials::{CredentialSource, Credentials},
    sandbox::{Sandbox, SandboxConfig},
};

use super::{StartError, tasks::Tasks};

/// Starts a simulated CAMS on a loopback port; it stops with the other background tasks, after
/// the calls have drained.
pub(super) async fn start(tasks: &mut Tasks) -> Result<(reqwest::Url, Credentials), StartError> {
    let config = SandboxConfig::generated();
    let credentials = Credentials::new(
        config.access_key_id.clone(),
        config.access_key_secret.clone(),
        config.security_token.clone(),
    )
    .with_source(CredentialSource::Sandbox);
    let sandbox = Sandbox::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .map_err(StartError::Sandbox)?;
    let endpoint = sandbox.endpoint();
    let url = endpoint
        .parse()
        .map_err(|_| StartError::SandboxEndpoint(endpoint.clone()))?;
    tasks.spawn_graceful("sandbox", |stop| async move {
        if let Err(error) = sandbox.run_until(stop).await {
            tracing::error!(%error, "the simulated CAMS stopped");
        }
    });
    tracing::info!(%endpoint, "simulated CAMS started (sandbox mode)");
    Ok((url, credentials))
}
