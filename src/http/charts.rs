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

/// A line chart of series sampled at the same times (`YYYY-MM-DD HH:MM:SS` or RFC 3339):
/// one polyline per series, a tooltip per point, the time axis labelled with hours (a day or
/// less) or dates. `unit` follows values in tooltips and the axis.
pub fn lines(series: &[Series], unit: &str, empty: &str) -> String {
    let n = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    if n < 2 {
        return format!("<p class=\"chart-empty\">{}</p>", escape(empty));
    }
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max).max(1e-9);
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - TOP - BOTTOM;
    let y0 = TOP + plot_h;
    let step = plot_w / (n - 1) as f64;
    let first = series.iter().find_map(|s| s.points.first()).map(|p| p.0.clone()).unwrap_or_default();
    let last = series.iter().find_map(|s| s.points.last()).map(|p| p.0.clone()).unwrap_or_default();
    // Dates on the axis when the chart spans more than a day and a half, hours otherwise.
    let at = |t: &str| chrono::NaiveDateTime::parse_from_str(t.get(..19).unwrap_or(t), "%Y-%m-%d %H:%M:%S").ok();
    let by_date = matches!((at(&first), at(&last)), (Some(a), Some(b)) if (b - a).num_hours() > 36);
    let label = |t: &str| if by_date { t.get(5..10) } else { t.get(11..16) }.unwrap_or("").to_string();
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\"/>\
         <text class=\"tick\" x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{max}</text>\
         <text class=\"tick\" x=\"{tx}\" y=\"{y0}\" text-anchor=\"end\">0</text>",
        x1 = W - 8.0,
        tx = LEFT - 4.0,
        ty = TOP + 8.0,
        max = escape(&format!("{}{unit}", fmt_num(max))),
    );
    let every = (n / 6).max(1);
    if let Some(s0) = series.iter().max_by_key(|s| s.points.len()) {
        let mut previous = String::new();
        for (i, (t, _)) in s0.points.iter().enumerate().step_by(every) {
            let text = label(t);
            if text != previous {
                let _ = write!(
                    svg,
                    "<text class=\"tick\" x=\"{:.1}\" y=\"{}\">{}</text>",
                    LEFT + step * i as f64,
                    H - 6.0,
                    escape(&text)
                );
                previous = text;
            }
        }
    }
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", LEFT + step * i as f64, y0 - p.1.max(0.0) / max * plot_h))
            .collect();
        let _ = write!(svg, "<polyline class=\"line l{k}\" points=\"{}\"/>", points.join(" "));
        // Tooltips on a sample of points, so a week of points stays a small page.
        let tip_every = (s.points.len() / 48).max(1);
        for (i, p) in s.points.iter().enumerate().step_by(tip_every) {
            let _ = write!(
                svg,
                "<circle class=\"dot l{k}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2\"><title>{}</title></circle>",
                LEFT + step * i as f64,
                y0 - p.1.max(0.0) / max * plot_h,
                escape(&format!("{} UTC · {}: {}{unit}", p.0.get(..16).unwrap_or(&p.0), s.label, fmt_num(p.1)))
            );
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

/// A capacity bar: `used` then `reserved` of `total`, the rest free, as a small SVG (classes
/// `cap-used`, `cap-reserved`, `cap-free` colour it). `label` is its accessible name.
pub fn capacity_bar(used: f64, reserved: f64, total: f64, label: &str) -> String {
    let pct = |v: f64| if total > 0.0 { (v / total * 100.0).clamp(0.0, 100.0) } else { 0.0 };
    let (u, r) = (pct(used), pct(reserved).min(100.0 - pct(used)));
    format!(
        "<svg class=\"capacity\" viewBox=\"0 0 100 6\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{}\">\
         <rect class=\"cap-free\" x=\"0\" y=\"0\" width=\"100\" height=\"6\"/>\
         <rect class=\"cap-used\" x=\"0\" y=\"0\" width=\"{u:.2}\" height=\"6\"/>\
         <rect class=\"cap-reserved\" x=\"{u:.2}\" y=\"0\" width=\"{r:.2}\" height=\"6\"/></svg>",
        html_escape(label)
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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

    #[test]
    fn line_charts_draw_one_polyline_per_series_and_need_two_points() {
        let one = Series { label: "cpu".into(), points: vec![("2026-01-01 10:00:00".into(), 3.0)] };
        assert!(lines(&[one], "%", "no data yet").contains("no data yet"));
        let pts = |f: f64| (0..10).map(|i| (format!("2026-01-01 1{i}:00:00"), f * f64::from(i))).collect();
        let svg = lines(
            &[Series { label: "in".into(), points: pts(1.0) }, Series { label: "<out>".into(), points: pts(2.0) }],
            " bps",
            "none",
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("18 bps") && svg.contains("&lt;out&gt;") && !svg.contains("<out>"), "{svg}");
    }

    #[test]
    fn capacity_bars_stack_used_then_reserved() {
        let svg = capacity_bar(50.0, 30.0, 100.0, "AZ <a>");
        assert!(svg.contains("class=\"cap-used\" x=\"0\" y=\"0\" width=\"50.00\""), "{svg}");
        assert!(svg.contains("class=\"cap-reserved\" x=\"50.00\" y=\"0\" width=\"30.00\""), "{svg}");
        assert!(svg.contains("AZ &lt;a&gt;"), "{svg}");
        let over = capacity_bar(90.0, 30.0, 100.0, "x");
        assert!(over.contains("width=\"10.00\""), "reserved never draws past the end: {over}");
    }
}
