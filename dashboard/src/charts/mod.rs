//! Live charts (`GET /charts`): requests a second by kind, round-trip p50 and p99, the
//! requests waiting for their reply, and the timeouts, late replies and duplicates, over the
//! last ten minutes. Drawn on the server as inline SVG, so the page needs no script and no
//! asset of its own: without JavaScript it reloads itself every 5 s; with it, `app.js` swaps
//! in the charts block from `GET /charts/live` every 2 s.
//!
//! The figures are counted where [`crate::metrics::DashboardMetrics`] counts its own (one
//! [`Recorder`] lives beside its counters), so the charts and `/metrics` cannot disagree about
//! what happened; they are this process's: history rebuilt from the log at start-up is not
//! charted.

mod latency;
mod page;
mod series;
mod svg;

use crate::AppState;
use crate::store::ReplyOutcome;
use crate::views::BannerView;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use contract::RequestKind;
use page::ChartsView;
use series::{Series, Window};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// The series the charts draw, fed as things happen, read by the pages.
#[derive(Debug, Default)]
pub struct Recorder {
    series: Mutex<Series>,
}

impl Recorder {
    fn series(&self) -> MutexGuard<'_, Series> {
        // A panic while recording leaves counts that are still counts.
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn request_sent(&self, kind: RequestKind) {
        self.series().record_sent(SystemTime::now(), kind);
    }

    pub fn reply_received(&self, outcome: ReplyOutcome) {
        self.series().record_reply(SystemTime::now(), outcome);
    }

    pub fn timed_out(&self, count: usize) {
        self.series().record_timeouts(SystemTime::now(), count);
    }

    /// Samples the requests waiting for their reply, counted by `pending` (at most once a
    /// second, however often this is called: counting walks the whole store).
    pub fn sample_pending(&self, pending: impl FnOnce() -> usize) {
        let now = SystemTime::now();
        if self.series().wants_pending_sample(now) {
            // Counted without holding the series, which the request handlers need.
            let count = pending();
            self.series().record_pending(now, count);
        }
    }

    fn window(&self, now: SystemTime) -> Window {
        self.series().window(now)
    }
}

/// The whole page.
#[derive(Template, WebTemplate)]
#[template(path = "charts.html")]
pub struct ChartsPage {
    pub banner: BannerView,
    pub charts: ChartsView,
}

/// The charts block alone, which the page's script swaps in.
#[derive(Template, WebTemplate)]
#[template(path = "charts_live.html")]
pub struct ChartsFragment {
    pub charts: ChartsView,
}

fn current(state: &AppState) -> ChartsView {
    let now = SystemTime::now();
    ChartsView::new(&state.metrics().recent().window(now), now)
}

/// `GET /charts`.
pub async fn charts_page(State(state): State<AppState>) -> ChartsPage {
    ChartsPage {
        banner: BannerView::from(state.broker_status()),
        charts: current(&state),
    }
}

/// `GET /charts/live`.
pub async fn live_charts(State(state): State<AppState>) -> ChartsFragment {
    ChartsFragment {
        charts: current(&state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn view_of(recorder: &Recorder) -> ChartsView {
        let now = SystemTime::now();
        ChartsView::new(&recorder.window(now), now)
    }

    #[test]
    fn the_page_carries_the_figures_as_data_attributes_and_text() {
        let recorder = Recorder::default();
        for kind in [
            RequestKind::Invoice,
            RequestKind::Score,
            RequestKind::Invoice,
        ] {
            recorder.request_sent(kind);
        }
        for millis in [12, 15, 40] {
            recorder.reply_received(ReplyOutcome::Matched(Duration::from_millis(millis)));
        }
        recorder.reply_received(ReplyOutcome::Duplicate);
        recorder.timed_out(0);
        recorder.sample_pending(|| 0);
        let page = ChartsPage {
            banner: BannerView {
                green: true,
                message: "Connected".into(),
            },
            charts: view_of(&recorder),
        };
        let html = page.render().unwrap();
        for expected in [
            "<section id=\"charts\"",
            "data-window-seconds=\"600\"",
            "data-bucket-seconds=\"2\"",
            "data-sent-invoice=\"2\"",
            "data-sent-score=\"1\"",
            "data-matched=\"3\"",
            "data-late=\"0\"",
            "data-duplicates=\"1\"",
            "data-timeouts=\"0\"",
            "data-pending=\"0\"",
            "<dd data-figure=\"sent-invoice\">2</dd>",
            "<dd data-figure=\"duplicates\">1</dd>",
            "<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>",
            "<a href=\"/charts\">Charts</a>",
            "<svg viewBox=",
        ] {
            assert!(html.contains(expected), "missing {expected}:\n{html}");
        }
        assert_eq!(html.matches("<svg ").count(), 4, "four charts");
        assert_eq!(html.matches("<h2").count(), 4, "a heading each");
        assert!(!html.contains("style="), "no style attribute: {html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
    }

    #[test]
    fn the_fragment_is_the_charts_block_alone() {
        let recorder = Recorder::default();
        recorder.request_sent(RequestKind::Score);
        let html = ChartsFragment {
            charts: view_of(&recorder),
        }
        .render()
        .unwrap();
        assert!(
            html.trim_start().starts_with("<section id=\"charts\""),
            "{html}"
        );
        assert!(html.trim_end().ends_with("</section>"), "{html}");
        assert!(html.contains("data-sent-score=\"1\""), "{html}");
        assert!(
            !html.contains("<html") && !html.contains("<noscript>"),
            "{html}"
        );
    }

    #[test]
    fn pending_is_counted_once_a_second_at_most() {
        let recorder = Recorder::default();
        let mut counted = 0;
        // However quickly the sampler ticks, the store is walked at most twice here (the calls
        // may straddle a second).
        for _ in 0..100 {
            recorder.sample_pending(|| {
                counted += 1;
                3
            });
        }
        assert!((1..=2).contains(&counted), "counted {counted} times");
        assert_eq!(view_of(&recorder).pending_now, 3);
    }
}
