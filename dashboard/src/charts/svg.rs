//! Charts drawn as inline SVG on the server: bars or lines over time, with axes, a legend and a
//! `<title>` tooltip on every mark, so a chart needs neither a script nor a file of its own.
//! Presentation attributes only (`fill`, `stroke`): the pages' Content-Security-Policy forbids
//! `style` attributes and inline scripts (see `crate::security`). The picture scales with its
//! `viewBox` to whatever width the page gives it.

use crate::views::clock;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

/// The drawing's own coordinates; the page scales them to its width.
const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 200.0;
/// Room for the y labels on the left, the legend on top, the time labels below.
const LEFT: f64 = 50.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 20.0;
/// The narrowest bar: one event in ten minutes still shows on a phone.
const LEAST_BAR_WIDTH: f64 = 2.0;
/// Time labels every two minutes, counted back from now.
const TICK_SECONDS: u64 = 120;
const TEXT_COLOUR: &str = "#5d6575";
const GRID_COLOUR: &str = "#dde1e8";

/// What the values of a chart measure, which decides how they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Events a second.
    PerSecond,
    /// A duration in milliseconds.
    Millis,
    /// A number of things.
    Count,
}

impl Unit {
    /// A value as the axis and the tooltips write it.
    pub fn format(self, value: f64) -> String {
        match self {
            Unit::PerSecond if value >= 10.0 => format!("{value:.0}/s"),
            Unit::PerSecond => format!("{}/s", one_decimal(value)),
            Unit::Millis if value >= 10_000.0 => format!("{:.0} s", value / 1000.0),
            Unit::Millis if value >= 1000.0 => format!("{} s", one_decimal(value / 1000.0)),
            Unit::Millis if value >= 10.0 => format!("{value:.0} ms"),
            Unit::Millis => format!("{} ms", one_decimal(value)),
            Unit::Count => format!("{value:.0}"),
        }
    }

    /// The lowest top of the scale, so that an idle chart does not magnify nothing.
    fn least_top(self) -> f64 {
        match self {
            Unit::PerSecond => 1.0,
            Unit::Millis => 10.0,
            Unit::Count => 2.0,
        }
    }
}

/// One decimal, none when it is 0: `2.5`, `2`.
fn one_decimal(value: f64) -> String {
    let text = format!("{value:.1}");
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_owned(),
        None => text,
    }
}

/// Bars stack their layers in each bucket; lines draw each layer on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Bars,
    Lines,
}

/// One series of values, one a bucket, oldest first; `None` where there is nothing to draw
/// (no reply to take a percentile of, no sample taken).
#[derive(Clone, Debug)]
pub struct Layer {
    /// Its name in the legend and the tooltips.
    pub name: &'static str,
    pub colour: &'static str,
    /// Drawn dashed, so that two lines differ by more than their colour.
    pub dashed: bool,
    pub values: Vec<Option<f64>>,
}

/// One chart and what it says about itself to people who cannot see it.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Unique on the page: the prefix of the ids its title and description carry.
    pub id: &'static str,
    pub title: String,
    /// The figures in words, for screen readers.
    pub description: String,
    /// What the chart says when there is nothing to draw.
    pub empty: &'static str,
    pub unit: Unit,
    pub shape: Shape,
    pub layers: Vec<Layer>,
    /// When the first (oldest) bucket began, and how long each lasts.
    pub first_start: SystemTime,
    pub bucket: Duration,
}

impl Chart {
    fn buckets(&self) -> usize {
        self.layers
            .iter()
            .map(|layer| layer.values.len())
            .max()
            .unwrap_or(0)
    }

    fn value(&self, layer: &Layer, index: usize) -> Option<f64> {
        layer.values.get(index).copied().flatten()
    }

    /// The highest point drawn: the tallest stack of bars, or the highest point of a line.
    fn highest(&self) -> f64 {
        (0..self.buckets())
            .map(|index| {
                let values = self.layers.iter().map(|layer| self.value(layer, index));
                match self.shape {
                    Shape::Bars => values.flatten().sum(),
                    Shape::Lines => values.flatten().fold(0.0, f64::max),
                }
            })
            .fold(0.0, f64::max)
    }

    fn has_marks(&self) -> bool {
        self.layers
            .iter()
            .any(|layer| layer.values.iter().flatten().any(|value| *value > 0.0))
    }
}

