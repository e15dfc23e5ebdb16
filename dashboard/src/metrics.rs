//! The dashboard's Prometheus metrics, served at `GET /metrics` on its own port.

use contract::RequestKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use request_reply::metrics::latency_buckets;
use request_reply::requester::ListenerCounters;

use crate::charts::Recorder;
use crate::store::ReplyOutcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug)]
pub struct DashboardMetrics {
    registry: Registry,
    requests_sent: Family<KindLabels, Counter>,
    replies: Family<OutcomeLabels, Counter>,
    timeouts: Counter,
    pending: Gauge,
    round_trip_seconds: Histogram,
    broker_up: Gauge,
    /// What the reply listener's watchdog did (see `request_reply::watchdog`).
    listener: ListenerCounters,
    /// The last minutes of the same events, for the charts page.
    recent: Recorder,
}

impl Default for DashboardMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = DashboardMetrics {
            requests_sent: Family::default(),
            replies: Family::default(),
            timeouts: Counter::default(),
            pending: Gauge::default(),
            round_trip_seconds: Histogram::new(latency_buckets()),
            broker_up: Gauge::default(),
            listener: ListenerCounters::default(),
            recent: Recorder::default(),
            registry: Registry::default(),
        };
        let dashboard = registry.sub_registry_with_prefix("dashboard");
        dashboard.register(
            "requests_sent",
            "Requests accepted by the broker, per kind",
            metrics.requests_sent.clone(),
        );
        dashboard.register(
            "replies",
            "Replies received, by what became of them: matched, late, duplicate, uncorrelated, foreign",
            metrics.replies.clone(),
        );
        dashboard.register(
            "timeouts",
            "Requests that reached their timeout without a reply",
            metrics.timeouts.clone(),
        );
        dashboard.register(
            "pending",
            "Requests waiting for their reply",
            metrics.pending.clone(),
        );
        dashboard.register(
            "round_trip_seconds",
            "From sending a request to receiving its first reply",
            metrics.round_trip_seconds.clone(),
        );
        dashboard.register(
            "broker_up",
            "1 while the broker answers and the reply listener is assigned",
            metrics.broker_up.clone(),
        );
        dashboard.register(
            "reply_listener_recoveries",
            "Times the reply listener's watchdog replaced a consumer that had stopped reading a partition with replies in it",
            metrics.listener.recoveries.clone(),
        );
        dashboard.register(
            "replies_skipped",
            "Replies skipped because they could not be decoded (the partition moves on past them)",
            metrics.listener.skipped.clone(),
        );
        DashboardMetrics {
            registry,
            ..metrics
        }
    }
}

impl DashboardMetrics {
    pub fn request_sent(&self, kind: RequestKind) {
        self.requests_sent
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .inc();
        self.recent.request_sent(kind);
    }

    pub fn reply_received(&self, outcome: ReplyOutcome) {
        let label = match outcome {
            ReplyOutcome::Matched(round_trip) => {
                self.round_trip_seconds.observe(round_trip.as_secs_f64());
                "matched"
            }
            ReplyOutcome::Late(_) => "late",
            ReplyOutcome::Duplicate => "duplicate",
            ReplyOutcome::Uncorrelated => "uncorrelated",
            ReplyOutcome::Foreign => "foreign",
        };
        self.replies
            .get_or_create(&OutcomeLabels {
                outcome: label.into(),
            })
            .inc();
        self.recent.reply_received(outcome);
    }

    pub fn timed_out(&self, count: usize) {
        self.timeouts.inc_by(count as u64);
        self.recent.timed_out(count);
    }

    /// Samples the requests waiting for their reply, for the charts (at most once a second).
    pub fn sample_pending(&self, pending: impl FnOnce() -> usize) {
        self.recent.sample_pending(pending);
    }

    /// The series the charts page draws, fed by the methods above.
    pub fn recent(&self) -> &Recorder {
        &self.recent
    }

    /// The counters the reply listener counts its recoveries and skips in.
    pub fn listener_counters(&self) -> ListenerCounters {
        self.listener.clone()
    }

    pub fn broker_healthy(&self, healthy: bool) {
        self.broker_up.set(i64::from(healthy));
    }

    /// The text a scrape gets, with the pending gauge brought up to date first.
    pub fn render(&self, pending: usize) -> String {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        request_reply::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every metric the Grafana board in docker/ queries is one the services export.
    #[test]
    fn the_grafana_board_only_uses_exported_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docker/grafana/dashboards/request-reply.json"
        );
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Label families render only once they have a member.
        let dashboard = DashboardMetrics::default();
        dashboard.request_sent(RequestKind::Score);
        dashboard.reply_received(ReplyOutcome::Duplicate);
        let mut worker_registry = Registry::default();
        let worker = request_reply::metrics::WorkerMetrics::register(&mut worker_registry);
        worker
            .consumer_lag
            .get_or_create(&request_reply::metrics::PartitionLabels { partition: 0 })
            .set(0);
        let exported = dashboard.render(0) + &request_reply::metrics::render(&worker_registry);
        let mut checked = 0;
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let names = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|word| word.starts_with("dashboard_") || word.starts_with("worker_"));
                for name in names {
                    let base = ["_total", "_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .unwrap_or(name);
                    assert!(
                        exported.contains(&format!("# TYPE {base} ")),
                        "{name} in {expr} is not exported"
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 10,
            "the board should query the services' metrics"
        );
    }

    #[test]
    fn every_metric_renders_under_its_name() {
        let metrics = DashboardMetrics::default();
        metrics.request_sent(RequestKind::Invoice);
        metrics.reply_received(ReplyOutcome::Matched(Duration::from_millis(3)));
        metrics.reply_received(ReplyOutcome::Duplicate);
        metrics.timed_out(2);
        metrics.broker_healthy(true);
        let text = metrics.render(5);
        for expected in [
            "dashboard_requests_sent_total{kind=\"invoice\"} 1",
            "dashboard_replies_total{outcome=\"matched\"} 1",
            "dashboard_replies_total{outcome=\"duplicate\"} 1",
            "dashboard_timeouts_total 2",
            "dashboard_pending 5",
            "dashboard_round_trip_seconds_count 1",
            "dashboard_broker_up 1",
            "dashboard_reply_listener_recoveries_total 0",
            "dashboard_replies_skipped_total 0",
        ] {
            assert!(text.contains(expected), "missing {expected}:\n{text}");
        }
    }
}
