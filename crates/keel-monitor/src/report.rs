//! The drift report as one self-contained HTML page: a summary table (drifted columns first) and, per
//! column, the reference and current distributions side by side as an inline SVG bar chart.

use crate::drift::{ColumnDrift, DriftReport};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if v != 0.0 && v.abs() < 1e-3 => format!("{v:.1e}"),
        Some(v) => format!("{v:.4}"),
    }
}

/// Grouped bars: reference (grey) and current (blue) proportions per bin.
fn chart(c: &ColumnDrift) -> String {
    let h = &c.histogram;
    let n = h.labels.len().max(1);
    let (width, height, left, bottom) = (640.0, 180.0, 40.0, 60.0);
    let plot_h = height - bottom - 10.0;
    let max = h
        .reference
        .iter()
        .chain(&h.current)
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-9);
    let slot = (width - left - 10.0) / n as f64;
    let bar = (slot * 0.4).max(1.0);
    let mut s = format!(
        r#"<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="distribution of {}">"#,
        esc(&c.name)
    );
    s.push_str(&format!(
        r##"<line x1="{left}" y1="10" x2="{left}" y2="{y}" stroke="#999"/><text x="{tx}" y="16" font-size="10" text-anchor="end">{m:.0}%</text><text x="{tx}" y="{y}" font-size="10" text-anchor="end">0</text>"##,
        y = 10.0 + plot_h,
        tx = left - 4.0,
        m = max * 100.0
    ));
    for i in 0..h.labels.len() {
        let x = left + slot * i as f64 + slot * 0.1;
        for (k, (v, colour)) in [(h.reference[i], "#9aa0a6"), (h.current[i], "#1a73e8")]
            .into_iter()
            .enumerate()
        {
            let bh = v / max * plot_h;
            s.push_str(&format!(
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"><title>{}: {:.2}%</title></rect>"#,
                x + k as f64 * bar,
                10.0 + plot_h - bh,
                if k == 0 { "reference" } else { "current" },
                v * 100.0
            ));
        }
        let lx = x + bar;
        let ly = 10.0 + plot_h + 8.0;
        s.push_str(&format!(
            r#"<text x="{lx:.1}" y="{ly:.1}" font-size="9" text-anchor="end" transform="rotate(-40 {lx:.1} {ly:.1})">{}</text>"#,
            esc(&h.labels[i])
        ));
    }
    s.push_str("</svg>");
    s
}