/// The chart as an `<svg>` element.
pub fn render(chart: &Chart) -> String {
    let buckets = chart.buckets().max(1);
    let top = nice_top(chart.highest().max(chart.unit.least_top()));
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let step = plot_width / buckets as f64;
    let x_of = |index: usize| LEFT + step * index as f64;
    let y_of = |value: f64| TOP + plot_height * (1.0 - value / top);
    let id = escape(chart.id);
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        svg,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\" font-family=\"system-ui, sans-serif\" \
         font-size=\"12\"><title id=\"{id}-title\">{}</title><desc id=\"{id}-desc\">{}</desc>",
        escape(&chart.title),
        escape(&chart.description),
    );
    // The value axis: a line at 0, half and the top, labelled on the left.
    for value in [0.0, top / 2.0, top] {
        let y = y_of(value);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID_COLOUR}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"{TEXT_COLOUR}\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            escape(&chart.unit.format(value)),
        );
    }
    // The time axis: minutes back from the newest bucket, on the right.
    let span = chart.bucket.as_secs().max(1) * buckets as u64;
    for back in (0..=span / TICK_SECONDS).map(|tick| tick * TICK_SECONDS) {
        let x = WIDTH - RIGHT - plot_width * back as f64 / span as f64;
        let (label, anchor) = match back {
            0 => ("now".to_owned(), "end"),
            _ => (format!("\u{2212}{} min", back / 60), "middle"),
        };
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{GRID_COLOUR}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"{TEXT_COLOUR}\">{label}</text>",
            TOP + plot_height,
            TOP + plot_height + 4.0,
            HEIGHT - 6.0,
        );
    }
    let at = |index: usize| clock(chart.first_start + chart.bucket * index as u32);
    match chart.shape {
        Shape::Bars => {
            let width = (step * 0.85).max(LEAST_BAR_WIDTH);
            for index in 0..buckets {
                let mut base = 0.0;
                for layer in &chart.layers {
                    let value = chart.value(layer, index).unwrap_or(0.0);
                    if value <= 0.0 {
                        continue;
                    }
                    let (y, height) = (y_of(base + value), plot_height * value / top);
                    base += value;
                    let _ = write!(
                        svg,
                        "<rect x=\"{:.2}\" y=\"{y:.1}\" width=\"{width:.2}\" height=\"{height:.1}\" \
                         fill=\"{}\"><title>{} {} at {}</title></rect>",
                        x_of(index) + (step - width) / 2.0,
                        layer.colour,
                        escape(layer.name),
                        escape(&chart.unit.format(value)),
                        at(index),
                    );
                }
            }
        }
        Shape::Lines => {
            for layer in &chart.layers {
                let mut path = String::new();
                let mut marks = String::new();
                let mut drawing = false;
                for index in 0..buckets {
                    let Some(value) = chart.value(layer, index) else {
                        drawing = false;
                        continue;
                    };
                    let (x, y) = (x_of(index) + step / 2.0, y_of(value));
                    let _ = write!(path, "{}{x:.1} {y:.1} ", if drawing { "L" } else { "M" });
                    drawing = true;
                    if value > 0.0 {
                        let _ = write!(
                            marks,
                            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"{}\"><title>{} {} at {}</title></circle>",
                            layer.colour,
                            escape(layer.name),
                            escape(&chart.unit.format(value)),
                            at(index),
                        );
                    }
                }
                if !path.is_empty() {
                    let _ = write!(
                        svg,
                        "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"{}/>",
                        path.trim_end(),
                        layer.colour,
                        if layer.dashed {
                            " stroke-dasharray=\"4 3\""
                        } else {
                            ""
                        },
                    );
                }
                svg.push_str(&marks);
            }
        }
    }
    if !chart.has_marks() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{TEXT_COLOUR}\">{}</text>",
            LEFT + plot_width / 2.0,
            // Between the gridlines, not on one.
            TOP + plot_height * 0.3,
            escape(chart.empty),
        );
    }
    legend(&mut svg, chart);
    svg.push_str("</svg>");
    svg
}

/// A sample of each layer and its name, in a row above the plot.
fn legend(svg: &mut String, chart: &Chart) {
    let mut x = LEFT;
    let y = TOP - 10.0;
    for layer in &chart.layers {
        let _ = match chart.shape {
            Shape::Bars => write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/>",
                y - 8.0,
                layer.colour
            ),
            Shape::Lines => write!(
                svg,
                "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"2\"{}/>",
                x + 14.0,
                y - 4.0,
                y - 4.0,
                layer.colour,
                if layer.dashed {
                    " stroke-dasharray=\"4 3\""
                } else {
                    ""
                },
            ),
        };
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{y:.1}\" fill=\"{TEXT_COLOUR}\">{}</text>",
            x + 17.0,
            escape(layer.name),
        );
        // About 6.4 units a character at this size.
        x += 17.0 + 6.4 * layer.name.chars().count() as f64 + 12.0;
    }
}

/// The smallest of 1, 2, 4, 6, 8 (times a power of ten) at or above `value`: the top of the
/// scale, whose half is a round number too.
fn nice_top(value: f64) -> f64 {
    let magnitude = 10_f64.powf(value.log10().floor());
    [1.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|top| *top >= value)
        .unwrap_or(10.0 * magnitude)
}

