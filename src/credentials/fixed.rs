//! Credentials that never change: long-lived AccessKeys, the sandbox's generated pair.

use std::sync::Arc;

use super::{Credentials, CredentialsError, CredentialsProvider};

#[derive(Debug, Clone)]
pub struct StaticCredentials(Arc<Credentials>);

impl StaticCredentials {
    pub fn new(credentials: Credentials) -> Self {
        Self(Arc::new(credentials))
    }
}

#[async_trait::async_trait]
impl CredentialsProvider for StaticCredentials {
    async fn credentials(&self) -> Result<Arc<Credentials>, CredentialsError> {
        Ok(Arc::clone(&self.0))
    }

    fn held_expiry(&self) -> Option<std::time::SystemTime> {
        self.0.expires_at()
    }
}
