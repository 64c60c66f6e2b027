//! The attempts of one fetch: each one takes an account lease, sends one signed call and
//! completes the lease once the answer is read; what may succeed on another attempt is retried,
//! within the retry budget and the waiting callers' deadlines.

use std::time::Duration;

use tokio::time::Instant;

use super::Loader;
use crate::{
    cache::Waiters,
    cams::{CamsError, FlowAnswer},
    credentials::Credentials,
    deadline::wait_end,
    domain::FlowQuery,
    error::Error,
    limits::{AccountRejection, Claim, Class, Lease, Party, RejectionCause},
    telemetry::{
        metrics::{QuotaRefusal, UpstreamOutcome},
        trace::{AttemptOutcome, AttemptSpan, note_queue_wait},
    },
};

impl Loader {
    /// Attempts until one succeeds, the error is final, attempts or budget run out, or the
    /// next attempt could not end before the waiters' latest deadline. Every attempt spends
    /// account quota; the first waits for it until `first_wait` at most.
    pub(super) async fn fetch(
        &self,
        query: &FlowQuery,
        party: &Party,
        class: &Class,
        first_wait: Instant,
        bound: Instant,
        waiters: &Waiters,
    ) -> Result<FlowAnswer, Error> {
        let upstream = &self.upstream;
        upstream.budget.record_call();
        let mut retry = 0;
        // The failure a retry is retrying: what the callers hear if the retry cannot be made.
        let mut retrying: Option<Error> = None;
        loop {
            let credentials = upstream.client.credentials().await?;
            // A retry's wait for a slot ends before the waiters' latest deadline too, so that
            // they hear CAMS's failure rather than only that their deadline passed.
            let wait_until = if retry == 0 {
                first_wait
            } else {
                wait_end(waiters.latest().min(bound))
            };
            let wait_started = Instant::now();
            let lease = match (
                self.lease(query, party, class, wait_until).await,
                retrying.take(),
            ) {
                (Ok(lease), _) => lease,
                // No slot in time for the retry: the failure it retried stands.
                (Err(_), Some(failure)) => return Err(failure),
                (Err(refused), None) => return Err(refused),
            };
            let attempt_started = Instant::now();
            let result = self
                .attempt(query, &credentials, lease, retry + 1, wait_started, bound)
                .await?;
            let error = match result {
                Ok(answer) => return Ok(answer),
                Err(e) => Error::from(e),
            };
            retry += 1;
            if !error.disposition().retry || retry >= upstream.retry.max_attempts {
                return Err(error);
            }
            let pause = upstream.retry.backoff(retry - 1, cams_retry_after(&error));
            // The next attempt is expected to take about as long as this one did.
            let expected_end = Instant::now() + pause + attempt_started.elapsed();
            if expected_end >= waiters.latest().min(bound) {
                return Err(error);
            }
            if !upstream.budget.try_retry() {
                self.metrics.retry_budget_exhausted();
                return Err(error);
            }
            self.metrics.retried();
            tracing::debug!(
                tenant = query.tenant.as_str(),
                flow_id = query.flow_id.as_str(),
                %error,
                retry,
                ?pause,
                "retrying CAMS"
            );
            tokio::time::sleep(pause).await;
            retrying = Some(error);
        }
    }

    /// A slot of the account quota for one attempt, waiting for it until `wait_until` at most.
    async fn lease(
        &self,
        query: &FlowQuery,
        party: &Party,
        class: &Class,
        wait_until: Instant,
    ) -> Result<Lease, Error> {
        let account = &self.upstream.account;
        account
            .acquire(Claim {
                party,
                class: class.clone(),
                deadline: wait_until,
            })
            .await
            .map_err(|r| self.refused(query, r))
    }

    fn refused(&self, query: &FlowQuery, refusal: AccountRejection) -> Error {
        self.metrics.quota_refused(match refusal.cause {
            RejectionCause::QueueFull => QuotaRefusal::QueueFull,
            RejectionCause::WouldWaitTooLong => QuotaRefusal::WouldWaitTooLong,
            RejectionCause::StoreUnavailable => QuotaRefusal::StoreUnavailable,
        });
        match refusal.cause {
            RejectionCause::StoreUnavailable => Error::QuotaStoreUnavailable {
                retry_after: refusal.retry_after,
            },
            RejectionCause::QueueFull | RejectionCause::WouldWaitTooLong => {
                Error::AccountRateLimited {
                    tenant: query.tenant.clone(),
                    account_rps: self.upstream.account.rps(),
                    retry_after: refusal.retry_after,
                    queue_full: refusal.cause == RejectionCause::QueueFull,
                }
            }
        }
    }

    /// One signed call under `lease`. Past `bound` the attempt is dropped mid-flight and its
    /// lease abandoned (the request may still reach CAMS, and the store keeps counting it): for
    /// the callers still waiting that is CAMS failing (a stale answer may stand in), the outer
    /// error. Otherwise the lease is completed and CAMS's answer is the inner result.
    async fn attempt(
        &self,
        query: &FlowQuery,
        credentials: &Credentials,
        lease: Lease,
        number: u32,
        wait_started: Instant,
        bound: Instant,
    ) -> Result<Result<FlowAnswer, CamsError>, Error> {
        let client = &self.upstream.client;
        let waited = wait_started.elapsed();
        let _in_use = self.metrics.slot_taken(waited);
        let span = self.tracer.attempt(number, client.host());
        if let Some(span) = &span {
            span.waited(waited);
            note_queue_wait(waited);
        }
        let started = Instant::now();
        let sent = client.get_flow(
            &query.tenant,
            &query.flow_id,
            credentials,
            span.as_ref().and_then(AttemptSpan::propagated),
        );
        let Ok(result) = tokio::time::timeout_at(bound, sent).await else {
            self.attempted(UpstreamOutcome::Abandoned, None, None, started, span);
            return Err(Error::from(CamsError::Timeout));
        };
        // Completing only ends the call's count: done late, it ends later, never sooner. With
        // the quota in Redis it is a round trip the answer need not wait for.
        tokio::spawn(lease.complete());
        match &result {
            Ok(answer) => self.attempted(
                UpstreamOutcome::Code("OK"),
                Some(&answer.request_id),
                None,
                started,
                span,
            ),
            Err(error) => self.attempted(
                error.outcome(),
                match error {
                    CamsError::Api(api) => Some(&api.request_id),
                    _ => None,
                },
                error.http_status(),
                started,
                span,
            ),
        }
        Ok(result)
    }

    /// Records how one attempt ended, in the metrics and on its span.
    fn attempted(
        &self,
        outcome: UpstreamOutcome<'_>,
        request_id: Option<&str>,
        http_status: Option<u16>,
        started: Instant,
        span: Option<AttemptSpan>,
    ) {
        self.metrics.upstream_attempt(outcome, started.elapsed());
        if let Some(span) = span {
            span.finish(AttemptOutcome {
                code: outcome.name(),
                request_id,
                http_status: http_status
                    .or((outcome == UpstreamOutcome::Code("OK")).then_some(200)),
                error: outcome != UpstreamOutcome::Code("OK"),
            });
        }
    }
}

/// How long CAMS asked to wait before trying again, if it did.
fn cams_retry_after(error: &Error) -> Option<Duration> {
    match error {
        Error::Cams(cams) => cams.retry_after(),
        _ => None,
    }
}
