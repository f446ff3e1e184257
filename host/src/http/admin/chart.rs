//! The 30-day chart of paid payments: count per day as bars, amount per day as a line, drawn on
//! the server as SVG (no script, no CDN; it scales to a phone's width).

use std::fmt::Write;

/// One day of the chart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub count: u64,
    pub fen: u64,
}

const W: f64 = 600.0;
const H: f64 = 220.0;
// Room for the axes' text at the phone's size ([`PHONE_FONT`]).
const LEFT: f64 = 44.0;
const RIGHT: f64 = 64.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 34.0;
/// The text size on a desktop, where the chart is drawn at its own 600 px.
const FONT: f64 = 12.0;
/// The text size (in the chart's units) on a phone, set by base.html's `@media (max-width:640px)`
/// rule `#chart text{font-size:22px}`: the chart shrinks to the phone's width (about 340 of its
/// 600 units on a 375 px screen), so its text is drawn larger to stay readable (about 12 px).
#[cfg(test)]
const PHONE_FONT: f64 = 22.0;

/// A "nice" ceiling for an axis (1, 2 or 5 times a power of ten).
fn nice(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

/// The count axis' ceiling: four grid steps of a whole number each (a count of 1 would otherwise
/// label its grid 0.3, 0.5, 0.8).
fn count_ceiling(max: u64) -> f64 {
    let step = nice(max as f64 / 4.0).max(1.0);
    step * 4.0
}

/// The SVG of `days` (oldest first). `title` labels it for screen readers.
pub fn svg(days: &[Day], title: &str, lang: super::Lang) -> String {
    let n = days.len().max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max_count = count_ceiling(days.iter().map(|d| d.count).max().unwrap_or(0));
    let max_yuan =
        4.0 * nice(days.iter().map(|d| d.fen).max().unwrap_or(0) as f64 / 400.0).max(0.01);
    let slot = plot_w / n;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" font-size=\"{FONT}\" font-family=\"sans-serif\">",
        crate::domain::html::escape(title)
    );
    // Grid and axes: counts on the left, yuan on the right.
    for i in 0..=4 {
        let y = TOP + plot_h * (1.0 - i as f64 / 4.0);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e8ec\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1677ff\">{}</text>\
             <text x=\"{}\" y=\"{:.1}\" fill=\"#c80\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            trim(max_count * i as f64 / 4.0),
            W - RIGHT + 4.0,
            y + 4.0,
            short_yuan(max_yuan * i as f64 / 4.0, lang),
        );
    }
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let h = plot_h * d.count as f64 / max_count;
        let _ = write!(
            s,
            "<rect class=\"bar\" data-date=\"{}\" data-count=\"{}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#1677ff\" opacity=\"0.75\"><title>{} · {} · ¥{}</title></rect>",
            d.date,
            d.count,
            x + slot * 0.15,
            TOP + plot_h - h,
            slot * 0.7,
            d.date,
            d.count,
            super::yuan(d.fen)
        );
        // A date under every fifth bar counted back from the last (today), evenly spaced so
        // that no two collide at the phone's text size.
        if i % 5 == (days.len() - 1) % 5 {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#667\">{}</text>",
                x + slot / 2.0,
                H - 6.0,
                d.date.get(5..).unwrap_or(&d.date)
            );
        }
    }
    let points: Vec<String> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let x = LEFT + slot * (i as f64 + 0.5);
            let y = TOP + plot_h * (1.0 - d.fen as f64 / 100.0 / max_yuan);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        s,
        "<polyline id=\"chart-amount\" points=\"{}\" fill=\"none\" stroke=\"#c80\" stroke-width=\"2\"/></svg>",
        points.join(" ")
    );
    s
}

/// An axis amount short enough for the margin: `2.5万` (`25k` in English) from ten thousand.
fn short_yuan(v: f64, lang: super::Lang) -> String {
    match lang {
        super::Lang::Zh if v >= 10_000.0 => format!("{}万", trim(v / 10_000.0)),
        super::Lang::En if v >= 10_000.0 => format!("{}k", trim(v / 1_000.0)),
        _ => trim(v),
    }
}

/// An axis value as short as it is exact: the grid's steps are 1, 2 or 5 of a power of ten,
/// so two decimals say any of them down to a fen (0.25 is not "0.2").
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_day() {
        let days = vec![
            Day {
                date: "2026-12-01".into(),
                count: 0,
                fen: 0,
            },
            Day {
                date: "2026-12-02".into(),
                count: 4,
                fen: 1234,
            },
            Day {
                date: "2026-12-03".into(),
                count: 2,
                fen: 99,
            },
        ];
        let svg = svg(&days, "<paid>", super::super::Lang::Zh);
        assert_eq!(svg.matches("<rect class=\"bar\"").count(), 3);
        assert!(svg.contains("data-date=\"2026-12-02\" data-count=\"4\""));
        assert!(svg.contains("¥12.34"));
        assert!(svg.contains("aria-label=\"&lt;paid&gt;\""));
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(12.34), 20.0);
    }

    #[test]
    fn the_count_axis_has_whole_numbers() {
        for max in [0, 1, 3, 4, 5, 7, 9, 10, 33, 99, 101, 4_999] {
            let top = count_ceiling(max);
            assert!(top >= max as f64, "{max} fits under {top}");
            for i in 0..=4 {
                let tick = top * i as f64 / 4.0;
                assert_eq!(tick.fract(), 0.0, "a count of {max}: tick {tick}");
            }
        }
        assert_eq!(count_ceiling(1), 4.0);
        assert_eq!(count_ceiling(7), 8.0);
        assert_eq!(count_ceiling(33), 40.0);
        let one = vec![Day {
            date: "2026-12-01".into(),
            count: 1,
            fen: 100,
        }];
        let svg = svg(&one, "paid", super::super::Lang::Zh);
        assert!(
            !svg.contains("#1677ff\">0.") && svg.contains("#1677ff\">4<"),
            "{svg}"
        );
        // The amount axis' grid is exact (it was 0.2 and 0.8 for 0.25 and 0.75).
        for tick in [">0.5<", ">1<", ">1.5<", ">2<"] {
            assert!(
                svg.contains(&format!("fill=\"#c80\"{tick}")),
                "{tick}: {svg}"
            );
        }
        assert_eq!(trim(0.05), "0.05");
        assert_eq!(trim(2.5), "2.5");
        assert_eq!(trim(500.0), "500");
    }

    #[test]
    fn axis_text_is_readable_on_a_phone() {
        // A 375 px phone: main's and the card's padding leave about 339 px for the chart.
        let shown = 375.0 - 2.0 * 6.0 - 2.0 * 12.0;
        let px = PHONE_FONT * shown / W;
        assert!(px >= 12.0, "the axis text is {px:.1} px on a phone");
        let base = include_str!("../../../templates/admin/base.html");
        let phone = base
            .split("@media (max-width:640px)")
            .nth(1)
            .expect("base.html has the phone's rules");
        assert!(
            phone.contains(&format!("#chart text{{font-size:{PHONE_FONT}px}}")),
            "base.html draws the chart's text at {PHONE_FONT} on a phone"
        );
        // Large amounts fit the margin.
        assert_eq!(short_yuan(25_000.0, super::super::Lang::Zh), "2.5万");
        assert_eq!(short_yuan(500.0, super::super::Lang::Zh), "500");
        assert_eq!(short_yuan(20_000.0, super::super::Lang::En), "20k");
    }
}
