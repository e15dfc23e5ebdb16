//! Prometheus metrics of the responder loop, for a registry the caller exposes however it likes
//! (this project's services serve it over HTTP, see the `service` crate).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Buckets from 0.5 ms to about 4 s: request/reply on one machine lives at the low end, an
/// outage at the high end.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 14)
}

/// Renders a registry in the text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Labels of the per-partition gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The partition number.
    pub partition: i64,
}

/// What a worker counts.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    /// Requests answered with a reply.
    pub handled: Counter,
    /// Requests that could not be handled (bad payload or headers, undeliverable reply).
    pub errors: Counter,
    /// Copies written to the dead-letter topic.
    pub dead_lettered: Counter,
    /// From consuming a request to the broker acknowledging everything it caused.
    pub handling_seconds: Histogram,
    /// Messages behind the end of each assigned partition, from librdkafka's statistics.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// The watchdog sent the consumer back to a partition it had stopped fetching.
    pub consumer_recoveries: Counter,
    /// A reply was not acknowledged in time and the reply producer was replaced.
    pub producer_replacements: Counter,
    /// The consumer lost its group for good (see the responder's `group_watch`) and was replaced.
    pub consumer_replacements: Counter,
    /// 1 while the consumer is a settled member of its group (joined, partitions handed out),
    /// else 0: what a worker's readiness check reports, since before that it reads nothing.
    pub group_joined: Gauge,
    /// Requests not handled because their deadline had passed when they were picked up.
    pub deadline_exceeded: Counter,
    /// Times the service was tried again after a transient failure.
    pub handler_retries: Counter,
    /// Transactions committed (exactly-once delivery).
    pub transactions_committed: Counter,
    /// Transactions aborted, their requests answered again (exactly-once delivery).
    pub transactions_aborted: Counter,
}

impl WorkerMetrics {
    /// Creates the metrics and registers them (as `worker_*`) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = WorkerMetrics {
            handled: Counter::default(),
            errors: Counter::default(),
            dead_lettered: Counter::default(),
            handling_seconds: Histogram::new(latency_buckets()),
            consumer_lag: Family::default(),
            consumer_recoveries: Counter::default(),
            producer_replacements: Counter::default(),
            consumer_replacements: Counter::default(),
            group_joined: Gauge::default(),
            deadline_exceeded: Counter::default(),
            handler_retries: Counter::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Counter::default(),
        };
        let worker = registry.sub_registry_with_prefix("worker");
        worker.register(
            "requests_handled",
            "Requests answered with a reply",
            metrics.handled.clone(),
        );
        worker.register(
            "request_errors",
            "Requests that could not be handled",
            metrics.errors.clone(),
        );
        worker.register(
            "dead_lettered",
            "Copies written to the dead-letter topic",
            metrics.dead_lettered.clone(),
        );
        worker.register(
            "handling_seconds",
            "From consuming a request to the acknowledgement of its reply",
            metrics.handling_seconds.clone(),
        );
        worker.register(
            "consumer_lag",
            "Messages behind the end of each assigned partition",
            metrics.consumer_lag.clone(),
        );
        worker.register(
            "consumer_recoveries",
            "Times the watchdog sent the consumer back to a partition it had stopped fetching",
            metrics.consumer_recoveries.clone(),
        );
        worker.register(
            "producer_replacements",
            "Times a reply went unacknowledged for message.timeout.ms and the reply producer was replaced",
            metrics.producer_replacements.clone(),
        );
        worker.register(
            "consumer_replacements",
            "Times the consumer had no group for 5 s while the brokers answered and was replaced",
            metrics.consumer_replacements.clone(),
        );
        worker.register(
            "group_joined",
            "1 while the consumer is a settled member of its consumer group, else 0",
            metrics.group_joined.clone(),
        );
        worker.register(
            "deadline_exceeded",
            "Requests not handled because their deadline had passed when they were picked up",
            metrics.deadline_exceeded.clone(),
        );
        worker.register(
            "handler_retries",
            "Times the service was tried again after a transient failure",
            metrics.handler_retries.clone(),
        );
        worker.register(
            "transactions_committed",
            "Transactions committed with their replies and offsets (exactly-once delivery)",
            metrics.transactions_committed.clone(),
        );
        worker.register(
            "transactions_aborted",
            "Transactions aborted, their requests read again and answered anew (exactly-once delivery)",
            metrics.transactions_aborted.clone(),
        );
        metrics
    }

    /// Whether the consumer counts as joined: librdkafka's statistics say its group handler is
    /// up and its join is settled (`steady`); anything else (looking for the coordinator,
    /// joining, rebalancing) counts as not joined.
    pub fn record_group(&self, statistics: &rdkafka::statistics::Statistics) {
        let joined = statistics
            .cgrp
            .as_ref()
            .is_some_and(|group| group.state == "up" && group.join_state == "steady");
        self.group_joined.set(i64::from(joined));
    }

    /// Whether the last statistics said the consumer is a settled member of its group.
    pub fn is_group_joined(&self) -> bool {
        self.group_joined.get() == 1
    }

    /// Updates the lag gauges from librdkafka's statistics (partition -1 is librdkafka's
    /// internal "unassigned" partition; a lag of -1 means unknown).
    pub fn record_lag(&self, statistics: &rdkafka::statistics::Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    self.consumer_lag
                        .get_or_create(&PartitionLabels {
                            partition: i64::from(*partition),
                        })
                        .set(stats.consumer_lag);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_metrics_render_with_their_names() {
        let mut registry = Registry::default();
        let metrics = WorkerMetrics::register(&mut registry);
        metrics.handled.inc();
        metrics.handling_seconds.observe(0.002);
        metrics
            .consumer_lag
            .get_or_create(&PartitionLabels { partition: 2 })
            .set(7);
        let text = render(&registry);
        assert!(text.contains("worker_requests_handled_total 1"), "{text}");
        assert!(text.contains("worker_handling_seconds_count 1"), "{text}");
        assert!(
            text.contains("worker_consumer_lag{partition=\"2\"} 7"),
            "{text}"
        );
    }
}
