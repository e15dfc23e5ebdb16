//! The system page: the topics with their partitions, leaders and end offsets, the workers'
//! consumer groups with their members, assignments, committed offsets and lag, and which workers
//! are alive; and, from the same groups, why a request waits (`readiness`, `watch`).

mod readiness;
mod watch;

pub use readiness::{GroupCheck, missing, why_waiting};
pub(crate) use watch::watch_workers;

use crate::AppState;
use crate::error::AppError;
use crate::views::BannerView;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use contract::{RequestKind, Topics};
use request_reply::groups::{GroupObserver, GroupState, PartitionEnds};
use std::collections::BTreeMap;
use watch::LOOKUP_TIMEOUT;

/// One partition of a topic, as the page shows it.
#[derive(Clone, Debug)]
pub struct PartitionRow {
    pub partition: i32,
    pub leader: String,
    pub replicas: String,
    pub in_sync: String,
    pub low: i64,
    pub high: i64,
}

/// One topic of the system.
#[derive(Clone, Debug)]
pub struct TopicView {
    pub name: String,
    /// What the topic carries: requests, replies or dead letters.
    pub role: &'static str,
    pub partitions: Vec<PartitionRow>,
    /// Why the partitions are not shown.
    pub notice: Option<String>,
}

/// A member of a worker group: a worker replica that is alive.
#[derive(Clone, Debug)]
pub struct MemberRow {
    pub client_id: String,
    pub host: String,
    pub partitions: String,
}

/// Where a worker group is in one partition of its request topic.
#[derive(Clone, Debug)]
pub struct OffsetRow {
    pub partition: i32,
    pub end: i64,
    pub committed: String,
    pub lag: String,
    /// The client id of the member that has the partition, or "nobody".
    pub consumer: String,
}

/// One worker group.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub kind: String,
    pub group: String,
    pub topic: String,
    pub state: String,
    pub members: Vec<MemberRow>,
    pub offsets: Vec<OffsetRow>,
    /// Why its requests wait, if they do.
    pub waiting: Option<String>,
    /// Why the group is not shown.
    pub notice: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "system.html")]
pub struct SystemPage {
    pub banner: BannerView,
    pub topics: Vec<TopicView>,
    pub groups: Vec<GroupView>,
    /// Why nothing is shown (Kafka unreachable).
    pub notice: Option<String>,
}

fn ids(brokers: &[i32]) -> String {
    let ids: Vec<String> = brokers.iter().map(ToString::to_string).collect();
    ids.join(", ")
}

fn partition_rows(partitions: &[PartitionEnds]) -> Vec<PartitionRow> {
    partitions
        .iter()
        .map(|ends| PartitionRow {
            partition: ends.partition,
            leader: ends
                .leader
                .map_or_else(|| "none".to_owned(), |leader| leader.to_string()),
            replicas: ids(&ends.replicas),
            in_sync: ids(&ends.in_sync),
            low: ends.low,
            high: ends.high,
        })
        .collect()
}

/// A group and its place in its request topic, as the page shows them: pure, so the figures
/// are unit-tested.
pub fn group_view(
    check: &GroupCheck,
    request_partitions: &[PartitionEnds],
    committed: &Result<BTreeMap<i32, Option<i64>>, String>,
) -> GroupView {
    let mut view = GroupView {
        kind: check.kind.to_string(),
        group: check.group.clone(),
        topic: check.topic.clone(),
        state: String::new(),
        members: Vec::new(),
        offsets: Vec::new(),
        waiting: why_waiting(check),
        notice: None,
    };
    let state: &GroupState = match &check.group_state {
        Ok(state) => state,
        Err(error) => {
            view.notice = Some(format!("The group cannot be read just now: {error}"));
            return view;
        }
    };
    view.state.clone_from(&state.state);
    view.members = state
        .members
        .iter()
        .map(|member| {
            let mut partitions: Vec<String> = member
                .assigned
                .iter()
                .filter(|(topic, _)| *topic == check.topic)
                .map(|(_, partition)| partition.to_string())
                .collect();
            if partitions.is_empty() {
                partitions.push("none yet".into());
            }
            MemberRow {
                client_id: member.client_id.clone(),
                host: member.host.clone(),
                partitions: partitions.join(", "),
            }
        })
        .collect();
    view.offsets = request_partitions
        .iter()
        .map(|ends| {
            let (committed, lag) = match committed {
                Err(_) => ("unknown".to_owned(), "unknown".to_owned()),
                Ok(offsets) => match offsets.get(&ends.partition).copied().flatten() {
                    Some(offset) => (offset.to_string(), (ends.high - offset).max(0).to_string()),
                    None => (
                        "nothing yet".to_owned(),
                        (ends.high - ends.low).max(0).to_string(),
                    ),
                },
            };
            let consumer = state
                .members
                .iter()
                .find(|member| {
                    member.assigned.iter().any(|(topic, partition)| {
                        *topic == check.topic && *partition == ends.partition
                    })
                })
                .map_or_else(|| "nobody".to_owned(), |member| member.client_id.clone());
            OffsetRow {
                partition: ends.partition,
                end: ends.high,
                committed,
                lag,
                consumer,
            }
        })
        .collect();
    if let Err(error) = committed {
        view.notice = Some(format!(
            "The committed offsets cannot be read just now: {error}"
        ));
    }
    view
}

