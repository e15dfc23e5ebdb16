//! Looks at the workers' consumer groups every few seconds, so the banner and the pending
//! requests say why a request would wait (see `readiness`).

use super::readiness::{GroupCheck, why_waiting};
use crate::AppState;
use crate::config::WorkerGroups;
use contract::{RequestKind, Topics};
use request_reply::groups::GroupObserver;
use std::time::Duration;

/// How often the workers' groups are looked at.
const WORKER_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long one look at a group or topic may take.
pub(super) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the broker says of each worker group and its request topic now. Blocking.
pub(super) fn check_groups(
    observer: &GroupObserver,
    groups: &WorkerGroups,
    topics: &Topics,
) -> Vec<GroupCheck> {
    RequestKind::ALL
        .iter()
        .map(|kind| {
            let group = groups.of(*kind).to_owned();
            let topic = topics.request(*kind);
            let partitions = observer
                .partition_count(&topic, LOOKUP_TIMEOUT)
                .ok()
                .map(|count| i32::try_from(count).unwrap_or(i32::MAX));
            let group_state = observer
                .describe(&group, LOOKUP_TIMEOUT)
                .map_err(|error| error.to_string());
            GroupCheck {
                kind: *kind,
                group,
                topic,
                partitions,
                group_state,
            }
        })
        .collect()
}

/// Keeps the broker status's `waiting` up to date while Kafka is reachable. Runs until aborted.
pub(crate) async fn watch_workers(state: AppState) {
    let topics = Topics::with_prefix(&state.config().topics.prefix);
    loop {
        if state.broker_status().reachable {
            let observer = state.observer();
            let groups = state.config().worker_groups.clone();
            let topics = topics.clone();
            let checked =
                tokio::task::spawn_blocking(move || check_groups(&observer, &groups, &topics))
                    .await;
            match checked {
                Ok(checks) => {
                    let waiting: Vec<(RequestKind, String)> = checks
                        .iter()
                        .filter_map(|check| why_waiting(check).map(|why| (check.kind, why)))
                        .collect();
                    if state.broker_status().waiting != waiting {
                        tracing::info!(?waiting, "the workers' groups changed");
                    }
                    state.update_broker(|status| status.waiting = waiting);
                }
                Err(error) => tracing::error!(%error, "worker group check panicked"),
            }
        }
        tokio::time::sleep(WORKER_CHECK_INTERVAL).await;
    }
}
