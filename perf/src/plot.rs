//! SVG plots of the cost curves (plotters, SVG backend only, no font crates).

use plotters::prelude::*;

use crate::fmt::{size_label, time_label};

/// One line of a plot: a label, a colour and (size in bytes, value) points.
pub struct Line {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    /// Draw a dot at every point (off for reference lines).
    pub markers: bool,
    pub points: Vec<(usize, f64)>,
}

fn x_of(size: usize) -> f64 {
    (size as f64).log2()
}

fn x_range(lines: &[Line]) -> (f64, f64) {
    let xs = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| x_of(p.0)));
    let lo = xs.clone().fold(f64::INFINITY, f64::min);
    let hi = xs.fold(f64::NEG_INFINITY, f64::max);
    (lo - 0.3, hi + 0.3)
}

fn draw_lines<DB: DrawingBackend, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'_, DB, CT>,
    lines: &[Line],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    for line in lines {
        let color = line.color;
        let style = ShapeStyle::from(&color).stroke_width(2);
        let pts: Vec<(f64, f64)> = line.points.iter().map(|&(s, v)| (x_of(s), v)).collect();
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                .map_err(|e| e.to_string())?
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(|e| e.to_string())?
        }
        .label(line.label.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
        if line.markers {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// How a plot's axes read: x is always log2 of the points' first value.
struct Axes<'a> {
    x_desc: &'a str,
    x_label: &'a dyn Fn(usize) -> String,
    y_desc: &'a str,
    y_label: &'a dyn Fn(f64) -> String,
    /// `Some(max)`: linear from 0 to max; `None`: log scale around the values.
    y_linear_max: Option<f64>,
}

fn chart(
    path: &std::path::Path,
    title: &str,
    lines: &[Line],
    axes: &Axes<'_>,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = x_range(lines);
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80);
    match axes.y_linear_max {
        Some(ymax) => draw(builder.build_cartesian_2d(x0..x1, 0.0..ymax), axes, lines)?,
        None => {
            let vals = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
            let y0 = vals.clone().fold(f64::INFINITY, f64::min) / 1.6;
            let y1 = vals.fold(f64::NEG_INFINITY, f64::max) * 1.6;
            draw(
                builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale()),
                axes,
                lines,
            )?
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The mesh with the axes' labels, the lines and the legend on a built chart.
fn draw<'a, DB, X, Y, E: std::fmt::Display>(
    chart: Result<ChartContext<'a, DB, Cartesian2d<X, Y>>, E>,
    axes: &Axes<'_>,
    lines: &[Line],
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = chart.map_err(|e| e.to_string())?;
    let x_label = |v: &f64| {
        let r = v.round();
        if (v - r).abs() < 1e-6 && r >= 0.0 {
            (axes.x_label)(1usize << (r as u32))
        } else {
            String::new()
        }
    };
    let y_label = |v: &f64| (axes.y_label)(*v);
    chart
        .configure_mesh()
        .x_labels(9)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    finish(&mut chart, lines)
}

/// The lines and the legend.
fn finish<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    lines: &[Line],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    draw_lines(chart, lines)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Log-log plot of ns per operation against payload size.
pub fn cost_curve(path: &std::path::Path, title: &str, lines: &[Line]) -> Result<(), String> {
    let axes = Axes {
        x_desc: "payload size (log scale)",
        x_label: &size_label,
        y_desc: "CPU time per operation (log scale)",
        y_label: &time_label,
        y_linear_max: None,
    };
    chart(path, title, lines, &axes)
}

/// Ratio (Sealbox throughput ÷ fastest raw throughput) against payload size (log x).
pub fn ratio_curve(path: &std::path::Path, title: &str, lines: &[Line]) -> Result<(), String> {
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(1.0f64, f64::max)
        * 1.1;
    let axes = Axes {
        x_desc: "payload size (log scale)",
        x_label: &size_label,
        y_desc: "Sealbox ÷ fastest raw AES-256-GCM (throughput)",
        y_label: &|v| format!("{v:.1}×"),
        y_linear_max: Some(ymax),
    };
    chart(path, title, lines, &axes)
}

/// Log-log plot of server CPU time per request (ns) against payloads per request.
pub fn codec_curve(path: &std::path::Path, title: &str, lines: &[Line]) -> Result<(), String> {
    let axes = Axes {
        x_desc: "payloads per request (log scale)",
        x_label: &|n| n.to_string(),
        y_desc: "server CPU time per request (log scale)",
        y_label: &time_label,
        y_linear_max: None,
    };
    chart(path, title, lines, &axes)
}