/// Everything the page shows, read from Kafka. Blocking.
fn collect(observer: &GroupObserver, state: &AppState) -> (Vec<TopicView>, Vec<GroupView>) {
    let topics = Topics::with_prefix(&state.config().topics.prefix);
    let checks = watch::check_groups(observer, &state.config().worker_groups, &topics);
    let mut topic_views = Vec::new();
    let mut group_views = Vec::new();
    for (kind, check) in RequestKind::ALL.iter().zip(&checks) {
        let mut request_partitions = Vec::new();
        for (name, role) in [
            (topics.request(*kind), "requests"),
            (topics.reply(*kind), "replies"),
            (topics.dead_letter(*kind), "dead letters"),
        ] {
            let read = observer.partitions(&name, LOOKUP_TIMEOUT);
            let (partitions, notice) = match read {
                Ok(partitions) => (partitions, None),
                Err(error) => (
                    Vec::new(),
                    Some(format!("The topic cannot be read just now: {error}")),
                ),
            };
            if role == "requests" {
                request_partitions.clone_from(&partitions);
            }
            topic_views.push(TopicView {
                name,
                role,
                partitions: partition_rows(&partitions),
                notice,
            });
        }
        let committed = observer
            .committed(
                &check.group,
                &check.topic,
                request_partitions.iter().map(|ends| ends.partition),
                LOOKUP_TIMEOUT,
            )
            .map_err(|error| error.to_string());
        group_views.push(group_view(check, &request_partitions, &committed));
    }
    (topic_views, group_views)
}

/// `GET /system`.
pub async fn system_page(State(state): State<AppState>) -> Result<SystemPage, AppError> {
    let banner = BannerView::from(state.broker_status());
    if !state.broker_status().reachable {
        return Ok(SystemPage {
            banner,
            topics: Vec::new(),
            groups: Vec::new(),
            notice: Some("Kafka is unreachable: there is nothing to show until it is back.".into()),
        });
    }
    let observer = state.observer();
    let collected = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || collect(&observer, &state))
    }
    .await
    .map_err(|error| AppError::Internal(anyhow::anyhow!("system view panicked: {error}")))?;
    let (topics, groups) = collected;
    Ok(SystemPage {
        banner,
        topics,
        groups,
        notice: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_reply::groups::GroupMember;

    fn ends(partition: i32, low: i64, high: i64) -> PartitionEnds {
        PartitionEnds {
            partition,
            leader: Some(1),
            replicas: vec![1, 2],
            in_sync: vec![1],
            low,
            high,
        }
    }

    fn check(members: Vec<GroupMember>) -> GroupCheck {
        GroupCheck {
            kind: RequestKind::Invoice,
            group: "generate-invoice".into(),
            topic: "generate-invoice".into(),
            partitions: Some(2),
            group_state: Ok(GroupState {
                group: "generate-invoice".into(),
                state: if members.is_empty() {
                    "Empty"
                } else {
                    "Stable"
                }
                .into(),
                members,
            }),
        }
    }

    #[test]
    fn lag_is_the_end_offset_less_what_the_group_committed() {
        let member = GroupMember {
            member_id: "m".into(),
            client_id: "worker-a".into(),
            host: "/10.0.0.7".into(),
            assigned: vec![("generate-invoice".into(), 1)],
        };
        let committed = Ok(BTreeMap::from([(0, None), (1, Some(40))]));
        let view = group_view(
            &check(vec![member]),
            &[ends(0, 3, 10), ends(1, 0, 42)],
            &committed,
        );
        let rows: Vec<(i32, i64, &str, &str, &str)> = view
            .offsets
            .iter()
            .map(|row| {
                (
                    row.partition,
                    row.end,
                    row.committed.as_str(),
                    row.lag.as_str(),
                    row.consumer.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0, 10, "nothing yet", "7", "nobody"),
                (1, 42, "40", "2", "worker-a")
            ]
        );
        assert_eq!(view.members[0].partitions, "1");
        assert_eq!(
            view.waiting.as_deref(),
            Some("partition(s) 0 of generate-invoice have no consumer in group generate-invoice")
        );
    }

    #[test]
    fn a_group_without_members_says_so_and_unreadable_offsets_are_unknown() {
        let view = group_view(
            &check(Vec::new()),
            &[ends(0, 0, 5)],
            &Err("timed out".into()),
        );
        assert!(view.members.is_empty());
        assert_eq!(view.offsets[0].committed, "unknown");
        assert!(
            view.waiting
                .unwrap()
                .starts_with("no consumer in group generate-invoice")
        );
        assert!(view.notice.unwrap().contains("timed out"));
    }

    #[test]
    fn the_page_labels_and_explains_what_it_shows() {
        let page = SystemPage {
            banner: BannerView {
                green: true,
                message: "ok".into(),
            },
            topics: vec![TopicView {
                name: "generate-invoice".into(),
                role: "requests",
                partitions: partition_rows(&[ends(0, 0, 5)]),
                notice: None,
            }],
            groups: vec![group_view(
                &check(Vec::new()),
                &[ends(0, 0, 5)],
                &Ok(BTreeMap::new()),
            )],
            notice: None,
        };
        let html = page.render().unwrap();
        for expected in [
            "What is a consumer group?",
            "Lag",
            "End offset",
            "Leader",
            "no consumer in group",
        ] {
            assert!(html.contains(expected), "{expected} missing: {html}");
        }
    }
}
