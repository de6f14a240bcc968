//! The charts of `sim compare --plot DIR`: one SVG per metric, the sweep points on the x axis
//! (in the order given, evenly spaced), the metric's headline on the y axis, one line per policy.
//!
//! `plotters` with its SVG backend only: text is written as SVG `<text>` for the viewer to
//! render, laid out with plotters' built-in estimate of text width, so no font file, font
//! library or system library is read, and the same results give the same bytes.

use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::metrics::{Metric, METRICS};
use super::run::{Plan, Results};

/// Chart size in pixels.
const SIZE: (u32, u32) = (880, 520);

/// Line colours, one per policy (the Okabe-Ito palette: told apart with any colour vision).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];

/// Why charts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The folder or a file could not be written.
    #[error("cannot write the chart {path}: {source}")]
    Write {
        /// The file or folder.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// plotters could not draw (a bug here, not bad input).
    #[error("cannot draw the chart of {metric}: {reason}")]
    Draw {
        /// The metric's key.
        metric: &'static str,
        /// plotters' error.
        reason: String,
    },
}

/// Writes `<dir>/<metric key>.svg` for every metric; returns the files written, in metric order.
pub fn write_charts(plan: &Plan, results: &Results, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| PlotError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    for metric in METRICS {
        let svg = chart(plan, results, metric)?;
        let path = dir.join(format!("{}.svg", metric.key));
        std::fs::write(&path, svg).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// One metric's chart as SVG text.
pub fn chart(plan: &Plan, results: &Results, metric: &Metric) -> Result<String, PlotError> {
    let draw_error =
        |e: &dyn std::fmt::Display| PlotError::Draw { metric: metric.key, reason: e.to_string() };
    // Each policy's headline at each point (`None`: nothing measured there).
    let series: Vec<Vec<Option<f64>>> = (0..plan.policies.len())
        .map(|i| results.cells.iter().map(|row| metric.stat(&row[i].sessions).value).collect())
        .collect();
    let top = series.iter().flatten().flatten().fold(0.0_f64, |a, b| a.max(*b));
    // Headroom above the highest point for the legend (about 22 px a policy of a plot area
    // about 400 px high); a flat zero still gets an axis.
    let legend_share = (30.0 + 22.0 * plan.policies.len() as f64) / 400.0;
    let y_max = if top > 0.0 { top / (1.0 - legend_share.min(0.6)) } else { 1.0 };
    let labels: Vec<String> = results.points.iter().map(|p| p.label.clone()).collect();
    // A whole-number range is inclusive to plotters: `0..last` is one segment per point.
    let last = labels.len().saturating_sub(1);
    let x_desc = plan.sweep.as_ref().map_or("(no sweep: the default workload)".to_owned(), |s| {
        format!("{} ({})", s.param.name, s.param.kind.unit())
    });
    let title = match &plan.sweep {
        Some(s) => format!("{} by {}", metric.title, s.param.name),
        None => metric.title.to_owned(),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 22))
            .margin(18)
            .x_label_area_size(56)
            .y_label_area_size(84)
            // A little room below zero, so the points on it stay clear of the x labels.
            .build_cartesian_2d((0..last).into_segmented(), -0.03 * y_max..y_max)
            .map_err(|e| draw_error(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc(x_desc)
            .y_desc(format!("{} ({})", metric.axis, metric.unit))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| axis_number(*y))
            .axis_desc_style(("sans-serif", 17))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| draw_error(&e))?;
        for (i, values) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            // Earlier policies are drawn wider, so a line hidden under an equal one shows as
            // its border.
            let width = (series.len() - i + 1) as u32;
            let style = color.stroke_width(width);
            let points: Vec<(SegmentValue<usize>, f64)> = values
                .iter()
                .enumerate()
                .filter_map(|(x, y)| y.map(|y| (SegmentValue::CenterOf(x), y)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(|e| draw_error(&e))?
                .label(plan.policies[i].to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
            let radius = width + 1;
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, radius, color.filled())))
                .map_err(|e| draw_error(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(("sans-serif", 15))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(|e| draw_error(&e))?;
        root.present().map_err(|e| draw_error(&e))?;
    }
    Ok(svg)
}

/// A tick label: at most two decimals, without trailing zeros (`2.5`, not `2.50`).
fn axis_number(y: f64) -> String {
    let text = format!("{y:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}
