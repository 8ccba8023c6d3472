//! Line charts drawn on the server as SVG: no script, no library, colours
//! as SVG attributes (the CSP allows no inline style). Each chart also
//! says its totals in words, for screen readers and for tests.

use maud::{html, Markup};

const W: f64 = 600.0;
const H: f64 = 150.0;
const PAD_LEFT: f64 = 52.0;
const PAD_BOTTOM: f64 = 22.0;
const COLOURS: [&str; 4] = ["#1a7f37", "#9a6700", "#b42318", "#0b5cad"];

/// One line: its name and a value per point (`None`: no data there).
pub struct Line<'a> {
    pub label: &'a str,
    pub values: Vec<Option<f64>>,
}

/// A chart of `lines` over the same points; `first` and `last` label the
/// time axis, `unit` the values (`/min`, `ms`).
pub fn draw(title: &str, unit: &str, lines: &[Line<'_>], first: &str, last: &str) -> Markup {
    let points = lines
        .iter()
        .map(|l| l.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let top = lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    let top = nice_ceiling(top);
    let x = |i: usize| PAD_LEFT + (W - PAD_LEFT - 4.0) * i as f64 / (points - 1) as f64;
    let y = |v: f64| (H - PAD_BOTTOM) - (H - PAD_BOTTOM - 6.0) * (v / top);
    let summary: Vec<String> = lines
        .iter()
        .map(|l| {
            let sum: f64 = l.values.iter().flatten().sum();
            let max = l.values.iter().flatten().fold(0.0_f64, |a, b| a.max(*b));
            if unit == "ms" {
                format!("{}: highest {max:.0} ms", l.label)
            } else {
                format!("{}: {sum:.0} in all", l.label)
            }
        })
        .collect();
    let described = format!("{title}. {}.", summary.join("; "));
    html! {
        figure class="card chart" {
            figcaption { strong { (title) } " " span class="muted" { "(" (unit) ")" } }
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(described) {
                title { (described) }
                line x1=(PAD_LEFT) y1=(y(0.0)) x2=(W - 4.0) y2=(y(0.0)) stroke="#aab4bf" stroke-width="1" {}
                line x1=(PAD_LEFT) y1=(y(top)) x2=(W - 4.0) y2=(y(top)) stroke="#e3e8ee" stroke-width="1" {}
                text x=(PAD_LEFT - 4.0) y=(y(top) + 6.0) text-anchor="end" font-size="15" fill="#5b6570" { (label(top)) }
                text x=(PAD_LEFT - 4.0) y=(y(0.0)) text-anchor="end" font-size="15" fill="#5b6570" { "0" }
                text x=(PAD_LEFT) y=(H - 4.0) font-size="15" fill="#5b6570" { (first) }
                text x=(W - 4.0) y=(H - 4.0) text-anchor="end" font-size="15" fill="#5b6570" { (last) }
                @for (n, l) in lines.iter().enumerate() {
                    polyline fill="none" stroke=(COLOURS[n % COLOURS.len()]) stroke-width="1.6" stroke-linejoin="round"
                        points=(path(&l.values, x, y)) {}
                }
            }
            p class="legend" {
                @for (n, said) in summary.iter().enumerate() {
                    span { i class={ "l" (n % COLOURS.len()) } {} (said) }
                }
            }
        }
    }
}

/// The points of a line; a gap (no data) is drawn at zero for counts, and
/// simply skipped for measures.
fn path(values: &[Option<f64>], x: impl Fn(usize) -> f64, y: impl Fn(f64) -> f64) -> String {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The axis top: 1, 2 or 5 times a power of ten, at least 1.
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn label(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_top_is_a_round_number_above_the_highest_value() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(730.0), 1000.0);
    }

    #[test]
    fn a_value_with_markup_is_escaped_in_the_label() {
        let lines = [Line {
            label: "<script>",
            values: vec![Some(1.0), None, Some(2.0)],
        }];
        let svg = draw("t", "/min", &lines, "a", "b").into_string();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
