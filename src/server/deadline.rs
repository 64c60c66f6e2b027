use tokio::time::Instant;

/// Sleeps until `deadline`; without one, forever (a `select!` branch that never fires).
pub(super) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