/// Renders the report. `title` names the two inputs.
pub fn html(report: &DriftReport, title: &str) -> String {
    let mut cols: Vec<&ColumnDrift> = report.columns.iter().collect();
    cols.sort_by(|a, b| {
        b.drifted
            .cmp(&a.drifted)
            .then(b.psi.unwrap_or(0.0).total_cmp(&a.psi.unwrap_or(0.0)))
    });
    let mut s = String::new();
    s.push_str(&format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Drift: {t}</title><style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#202124}}
table{{border-collapse:collapse;width:100%;font-size:13px}}th,td{{padding:4px 8px;border-bottom:1px solid #e0e0e0;text-align:right}}
th:first-child,td:first-child,td.l{{text-align:left}}tr.d td{{background:#fce8e6}}.k{{display:inline-block;width:10px;height:10px;margin:0 4px}}
section{{margin:1.5rem 0;border-top:1px solid #e0e0e0;padding-top:.5rem}}</style></head><body>
<h1>Drift report</h1><p>{t}</p><p><b>{d}</b> of {n} columns drifted (significant after Holm's correction at α = {a} <i>and</i> PSI ≥ {psi} or effect ≥ {eff}).
<span class="k" style="background:#9aa0a6"></span>reference <span class="k" style="background:#1a73e8"></span>current</p>"#,
        t = esc(title),
        d = report.drifted_columns,
        n = report.columns.len(),
        a = report.options.alpha,
        psi = report.options.psi_threshold,
        eff = report.options.effect_threshold,
    ));
    if !report.unmatched.is_empty() {
        s.push_str(&format!(
            "<p>Columns on one side only (not compared): {}</p>",
            esc(&report.unmatched.join(", "))
        ));
    }
    s.push_str("<table><tr><th>column</th><th>kind</th><th>drifted</th><th>PSI</th><th>JS</th><th>Wasserstein (sd)</th><th>KS / χ²</th><th>Cramér's V</th><th>p (adj.)</th><th>missing ref → cur</th><th>why</th></tr>");
    for c in &cols {
        s.push_str(&format!(
            r##"<tr class="{cls}"><td><a href="#c-{id}">{name}</a></td><td class="l">{kind}</td><td class="l">{dr}</td><td>{psi}</td><td>{js}</td><td>{w}</td><td>{st}</td><td>{v}</td><td>{p}</td><td>{mr:.1}% → {mc:.1}%</td><td class="l">{why}</td></tr>"##,
            cls = if c.drifted { "d" } else { "" },
            id = esc(&c.name),
            name = esc(&c.name),
            kind = c.kind,
            dr = if c.drifted { "yes" } else { "no" },
            psi = num(c.psi),
            js = num(c.js),
            w = num(c.wasserstein),
            st = num(c.statistic),
            v = num(c.cramers_v),
            p = num(c.p_value_adjusted),
            mr = c.reference_missing * 100.0,
            mc = c.current_missing * 100.0,
            why = esc(&c.reason),
        ));
    }
    s.push_str("</table>");
    for c in &cols {
        s.push_str(&format!(
            r#"<section id="c-{}"><h3>{} <small>({}, {})</small></h3>{}</section>"#,
            esc(&c.name),
            esc(&c.name),
            c.kind,
            if c.drifted { "drifted" } else { "stable" },
            chart(c)
        ));
    }
    s.push_str("</body></html>\n");
    s
}

/// Realized performance of one window, for the monitoring page: a headline metric with its 95 % interval and,
/// for classifiers, accuracy with its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct RealizedRow {
    /// The window start as a person reads it.
    pub window: String,
    pub labelled: usize,
    /// Name of `value` (`ROC-AUC`, `RMSE`).
    pub metric: String,
    /// (value, lower, upper).
    pub value: Option<(f64, f64, f64)>,
    pub accuracy: Option<(f64, f64, f64)>,
    /// Why a window has no metric (too few labels, one class only).
    pub note: Option<String>,
}

/// The drift page plus a "Realized performance" section: labels per window and the metric with its interval
/// as a chart and a table (an empty `realized` says that no labels have arrived yet).
pub fn html_with_realized(report: &DriftReport, title: &str, realized: &[RealizedRow]) -> String {
    let page = html(report, title);
    let mut r = String::from("<section id=\"realized\"><h2>Realized performance</h2>");
    if realized.is_empty() {
        r.push_str("<p>No labels have arrived for these windows yet: send them with <code>POST /v1/models/NAME/feedback</code> or <code>keel feedback</code> (only logged predictions, a sampled share, take labels).</p>");
    } else {
        r.push_str(&realized_chart(realized));
        r.push_str("<table><tr><th>window</th><th>labels</th><th>metric</th><th>value</th><th>95 % interval</th><th>accuracy</th><th>note</th></tr>");
        for w in realized {
            let (v, ci) = match w.value {
                Some((v, lo, hi)) => (format!("{v:.4}"), format!("{lo:.4} – {hi:.4}")),
                None => ("–".into(), "–".into()),
            };
            let acc = w.accuracy.map_or("–".into(), |(a, lo, hi)| {
                format!("{a:.4} ({lo:.4} – {hi:.4})")
            });
            r.push_str(&format!(
                r#"<tr><td class="l">{}</td><td>{}</td><td class="l">{}</td><td>{v}</td><td>{ci}</td><td>{acc}</td><td class="l">{}</td></tr>"#,
                esc(&w.window),
                w.labelled,
                esc(&w.metric),
                esc(w.note.as_deref().unwrap_or(""))
            ));
        }
        r.push_str("</table>");
    }
    r.push_str("</section>");
    // Right after the summary paragraph, before the drift table.
    match page.find("<table>") {
        Some(i) => format!("{}{r}{}", &page[..i], &page[i..]),
        None => page.replace("</body>", &format!("{r}</body>")),
    }
}

/// The metric per window as points with interval whiskers.
fn realized_chart(rows: &[RealizedRow]) -> String {
    let pts: Vec<(usize, (f64, f64, f64))> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.value.map(|v| (i, v)))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (width, height, left, bottom) = (640.0, 180.0, 50.0, 40.0);
    let plot_h = height - bottom - 10.0;
    let lo = pts.iter().map(|p| p.1.1).fold(f64::INFINITY, f64::min);
    let hi = pts.iter().map(|p| p.1.2).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if hi - lo < 1e-9 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let y = |v: f64| 10.0 + plot_h - (v - lo) / (hi - lo) * plot_h;
    let slot = (width - left - 10.0) / rows.len().max(1) as f64;
    let mut s = format!(
        r##"<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{m} per window"><line x1="{left}" y1="10" x2="{left}" y2="{b}" stroke="#999"/><text x="{tx}" y="16" font-size="10" text-anchor="end">{hi:.3}</text><text x="{tx}" y="{b}" font-size="10" text-anchor="end">{lo:.3}</text>"##,
        m = esc(&rows[0].metric),
        b = 10.0 + plot_h,
        tx = left - 4.0
    );
    for (i, (v, l, h)) in pts {
        let x = left + slot * (i as f64 + 0.5);
        s.push_str(&format!(
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#1a73e8"/><circle cx="{x:.1}" cy="{:.1}" r="3" fill="#1a73e8"><title>{}: {v:.4} [{l:.4}, {h:.4}]</title></circle>"##,
            y(l),
            y(h),
            y(v),
            esc(&rows[i].window)
        ));
        s.push_str(&format!(
            r##"<text x="{x:.1}" y="{:.1}" font-size="9" text-anchor="middle">{}</text>"##,
            10.0 + plot_h + 14.0,
            esc(&rows[i].window)
        ));
    }
    s.push_str("</svg>");
    s
}
