//! What the charts page shows of a window: the figures as text and as data attributes (for
//! screen readers, the page without JavaScript, and the browser test), and the four charts.

use super::series::{BUCKET_SECONDS, WINDOW_SECONDS, Window};
use super::svg::{self, Chart, Layer, Shape, Unit};
use crate::views::clock;
use contract::RequestKind;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Buckets in the last minute, for the "last minute" figures.
const LAST_MINUTE_BUCKETS: usize = (60 / BUCKET_SECONDS) as usize;

const INVOICE_COLOUR: &str = "#2457c5";
const SCORE_COLOUR: &str = "#c2410c";
const P50_COLOUR: &str = "#1f7a3f";
const P99_COLOUR: &str = "#6b21a8";
const PENDING_COLOUR: &str = "#2457c5";
const TIMEOUT_COLOUR: &str = "#b42318";
const LATE_COLOUR: &str = "#6b21a8";
const DUPLICATE_COLOUR: &str = "#9a6700";

/// One kind's requests in the window.
#[derive(Clone, Debug)]
pub struct KindFigures {
    /// `invoice` or `score`: the name in the data attributes.
    pub kind: &'static str,
    /// `Invoices` or `Scores`: the name in the text.
    pub label: &'static str,
    pub sent: u32,
    pub sent_last_minute: u32,
}

/// The figures and charts of one window.
#[derive(Clone, Debug)]
pub struct ChartsView {
    pub window_seconds: u64,
    pub window_minutes: u64,
    pub bucket_seconds: u64,
    /// When the figures were taken, in milliseconds since the epoch: each refresh has its own.
    pub generated_ms: u128,
    /// The same, `HH:MM:SS` UTC.
    pub generated: String,
    pub kinds: Vec<KindFigures>,
    pub matched: u32,
    pub late: u32,
    pub duplicates: u32,
    pub timeouts: u32,
    /// The latest sample of the requests waiting for their reply.
    pub pending_now: u32,
    /// The most waiting at once in the window.
    pub pending_peak: u32,
    /// Round-trip percentiles in milliseconds for the data attributes; empty without replies.
    pub p50_ms: String,
    pub p99_ms: String,
    /// The same as the text says them.
    pub p50: String,
    pub p99: String,
    pub requests_svg: String,
    pub round_trips_svg: String,
    pub pending_svg: String,
    pub problems_svg: String,
}

fn label_of(kind: RequestKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        RequestKind::Invoice => ("Invoices", "invoices", INVOICE_COLOUR),
        RequestKind::Score => ("Scores", "scores", SCORE_COLOUR),
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl ChartsView {
    pub fn new(window: &Window, now: SystemTime) -> Self {
        let totals = window.totals();
        let last_minute = window.totals_of_last(LAST_MINUTE_BUCKETS);
        let kinds = RequestKind::ALL
            .into_iter()
            .map(|kind| KindFigures {
                kind: kind.as_str(),
                label: label_of(kind).0,
                sent: totals.sent_of(kind),
                sent_last_minute: last_minute.sent_of(kind),
            })
            .collect::<Vec<_>>();
        let p50 = totals.round_trips.percentile(0.5).map(millis);
        let p99 = totals.round_trips.percentile(0.99).map(millis);
        let as_text = |value: Option<f64>| {
            value.map_or_else(|| "none yet".to_owned(), |ms| Unit::Millis.format(ms))
        };
        let as_attribute =
            |value: Option<f64>| value.map(|ms| format!("{ms:.3}")).unwrap_or_default();
        let pending_now = window.pending_now.unwrap_or(0);
        let pending_peak = totals.pending.unwrap_or(0);
        let charts = Charts { window };
        let requests_svg = svg::render(&charts.requests(&kinds));
        let round_trips_svg =
            svg::render(&charts.round_trips(totals.matched, &as_text(p50), &as_text(p99)));
        let pending_svg = svg::render(&charts.pending(pending_now, pending_peak));
        let problems_svg =
            svg::render(&charts.problems(totals.timeouts, totals.late, totals.duplicates));
        ChartsView {
            window_seconds: WINDOW_SECONDS,
            window_minutes: WINDOW_SECONDS / 60,
            bucket_seconds: BUCKET_SECONDS,
            generated_ms: now
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            generated: clock(now),
            kinds,
            matched: totals.matched,
            late: totals.late,
            duplicates: totals.duplicates,
            timeouts: totals.timeouts,
            pending_now,
            pending_peak,
            p50_ms: as_attribute(p50),
            p99_ms: as_attribute(p99),
            p50: as_text(p50),
            p99: as_text(p99),
            requests_svg,
            round_trips_svg,
            pending_svg,
            problems_svg,
        }
    }
}

/// The four charts of one window.
struct Charts<'a> {
    window: &'a Window,
}

