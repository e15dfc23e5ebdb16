//! The worker consumer's context: hands partitions over cleanly on a rebalance (committing what
//! is acknowledged), implements `--reset`, and feeds librdkafka's statistics to the lag gauges.

use crate::metrics::WorkerMetrics;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

/// The consumer's context: logs rebalances and implements `--reset`.
pub(super) struct WorkerContext {
    /// Partitions still to be rewound to the beginning on their first assignment (`--reset`).
    pub(super) reset: bool,
    pub(super) already_reset: Mutex<HashSet<(String, i32)>>,
    /// Consumer lag comes from librdkafka's periodic statistics.
    pub(super) metrics: WorkerMetrics,
    /// Whether the statistics last said the consumer's group handler is up, and when: the
    /// worker tells a consumer that lost its group for good by it (see `group_watch`).
    pub(super) group_up: Mutex<Option<(bool, Instant)>>,
    /// Partitions taken from this consumer since the worker last looked: exactly-once delivery
    /// must abandon its open transaction then (see `transactional`).
    pub(super) revoked: Mutex<HashSet<(String, i32)>>,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        self.metrics.record_lag(&statistics);
        self.metrics.record_group(&statistics);
        let up = statistics.cgrp.is_some_and(|group| group.state == "up");
        *self
            .group_up
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some((up, Instant::now()));
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        error: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match error {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if self.reset {
                    self.rewind_new_partitions(partitions);
                }
                tracing::info!(partitions = ?partition_numbers(partitions), "assigned partitions");
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(partitions = ?partition_numbers(partitions), "partitions revoked");
                self.record_revoked(partitions);
                // Hand over what is acknowledged so far, so the next owner does not redo it.
                if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(%error, "nothing committed on revoke");
                }
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                self.record_revoked(partitions);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "cannot apply the new partition assignment");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &TopicPartitionList,
    ) {
        if let Err(error) = result {
            if error != KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset) {
                tracing::warn!(%error, "offset commit failed");
            }
        }
    }
}

impl WorkerContext {
    /// A context for a consumer made in place of `previous`: partitions `--reset` rewound
    /// already stay as they are, and the worker counts as out of its group until the new
    /// consumer has joined.
    pub(super) fn successor(previous: &WorkerContext) -> WorkerContext {
        previous.metrics.group_joined.set(0);
        let already_reset = previous
            .already_reset
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone();
        WorkerContext {
            reset: previous.reset,
            already_reset: Mutex::new(already_reset),
            metrics: previous.metrics.clone(),
            group_up: Mutex::default(),
            revoked: Mutex::default(),
        }
    }

    /// What the statistics last said of the group, taken so each report is seen once.
    pub(super) fn take_group_state(&self) -> Option<(bool, Instant)> {
        self.group_up
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take()
    }

    /// The partitions revoked since the last call, taken so each revocation is seen once.
    pub(super) fn take_revoked(&self) -> HashSet<(String, i32)> {
        std::mem::take(
            &mut *self
                .revoked
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    fn record_revoked(&self, partitions: &TopicPartitionList) {
        self.revoked
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend(
                partitions
                    .elements()
                    .iter()
                    .map(|element| (element.topic().to_owned(), element.partition())),
            );
    }

    fn rewind_new_partitions(&self, partitions: &mut TopicPartitionList) {
        let mut already_reset = self
            .already_reset
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let fresh: Vec<(String, i32)> = partitions
            .elements()
            .iter()
            .map(|element| (element.topic().to_owned(), element.partition()))
            .filter(|key| !already_reset.contains(key))
            .collect();
        for (topic, partition) in fresh {
            if let Err(error) =
                partitions.set_partition_offset(&topic, partition, Offset::Beginning)
            {
                tracing::error!(%error, topic, partition, "cannot rewind partition");
            }
            tracing::info!(
                topic,
                partition,
                "--reset: reading partition from the beginning"
            );
            already_reset.insert((topic, partition));
        }
    }
}

fn partition_numbers(partitions: &TopicPartitionList) -> Vec<i32> {
    partitions
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}