/// Text as it may stand in SVG content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn chart(shape: Shape, unit: Unit, layers: Vec<Layer>) -> Chart {
        Chart {
            id: "test",
            title: "A chart".into(),
            description: "What it shows".into(),
            empty: "Nothing yet",
            unit,
            shape,
            layers,
            // 12:00:00 UTC.
            first_start: UNIX_EPOCH + Duration::from_secs(12 * 3600),
            bucket: Duration::from_secs(2),
        }
    }

    fn layer(name: &'static str, values: Vec<Option<f64>>) -> Layer {
        Layer {
            name,
            colour: "#2457c5",
            dashed: false,
            values,
        }
    }

    #[test]
    fn bars_carry_their_figures_in_tooltips_and_the_axes_are_labelled() {
        let mut values = vec![None; 300];
        values[3] = Some(1.5);
        let svg = render(&chart(
            Shape::Bars,
            Unit::PerSecond,
            vec![
                layer("invoices", values),
                layer("scores", vec![Some(0.5); 300]),
            ],
        ));
        assert!(
            svg.starts_with("<svg viewBox=\"0 0 400 200\" width=\"100%\""),
            "{svg}"
        );
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert!(
            svg.contains("<title>invoices 1.5/s at 12:00:06</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>scores 0.5/s at 12:09:58</title>"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 300 + 2,
            "bars and legend swatches"
        );
        // The tallest stack is 2/s: the scale's top, and its half.
        assert!(
            svg.contains(">2/s</text>") && svg.contains(">1/s</text>"),
            "{svg}"
        );
        assert!(
            svg.contains(">now</text>") && svg.contains(">\u{2212}10 min</text>"),
            "{svg}"
        );
        assert!(!svg.contains("Nothing yet"), "{svg}");
    }

    #[test]
    fn lines_break_where_there_is_no_value_and_mark_each_point() {
        let svg = render(&chart(
            Shape::Lines,
            Unit::Millis,
            vec![Layer {
                dashed: true,
                ..layer("p99", vec![Some(12.0), Some(30.0), None, Some(2500.0)])
            }],
        ));
        assert_eq!(
            svg.matches(" M").count() + svg.matches("\"M").count(),
            2,
            "{svg}"
        );
        assert!(svg.contains("stroke-dasharray"), "{svg}");
        assert!(
            svg.contains("<title>p99 12 ms at 12:00:00</title>"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>p99 2.5 s at 12:00:06</title>"),
            "{svg}"
        );
        assert!(
            svg.contains(">4 s</text>") && svg.contains(">2 s</text>"),
            "{svg}"
        );
        assert!(svg.contains(">0 ms</text>"), "{svg}");
    }

    #[test]
    fn an_empty_chart_says_so_and_keeps_a_scale() {
        let svg = render(&chart(
            Shape::Lines,
            Unit::Count,
            vec![layer("pending", vec![Some(0.0); 300])],
        ));
        assert!(svg.contains(">Nothing yet</text>"), "{svg}");
        assert!(
            svg.contains(">2</text>") && svg.contains(">1</text>"),
            "{svg}"
        );
        assert!(!svg.contains("<circle"), "{svg}");
    }

    #[test]
    fn text_is_escaped_and_nothing_needs_a_style_or_a_script() {
        let mut chart = chart(
            Shape::Bars,
            Unit::Count,
            vec![layer("<script>alert(1)</script>", vec![Some(1.0)])],
        );
        chart.title = "Tom & \"Jerry\" <b>".into();
        let svg = render(&chart);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(
            svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{svg}"
        );
        assert!(
            svg.contains("Tom &amp; &quot;Jerry&quot; &lt;b&gt;"),
            "{svg}"
        );
        assert!(!svg.contains("style="), "{svg}");
        assert!(!svg.contains(" on"), "no event handler attributes: {svg}");
    }

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(nice_top(1.0), 1.0);
        assert_eq!(nice_top(1.1), 2.0);
        assert_eq!(nice_top(4.5), 6.0);
        assert_eq!(nice_top(9.0), 10.0);
        assert_eq!(nice_top(23.0), 40.0);
        assert_eq!(Unit::Millis.format(0.42), "0.4 ms");
        assert_eq!(Unit::Millis.format(125.0), "125 ms");
        assert_eq!(Unit::Millis.format(30_000.0), "30 s");
        assert_eq!(Unit::PerSecond.format(250.0), "250/s");
        assert_eq!(Unit::PerSecond.format(0.5), "0.5/s");
        assert_eq!(Unit::PerSecond.format(3.0), "3/s");
    }
}
