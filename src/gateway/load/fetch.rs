//! The attempts of one fetch: each one takes a lease of the account's budget for its CAMS action,
//! sends one signed call and completes the lease once the answer is read; what may succeed on
//! another attempt is retried, within the retry budget and the waiting callers' deadlines.
//!
//! A read another action's answer carries (a preview URL is part of a flow) is made through that
//! action when its own budget has no slot at once and the other's has: the budgets are separate
//! at CAMS, so the account's calls stretch further.

use std::time::Duration;

use tokio::time::Instant;

use super::Loader;
use crate::{
    cache::Waiters,
    cams::CamsError,
    credentials::Credentials,
    deadline::wait_end,
    domain::{Action, Answer, Data, Read},
    error::Error,
    limits::{AccountRejection, Claim, Class, Lease, Party, RejectionCause},
    telemetry::{
        metrics::{QuotaRefusal, UpstreamOutcome},
        trace::{AttemptOutcome, AttemptSpan, note_queue_wait},
    },
};

/// What a fetch got: the answer to the read asked, and, when it was made through another action,
/// that action's read and answer, worth keeping too.
#[derive(Debug)]
pub(super) struct Fetched {
    pub answer: Answer,
    pub also: Option<(Read, Answer)>,
}

impl Fetched {
    /// `answer`, got by `made` for `asked`.
    fn of(asked: &Read, made: Read, answer: Answer) -> Self {
        if made == *asked {
            return Self { answer, also: None };
        }
        match answer.preview_url() {
            Some(preview) => Self {
                answer: Answer {
                    data: Data::PreviewUrl(preview),
                    request_id: answer.request_id.clone(),
                },
                also: Some((made, answer)),
            },
            // Only a preview URL is asked through another action; anything else is answered as
            // it came.
            None => Self { answer, also: None },
        }
    }
}

impl Loader {
    /// Attempts until one succeeds, the error is final, attempts or budget run out, or the
    /// next attempt could not end before the waiters' latest deadline. Every attempt spends
    /// account quota; the first waits for it until `first_wait` at most.
    pub(super) async fn fetch(
        &self,
        query: &Read,
        party: &Party,
        class: &Class,
        first_wait: Instant,
        bound: Instant,
        waiters: &Waiters,
    ) -> Result<Fetched, Error> {
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
            let (lease, made) = match (
                self.lease(query, party, class, wait_until).await,
                retrying.take(),
            ) {
                (Ok(leased), _) => leased,
                // No slot in time for the retry: the failure it retried stands.
                (Err(_), Some(failure)) => return Err(failure),
                (Err(refused), None) => return Err(refused),
            };
            let attempt_started = Instant::now();
            let result = self
                .attempt(&made, &credentials, lease, retry + 1, wait_started, bound)
                .await?;
            let error = match result {
                Ok(answer) => return Ok(Fetched::of(query, made, answer)),
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
                action = made_action(query),
                %error,
                retry,
                ?pause,
                "retrying CAMS"
            );
            tokio::time::sleep(pause).await;
            retrying = Some(error);
        }
    }

    /// A slot of the account's budget for one attempt, waiting for it until `wait_until` at most,
    /// and the read to make with it: `query` itself, or, for a read another action's answer
    /// carries, that action's read when its budget has a slot at once and `query`'s has none.
    async fn lease(
        &self,
        query: &Read,
        party: &Party,
        class: &Class,
        wait_until: Instant,
    ) -> Result<(Lease, Read), Error> {
        let accounts = &self.upstream.accounts;
        let claim = |deadline| Claim {
            party,
            class: class.clone(),
            deadline,
        };
        if let Some(instead) = query.answered_by_flow() {
            let now = Instant::now();
            if let Ok(lease) = accounts.of(query.action()).acquire(claim(now)).await {
                return Ok((lease, query.clone()));
            }
            if let Ok(lease) = accounts.of(instead.action()).acquire(claim(now)).await {
                self.metrics.substituted(query.action());
                return Ok((lease, instead));
            }
        }
        accounts
            .of(query.action())
            .acquire(claim(wait_until))
            .await
            .map(|lease| (lease, query.clone()))
            .map_err(|r| self.refused(query, r))
    }

    fn refused(&self, query: &Read, refusal: AccountRejection) -> Error {
        self.metrics.quota_refused(
            query.action(),
            match refusal.cause {
                RejectionCause::QueueFull => QuotaRefusal::QueueFull,
                RejectionCause::WouldWaitTooLong => QuotaRefusal::WouldWaitTooLong,
                RejectionCause::StoreUnavailable => QuotaRefusal::StoreUnavailable,
            },
        );
        match refusal.cause {
            RejectionCause::StoreUnavailable => Error::QuotaStoreUnavailable {
                retry_after: refusal.retry_after,
            },
            RejectionCause::QueueFull | RejectionCause::WouldWaitTooLong => {
                Error::AccountRateLimited {
                    tenant: query.tenant.clone(),
                    action: query.action(),
                    account_rps: self.upstream.accounts.of(query.action()).rps(),
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
        query: &Read,
        credentials: &Credentials,
        lease: Lease,
        number: u32,
        wait_started: Instant,
        bound: Instant,
    ) -> Result<Result<Answer, CamsError>, Error> {
        let client = &self.upstream.client;
        let waited = wait_started.elapsed();
        let action = query.action();
        let _in_use = self.metrics.slot_taken(action, waited);
        let span = self.tracer.attempt(action, number, client.host());
        if let Some(span) = &span {
            span.waited(waited);
            note_queue_wait(waited);
        }
        let started = Instant::now();
        let sent = client.read(
            query,
            credentials,
            span.as_ref().and_then(AttemptSpan::propagated),
        );
        let Ok(result) = tokio::time::timeout_at(bound, sent).await else {
            self.attempted(
                action,
                UpstreamOutcome::Abandoned,
                None,
                None,
                started,
                span,
            );
            return Err(Error::from(CamsError::Timeout));
        };
        // Completing only ends the call's count: done late, it ends later, never sooner. With
        // the quota in Redis it is a round trip the answer need not wait for.
        tokio::spawn(lease.complete());
        match &result {
            Ok(answer) => self.attempted(
                action,
                UpstreamOutcome::Code("OK"),
                Some(&answer.request_id),
                None,
                started,
                span,
            ),
            Err(error) => self.attempted(
                action,
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
        action: Action,
        outcome: UpstreamOutcome<'_>,
        request_id: Option<&str>,
        http_status: Option<u16>,
        started: Instant,
        span: Option<AttemptSpan>,
    ) {
        self.metrics
            .upstream_attempt(action, outcome, started.elapsed());
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

/// The action a read is made with, for logs.
fn made_action(read: &Read) -> &'static str {
    read.action().cams_name()
}
