//! AssumeRole (RamRoleArn): temporary keys of a role, obtained with another credential (an
//! AccessKey, an STS key, the keys of an ECS role or of an OIDC role). The source is fetched
//! again at every refresh, so a temporary source is never used past its own expiry.

use std::sync::Arc;

use super::{
    CredentialSource, Credentials, CredentialsError, Fetch,
    sts::{Session, StsClient},
};

#[derive(Debug)]
pub(crate) struct AssumeRoleFetch {
    source: Box<dyn Fetch>,
    sts: Arc<StsClient>,
    session: Session,
    external_id: Option<String>,
}

impl AssumeRoleFetch {
    pub(crate) fn new(
        source: Box<dyn Fetch>,
        sts: Arc<StsClient>,
        session: Session,
        external_id: Option<String>,
    ) -> Self {
        Self {
            source,
            sts,
            session,
            external_id,
        }
    }
}

#[async_trait::async_trait]
impl Fetch for AssumeRoleFetch {
    fn source(&self) -> CredentialSource {
        CredentialSource::RamRoleArn
    }

    async fn fetch(&self) -> Result<Credentials, CredentialsError> {
        let signer = self
            .source
            .fetch()
            .await
            .map_err(|e| CredentialsError::Source(Box::new(e)))?;
        self.sts
            .assume_role(&signer, &self.session, self.external_id.as_deref())
            .await
    }
}
