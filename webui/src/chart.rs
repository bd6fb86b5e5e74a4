//! Line charts as inline SVG, rendered on the server (no script, no
//! front-end build, nothing the Content-Security-Policy has to allow):
//! one polyline per series over a shared time axis, the value axis from 0
//! to the largest value, its top and the time span labelled. Colours come
//! from CSS classes (`series-0`..`series-5` in app.css).

use crate::html::esc;
use crate::usage::Series;

const W: f64 = 600.0;
const H: f64 = 160.0;
/// Room for the value labels on the left and the time labels below.
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// An SVG chart titled `title` (also its accessible name), values shown
/// with `fmt`. Empty series give a chart that says there is no data.
pub fn line_chart(id: &str, title: &str, series: &[Series], fmt: &dyn Fn(f64) -> String) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut t0, mut t1, mut vmax) = (f64::MAX, f64::MIN, 0.0f64);
    for &(t, v) in points {
        t0 = t0.min(t);
        t1 = t1.max(t);
        vmax = vmax.max(v);
    }
    let mut svg = format!(
        r#"<svg id="{id}" class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    let (plot_w, plot_h) = (W - LEFT, H - BOTTOM - TOP);
    svg += &format!(
        r#"<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{y}"/><line class="axis" x1="{LEFT}" y1="{y}" x2="{W}" y2="{y}"/>"#,
        y = TOP + plot_h
    );
    if t0 > t1 {
        svg += &format!(
            r#"<text class="label" x="{}" y="{}" text-anchor="middle">no data yet</text></svg>"#,
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
        return svg;
    }
    let vmax = if vmax > 0.0 { vmax * 1.1 } else { 1.0 };
    let span = (t1 - t0).max(1.0);
    let x = |t: f64| LEFT + (t - t0) / span * plot_w;
    let y = |v: f64| TOP + plot_h - v / vmax * plot_h;
    for (i, s) in series.iter().enumerate() {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        svg += &format!(
            r#"<polyline class="line series-{}" fill="none" points="{}"><title>{}</title></polyline>"#,
            i % 6,
            pts.join(" "),
            esc(&s.label)
        );
    }
    svg += &format!(
        r#"<text class="label" x="{}" y="{}" text-anchor="end">{}</text><text class="label" x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        TOP + 10.0,
        esc(&fmt(vmax)),
        LEFT - 4.0,
        TOP + plot_h
    );
    svg += &format!(
        r#"<text class="label" x="{LEFT}" y="{H}">-{} min</text><text class="label" x="{W}" y="{H}" text-anchor="end">now</text></svg>"#,
        (span / 60.0).round()
    );
    svg
}

/// The legend: each series' label in its colour.
pub fn legend(series: &[Series]) -> String {
    let items: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                r#"<span class="key series-{}">{}</span>"#,
                i % 6,
                esc(&s.label)
            )
        })
        .collect();
    format!(r#"<p class="legend">{}</p>"#, items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_polyline_per_series_scaled_into_the_box() {
        let s = vec![
            Series {
                label: "app".into(),
                points: vec![(0.0, 0.0), (1800.0, 0.5), (3600.0, 1.0)],
            },
            Series {
                label: "side<car>".into(),
                points: vec![(0.0, 0.2), (3600.0, 0.2)],
            },
        ];
        let svg = line_chart("cpu", "CPU", &s, &|v| format!("{v:.2}"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        // The first point is at the left edge and the bottom; the last at the right.
        assert!(svg.contains(r#"points="56.0,140.0 "#), "{svg}");
        assert!(svg.contains("600.0,"), "{svg}");
        // The top label is 110 % of the largest value.
        assert!(svg.contains(">1.10<"), "{svg}");
        assert!(svg.contains("-60 min"), "{svg}");
        assert!(svg.contains("side&lt;car&gt;"), "labels are escaped: {svg}");
        assert!(legend(&s).contains(r#"<span class="key series-1">side&lt;car&gt;</span>"#));
    }

    #[test]
    fn no_points_say_so() {
        let svg = line_chart("mem", "Memory", &[], &|v| v.to_string());
        assert!(svg.contains("no data yet"));
        assert!(!svg.contains("<polyline"));
        assert!(svg.ends_with("</svg>"));
    }
}
