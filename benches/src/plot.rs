//! The latency-vs-throughput plot: p50 and p99 against achieved throughput, one point per
//! measured step, with the P99 target as a horizontal line (SVG).

use crate::report::Report;
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::Path;

/// (throughput, p50, p99) of one step.
type Point = (f64, f64, f64);
/// A named, coloured series and how it reads its value from a point.
type Series = (&'static str, RGBColor, fn(&Point) -> f64);

/// Writes an SVG of p50/p99 latency against achieved throughput for `reports`.
pub fn latency_vs_throughput(
    path: &Path,
    title: &str,
    reports: &[Report],
    p99_target_ms: Option<f64>,
) -> anyhow::Result<()> {
    let mut points: Vec<Point> = reports
        .iter()
        .filter(|r| r.overall.ok > 0)
        .map(|r| (r.overall.throughput, r.overall.p50_ms, r.overall.p99_ms))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.1;
    let y_max = points
        .iter()
        .map(|p| p.2)
        .chain(p99_target_ms)
        .fold(0.1, f64::max)
        * 1.15;
    let err = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("achieved throughput (req/s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| err(&e))?;
    let series: [Series; 2] = [("p50", BLUE, |p| p.1), ("p99", RED, |p| p.2)];
    for (name, color, y) in series {
        let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.0, y(p))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    if let Some(t) = p99_target_ms {
        let target_color = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, t), (x_max, t)],
                target_color.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(format!("P99 target {t} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], target_color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
