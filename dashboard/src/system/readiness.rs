//! Whether the workers can answer, and if not, why a request waits: decided from what the
//! broker says of each worker group, by functions that touch no broker.
//!
//! A reachable broker is not enough for a reply: after a broker restart the workers may take
//! seconds more to get their partitions back, and a stopped worker looks exactly like a slow one
//! from the requester's side. The group's coordinator knows the difference.

use contract::RequestKind;
use request_reply::groups::GroupState;
use std::collections::BTreeSet;

/// What the broker said of one worker group, and of the topic it consumes.
#[derive(Clone, Debug)]
pub struct GroupCheck {
    pub kind: RequestKind,
    pub group: String,
    /// The request topic the group consumes.
    pub topic: String,
    /// How many partitions the request topic has, when that could be read.
    pub partitions: Option<i32>,
    /// The group as its coordinator describes it, or why it could not be read.
    pub group_state: Result<GroupState, String>,
}

/// Why requests of `check.kind` would wait now, or `None` when a worker can take them.
pub fn why_waiting(check: &GroupCheck) -> Option<String> {
    let GroupCheck {
        group, topic, kind, ..
    } = check;
    let state = match &check.group_state {
        Err(error) => {
            return Some(format!(
                "the state of consumer group {group} cannot be read just now ({error})"
            ));
        }
        Ok(state) => state,
    };
    if state.members.is_empty() {
        return Some(format!(
            "no consumer in group {group}: {kind} requests wait in {topic} until a worker starts"
        ));
    }
    if state.state != "Stable" {
        return Some(format!(
            "the group {group} is rebalancing ({}): its workers are being given partitions",
            state.state
        ));
    }
    let assigned = state.assigned_partitions(topic);
    let unassigned: BTreeSet<i32> = (0..check.partitions.unwrap_or(0))
        .filter(|partition| !assigned.contains(partition))
        .collect();
    if !unassigned.is_empty() {
        let list: Vec<String> = unassigned.iter().map(ToString::to_string).collect();
        return Some(format!(
            "partition(s) {} of {topic} have no consumer in group {group}",
            list.join(", ")
        ));
    }
    None
}

/// What the banner adds when the broker is reachable but a worker cannot answer: each reason,
/// or `None` when every kind has a worker.
pub fn missing(waiting: &[(RequestKind, String)]) -> Option<String> {
    if waiting.is_empty() {
        return None;
    }
    let reasons: Vec<&str> = waiting.iter().map(|(_, why)| why.as_str()).collect();
    Some(format!("Requests will wait: {}.", reasons.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_reply::groups::GroupMember;

    fn check(state: &str, assigned: &[i32]) -> GroupCheck {
        let members = if assigned.is_empty() && state == "Empty" {
            Vec::new()
        } else {
            vec![GroupMember {
                member_id: "m-1".into(),
                client_id: "calculate-score-box-1-0".into(),
                host: "/127.0.0.1".into(),
                assigned: assigned
                    .iter()
                    .map(|partition| ("calculate-score".to_owned(), *partition))
                    .collect(),
            }]
        };
        GroupCheck {
            kind: RequestKind::Score,
            group: "calculate-score".into(),
            topic: "calculate-score".into(),
            partitions: Some(3),
            group_state: Ok(GroupState {
                group: "calculate-score".into(),
                state: state.into(),
                members,
            }),
        }
    }

    #[test]
    fn a_stable_group_with_every_partition_can_answer() {
        assert_eq!(why_waiting(&check("Stable", &[0, 1, 2])), None);
    }

    #[test]
    fn each_reason_a_request_waits_is_told_apart() {
        assert_eq!(
            why_waiting(&check("Empty", &[])).unwrap(),
            "no consumer in group calculate-score: score requests wait in calculate-score until \
             a worker starts"
        );
        assert!(
            why_waiting(&check("PreparingRebalance", &[0, 1, 2]))
                .unwrap()
                .contains("is rebalancing (PreparingRebalance)")
        );
        assert_eq!(
            why_waiting(&check("Stable", &[1])).unwrap(),
            "partition(s) 0, 2 of calculate-score have no consumer in group calculate-score"
        );
        let unreadable = GroupCheck {
            group_state: Err("coordinator not available".into()),
            ..check("Stable", &[])
        };
        assert!(
            why_waiting(&unreadable)
                .unwrap()
                .contains("cannot be read just now (coordinator not available)")
        );
    }

    #[test]
    fn the_banner_lists_every_reason_or_nothing() {
        assert_eq!(missing(&[]), None);
        let both = [
            (RequestKind::Invoice, "a".to_owned()),
            (RequestKind::Score, "b".to_owned()),
        ];
        assert_eq!(missing(&both).unwrap(), "Requests will wait: a; b.");
    }
}