impl Charts<'_> {
    fn chart(&self, id: &'static str, shape: Shape, unit: Unit, layers: Vec<Layer>) -> Chart {
        Chart {
            id,
            title: String::new(),
            description: String::new(),
            empty: "",
            unit,
            shape,
            layers,
            first_start: self.window.start_of(0),
            bucket: Duration::from_secs(BUCKET_SECONDS),
        }
    }

    /// One value a bucket.
    fn values(&self, value: impl Fn(&super::series::Bucket) -> Option<f64>) -> Vec<Option<f64>> {
        self.window.buckets.iter().map(value).collect()
    }

    fn requests(&self, kinds: &[KindFigures]) -> Chart {
        let layers = RequestKind::ALL
            .into_iter()
            .map(|kind| {
                let (_, name, colour) = label_of(kind);
                Layer {
                    name,
                    colour,
                    dashed: false,
                    values: self.values(|bucket| {
                        Some(f64::from(bucket.sent_of(kind)) / BUCKET_SECONDS as f64)
                    }),
                }
            })
            .collect();
        let sent = kinds
            .iter()
            .map(|kind| format!("{} {}", kind.label.to_lowercase(), kind.sent))
            .collect::<Vec<_>>()
            .join(", ");
        Chart {
            title: "Requests sent per second, by kind".into(),
            description: format!("Sent in the last {} minutes: {sent}.", WINDOW_SECONDS / 60),
            empty: "No requests sent in this window",
            ..self.chart("requests", Shape::Bars, Unit::PerSecond, layers)
        }
    }

    fn round_trips(&self, matched: u32, p50: &str, p99: &str) -> Chart {
        let percentile = |quantile: f64| {
            self.values(|bucket| bucket.round_trips.percentile(quantile).map(millis))
        };
        let layers = vec![
            Layer {
                name: "p50",
                colour: P50_COLOUR,
                dashed: false,
                values: percentile(0.5),
            },
            Layer {
                name: "p99",
                colour: P99_COLOUR,
                dashed: true,
                values: percentile(0.99),
            },
        ];
        Chart {
            title: "Round trip, p50 and p99".into(),
            description: format!("Of {matched} replies matched: p50 {p50}, p99 {p99}."),
            empty: "No replies matched in this window",
            ..self.chart("round-trips", Shape::Lines, Unit::Millis, layers)
        }
    }

    fn pending(&self, now: u32, peak: u32) -> Chart {
        let layers = vec![Layer {
            name: "pending",
            colour: PENDING_COLOUR,
            dashed: false,
            values: self.values(|bucket| bucket.pending.map(f64::from)),
        }];
        Chart {
            title: "Requests waiting for their reply".into(),
            description: format!("{now} waiting now, at most {peak} at once in this window."),
            empty: "No request waited in this window",
            ..self.chart("pending", Shape::Lines, Unit::Count, layers)
        }
    }

    fn problems(&self, timeouts: u32, late: u32, duplicates: u32) -> Chart {
        let layer = |name, colour, count: fn(&super::series::Bucket) -> u32| Layer {
            name,
            colour,
            dashed: false,
            values: self.values(|bucket| Some(f64::from(count(bucket)))),
        };
        let layers = vec![
            layer("timeouts", TIMEOUT_COLOUR, |bucket| bucket.timeouts),
            layer("late replies", LATE_COLOUR, |bucket| bucket.late),
            layer("duplicates", DUPLICATE_COLOUR, |bucket| bucket.duplicates),
        ];
        Chart {
            title: "Timeouts, late replies and duplicates".into(),
            description: format!(
                "{timeouts} timeouts, {late} late replies and {duplicates} duplicate replies in \
                 this window."
            ),
            empty: "No timeouts, late replies or duplicates",
            ..self.chart("problems", Shape::Bars, Unit::Count, layers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charts::series::Series;
    use crate::store::ReplyOutcome;

    #[test]
    fn the_figures_are_the_windows_and_each_chart_is_drawn() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut series = Series::default();
        for (second, kind) in [
            (0, RequestKind::Invoice),
            (1, RequestKind::Score),
            (100, RequestKind::Invoice),
        ] {
            series.record_sent(start + Duration::from_secs(second), kind);
        }
        for millis in [10, 20, 30] {
            series.record_reply(
                start + Duration::from_secs(101),
                ReplyOutcome::Matched(Duration::from_millis(millis)),
            );
        }
        series.record_reply(start + Duration::from_secs(102), ReplyOutcome::Duplicate);
        series.record_timeouts(start + Duration::from_secs(103), 1);
        series.record_pending(start + Duration::from_secs(104), 2);
        let now = start + Duration::from_secs(130);
        let view = ChartsView::new(&series.window(now), now);
        assert_eq!(
            view.kinds
                .iter()
                .map(|kind| (kind.kind, kind.sent, kind.sent_last_minute))
                .collect::<Vec<_>>(),
            [("invoice", 2, 1), ("score", 1, 0)]
        );
        assert_eq!(
            (view.matched, view.duplicates, view.timeouts, view.late),
            (3, 1, 1, 0)
        );
        assert_eq!((view.pending_now, view.pending_peak), (2, 2));
        // The second and the third of three, within the histogram's 9.1 %.
        for (text, attribute, expected) in [
            (&view.p50, &view.p50_ms, 20.0),
            (&view.p99, &view.p99_ms, 30.0),
        ] {
            let ms: f64 = attribute.parse().unwrap();
            assert!(
                (ms / expected - 1.0).abs() < 0.091,
                "{ms} ms for {expected} ms"
            );
            assert_eq!(*text, Unit::Millis.format(ms));
        }
        assert_eq!(view.window_seconds, 600);
        assert_eq!(view.generated, "22:15:30");
        assert!(
            view.requests_svg
                .contains("<title>invoices 0.5/s at 22:13:20</title>")
        );
        assert!(
            view.requests_svg
                .contains("Sent in the last 10 minutes: invoices 2, scores 1.")
        );
        assert!(view.round_trips_svg.contains(&format!(
            "Of 3 replies matched: p50 {}, p99 {}.",
            view.p50, view.p99
        )));
        assert!(
            view.pending_svg
                .contains("<title>pending 2 at 22:15:04</title>")
        );
        assert!(
            view.problems_svg
                .contains("<title>duplicates 1 at 22:15:02</title>")
        );
        assert!(
            view.problems_svg
                .contains("<title>timeouts 1 at 22:15:02</title>")
        );
    }

    #[test]
    fn an_idle_window_has_no_percentiles() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let view = ChartsView::new(&Series::default().window(now), now);
        assert_eq!((view.p50.as_str(), view.p50_ms.as_str()), ("none yet", ""));
        assert!(
            view.round_trips_svg
                .contains("No replies matched in this window")
        );
        assert!(
            view.pending_svg
                .contains("No request waited in this window")
        );
        assert_eq!(
            (view.matched, view.pending_now, view.pending_peak),
            (0, 0, 0)
        );
    }
}
