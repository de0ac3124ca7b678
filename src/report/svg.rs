//! Small self-contained SVG charts: line charts of training curves and heat maps of
//! architecture weights. Hand-written so reports need no plotting dependency.

use std::fmt::Write as _;

const PALETTE: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// One named line of a chart.
pub struct Series<'a> {
    /// Legend text.
    pub name: &'a str,
    /// `(x, y)` points in drawing order.
    pub points: Vec<(f64, f64)>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart with axes, five ticks per axis and a legend.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> String {
    chart(title, x_label, y_label, series, &vec![true; series.len()])
}

/// A scatter plot: the points of each series unjoined, except the series whose index is in
/// `joined` (for example a Pareto front drawn as a staircase of points joined in order).
pub fn scatter_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    joined: &[usize],
) -> String {
    let join: Vec<bool> = (0..series.len()).map(|i| joined.contains(&i)).collect();
    chart(title, x_label, y_label, series, &join)
}

fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series], join: &[bool]) -> String {
    // The legend column grows with the longest series name, the plot keeps its size.
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0) as f64;
    let right = (40.0 + 6.5 * longest).max(150.0);
    let (width, height) = (410.0 + right, 320.0);
    let (left, top, bottom) = (60.0, 30.0, 45.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let points = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let (mut x_min, mut x_max, mut y_min, mut y_max) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x_min = x_min.min(x);
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if x_min > x_max {
        (x_min, x_max, y_min, y_max) = (0.0, 1.0, 0.0, 1.0);
    }
    if (x_max - x_min).abs() < 1e-12 {
        x_max = x_min + 1.0;
    }
    if (y_max - y_min).abs() < 1e-12 {
        y_max = y_min + 1.0;
    }
    let sx = |x: f64| left + (x - x_min) / (x_max - x_min) * plot_w;
    let sy = |y: f64| top + plot_h - (y - y_min) / (y_max - y_min) * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="13">{}</text>"#,
        left + plot_w / 2.0,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>"##
    );
    // Whole-number axes (epochs, counts) get whole-number ticks.
    let integral = |v: f64| (v - v.round()).abs() < 1e-9;
    let all_points = || series.iter().flat_map(|s| s.points.iter());
    let x_whole = all_points().all(|p| integral(p.0)) && x_max - x_min <= 12.0;
    let y_whole = all_points().all(|p| integral(p.1)) && y_max - y_min <= 12.0;
    let x_ticks: Vec<f64> = if x_whole {
        (x_min.round() as i64..=x_max.round() as i64)
            .map(|v| v as f64)
            .collect()
    } else {
        // Counts (evaluations, epochs) get whole-number ticks however long the axis.
        let x_counts = all_points().all(|p| integral(p.0));
        (0..=4)
            .map(|i| x_min + (x_max - x_min) * f64::from(i) / 4.0)
            .map(|v| if x_counts { v.round() } else { v })
            .collect()
    };
    let y_ticks: Vec<f64> = if y_whole {
        (y_min.round() as i64..=y_max.round() as i64)
            .map(|v| v as f64)
            .collect()
    } else {
        (0..=4)
            .map(|i| y_min + (y_max - y_min) * f64::from(i) / 4.0)
            .collect()
    };
    let label = |v: f64| {
        if integral(v) {
            format!("{v:.0}")
        } else {
            format!("{v:.3}")
        }
    };
    for fx in x_ticks {
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{y1}" stroke="#ddd"/><text x="{x}" y="{ty}" text-anchor="middle">{t}</text>"##,
            x = sx(fx),
            y0 = top,
            y1 = top + plot_h,
            ty = top + plot_h + 14.0,
            t = label(fx)
        );
    }
    for fy in y_ticks {
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{t}</text>"##,
            x0 = left,
            x1 = left + plot_w,
            y = sy(fy),
            tx = left - 4.0,
            ty = sy(fy) + 4.0,
            t = label(fy)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 8.0,
        escape(x_label)
    );
    let _ = writeln!(
        svg,
        r#"<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        if join[i] {
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        // Long joined series (trajectories over hundreds of evaluations) read better as lines.
        let marks = !join[i] || path.len() <= 60;
        for point in path.iter().filter(|_| marks) {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"/>"#
            );
        }
        let ly = top + 12.0 + 16.0 * i as f64;
        let lx = left + plot_w + 10.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 18.0,
            lx + 22.0,
            ly + 4.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A heat map of `values` (rows x columns) with labels and the value in each cell. Colour is
/// relative within each row (darkest = the row's largest value), since architecture weights
/// stay close to uniform and a global scale would show one colour; the largest entry of each
/// row outside the columns in `ignore` is outlined (for alpha tables: the operation the
/// derivation would keep on that edge, `none` excluded).
pub fn heatmap(
    title: &str,
    rows: &[String],
    columns: &[&str],
    values: &[Vec<f32>],
    ignore: &[usize],
) -> String {
    let cell_w = 62.0;
    let cell_h = 20.0;
    let left = 120.0;
    let top = 110.0;
    let width = left + cell_w * columns.len() as f64 + 40.0;
    let height = top + cell_h * rows.len() as f64 + 30.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="10">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="8" y="16" font-size="13">{}</text>"#,
        escape(title)
    );
    for (j, name) in columns.iter().enumerate() {
        let x = left + cell_w * (j as f64 + 0.5);
        let _ = writeln!(
            svg,
            r#"<text x="{x}" y="{y}" transform="rotate(-45 {x} {y})">{}</text>"#,
            escape(name),
            y = top - 6.0
        );
    }
    for (i, (label, row)) in rows.iter().zip(values).enumerate() {
        let y = top + cell_h * i as f64;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + 14.0,
            escape(label)
        );
        let lo = row.iter().copied().fold(f32::MAX, f32::min);
        let hi = row.iter().copied().fold(f32::MIN, f32::max);
        let best = row
            .iter()
            .enumerate()
            .filter(|(j, _)| !ignore.contains(j))
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| j);
        for (j, &v) in row.iter().enumerate() {
            let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
            let shade = (255.0 * (1.0 - 0.85 * t)) as u8;
            let text = if t > 0.6 { "white" } else { "black" };
            let x = left + cell_w * j as f64;
            let _ = writeln!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="rgb({shade},{shade},255)" stroke="{stroke}" stroke-width="{stroke_width}"/><text x="{tx}" y="{ty}" text-anchor="middle" fill="{text}">{v:.4}</text>"##,
                tx = x + cell_w / 2.0,
                ty = y + 14.0,
                stroke = if Some(j) == best { "#000" } else { "#fff" },
                stroke_width = if Some(j) == best { 2 } else { 1 }
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="8" y="{}">colour: relative within each row; outlined: largest value{}</text>"#,
        height - 10.0,
        if ignore.is_empty() {
            ""
        } else {
            " (first column excluded)"
        }
    );
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_places_extremes_on_the_frame() {
        let svg = line_chart(
            "t",
            "x",
            "y",
            &[Series {
                name: "a<b",
                points: vec![(1.0, 0.0), (3.0, 2.0)],
            }],
        );
        // Plot area is x 60..410, y 30..275: the first point is bottom-left, the last top-right.
        assert!(svg.contains(r#"points="60.0,275.0 410.0,30.0""#), "{svg}");
        assert!(svg.contains("a&lt;b"));
    }

    #[test]
    fn heatmap_writes_every_value() {
        let svg = heatmap(
            "alpha",
            &["e0".to_string(), "e1".to_string()],
            &["p", "q"],
            &[vec![0.25, 0.75], vec![0.5, 0.5]],
            &[],
        );
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains(">0.7500<"));
    }
}
