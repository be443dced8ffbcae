//! Server-rendered SVG charts: they show without JavaScript and pass a strict CSP. Colours
//! come from CSS classes (`s0`, `s1`, …) in `ui/app.css`; every bar has a `<title>` tooltip.

use std::fmt::Write as _;

use crate::admin::Series;
use crate::http::session::escape;

const W: f64 = 640.0;
const H: f64 = 180.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

/// A bar chart over hourly buckets; with `stacked`, series stack per bucket, otherwise they
/// sit side by side. `unit` follows values in tooltips and the axis.
pub fn bars(series: &[Series], stacked: bool, unit: &str, empty: &str) -> String {
    let n = series.first().map_or(0, |s| s.points.len());
    let total: f64 = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).sum();
    if n == 0 || total == 0.0 {
        return format!("<p class=\"chart-empty\">{}</p>", escape(empty));
    }
    let max = (0..n)
        .map(|i| {
            let vals = series.iter().map(|s| s.points[i].1);
            if stacked { vals.sum::<f64>() } else { vals.fold(0.0, f64::max) }
        })
        .fold(0.0, f64::max)
        .max(1e-9);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / n as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\"/>\
         <text class=\"tick\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{tx}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        y0 = TOP + plot_h,
        x1 = W - 8.0,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
        max = escape(&format!("{}{unit}", fmt_num(max))),
    );
    for i in 0..n {
        let x = LEFT + slot * i as f64;
        let hour = series[0].points[i].0.get(11..16).unwrap_or("").to_string();
        if i % 6 == 0 {
            let _ = write!(svg, "<text class=\"tick\" x=\"{:.1}\" y=\"{}\">{}</text>", x, H - 6.0, escape(&hour));
        }
        let mut base = TOP + plot_h;
        for (k, s) in series.iter().enumerate() {
            let v = s.points[i].1;
            if v <= 0.0 {
                continue;
            }
            let h = v / max * plot_h;
            let (bx, bw) = if stacked {
                (x + 1.0, (slot - 2.0).max(1.0))
            } else {
                let w = ((slot - 2.0) / series.len() as f64).max(1.0);
                (x + 1.0 + w * k as f64, w)
            };
            let by = if stacked { base - h } else { TOP + plot_h - h };
            let _ = write!(
                svg,
                "<rect class=\"s{k}\" x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{bw:.1}\" height=\"{h:.1}\"><title>{}</title></rect>",
                escape(&format!("{hour} UTC · {}: {}{unit}", s.label, fmt_num(v)))
            );
            if stacked {
                base -= h;
            }
        }
    }
    svg.push_str("</svg><ul class=\"legend\">");
    for (k, s) in series.iter().enumerate() {
        let _ = write!(svg, "<li><span class=\"swatch s{k}\"></span>{}</li>", escape(&s.label));
    }
    svg.push_str("</ul>");
    svg
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_show_an_empty_state() {
        let empty = bars(
            &[Series { label: "x".into(), points: vec![("2026-01-01T10:00:00Z".into(), 0.0)] }],
            true,
            "",
            "none yet",
        );
        assert!(empty.contains("none yet") && !empty.contains("<svg"));
        let s = Series {
            label: "<b>".into(),
            points: vec![("2026-01-01T10:00:00Z".into(), 3.0), ("2026-01-01T11:00:00Z".into(), 1.5)],
        };
        let svg = bars(&[s], false, " s", "none");
        assert!(svg.contains("<svg") && svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}
