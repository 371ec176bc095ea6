//! What the handlers share.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::Security;
use crate::accounts::Accounts;
use crate::accounts::limiter::FailureLimiter;
use crate::district::District;
use crate::store::Store;
use crate::sync::hub::Hub;

/// What the handlers share: the layers below, and the HTTP side's own settings.
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) hub: Arc<Hub>,
    pub(crate) district: District,
    /// Cancelled when the server stops: every connection closes with a close frame.
    pub(crate) shutdown: CancellationToken,
    /// The sync connections, which shutdown waits for.
    pub(crate) connections: TaskTracker,
    pub(crate) accounts: Accounts,
    pub(crate) limiter: Arc<FailureLimiter>,
    pub(crate) security: Arc<Security>,
    pub(crate) enrollment_ttl: Duration,
    pub(crate) open_sync: bool,
}

impl AppState {
    /// The store.
    pub fn store(&self) -> &Store {
        self.hub.store()
    }

    /// Now, in unix milliseconds, by the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.hub.store().now_ms()
    }
}
