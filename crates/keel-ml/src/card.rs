//! Model cards: what a model is for, what it was trained on, how well it does (with intervals), for whom it
//! does worse, what drives it, where it came from, and where it should not be trusted. Stored as JSON with the
//! version; rendered here as one self-contained HTML page with inline SVG charts.

use serde::{Deserialize, Serialize};
use std::fmt::Write;

use crate::Objective;
use crate::eval::Evaluation;

/// The card of one model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub model: String,
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub kind: String,
    pub objective: Objective,
    pub target: String,
    pub class_labels: Option<Vec<String>>,
    pub intended_use: String,
    pub features: Vec<String>,
    pub data: DataSummary,
    pub params: serde_json::Value,
    pub train_seconds: f64,
    pub evaluation: Evaluation,
    /// The other candidate's holdout metrics, for comparison (the linear baseline when trees were registered,
    /// the trees when the linear model was).
    pub baseline: Option<BaselineSummary>,
    /// How the registered candidate was chosen (absent on cards written before the choice existed).
    #[serde(default)]
    pub selection: Option<crate::select::Selection>,
    /// Trees in the registered model (after early stopping); absent for linear models.
    #[serde(default)]
    pub trees: Option<usize>,
    pub lineage: Lineage,
    pub limitations: Vec<String>,
    /// What the training's leakage checks found (absent on cards written before the checks, and on imports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leakage: Option<crate::leak::LeakReport>,
    /// Where an imported model came from (absent for models Keel trained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedFrom>,
}

/// The file an imported model was read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportedFrom {
    pub file: String,
    #[serde(flatten)]
    pub source: crate::import::Source,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataSummary {
    pub source: String,
    pub rows: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    pub split: String,
    /// Columns left out of the features, with the reason.
    pub dropped: Vec<(String, String)>,
    /// The training file's profile (keel-data's `Profile` as JSON).
    pub profile: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselineSummary {
    pub kind: String,
    pub metrics: std::collections::BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lineage {
    pub dataset_hash: String,
    pub test_dataset_hash: Option<String>,
    pub code_version: String,
    pub seed: u64,
    pub model_sha256: String,
}

/// Limitations that follow from the evaluation itself.
pub fn derive_limitations(ev: &Evaluation, train_rows: usize) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "Evaluated on a holdout of {} rows drawn from the same source as the {} training rows; performance on data from another period or population is not measured here and must be monitored.",
        ev.rows, train_rows
    ));
    for f in &ev.fairness {
        if f.demographic_parity_difference > 0.1 {
            out.push(format!(
                "Selection rates differ by {:.3} across groups of '{}' (demographic parity difference above 0.1).",
                f.demographic_parity_difference, f.column
            ));
        }
        if f.equal_opportunity_difference > 0.1 {
            out.push(format!(
                "True-positive rates differ by {:.3} across groups of '{}' (equal opportunity difference above 0.1).",
                f.equal_opportunity_difference, f.column
            ));
        }
    }
    for s in &ev.slices {
        let small: Vec<&str> = s
            .groups
            .iter()
            .filter(|g| g.rows < 100)
            .map(|g| g.group.as_str())
            .collect();
        if !small.is_empty() {
            out.push(format!(
                "Groups of '{}' with fewer than 100 holdout rows ({}) have unreliable metrics.",
                s.column,
                small.join(", ")
            ));
        }
    }
    for c in &ev.classes {
        if c.support < 30 {
            out.push(format!(
                "Class '{}' has only {} holdout rows; its precision and recall are unreliable.",
                c.label, c.support
            ));
        }
        if c.expected_calibration_error > 0.05 {
            out.push(format!(
                "The probability of class '{}' is miscalibrated (expected calibration error {:.3}).",
                c.label, c.expected_calibration_error
            ));
        }
    }
    if let Some(ece) = ev.expected_calibration_error
        && ece > 0.05
    {
        out.push(format!("Probabilities are miscalibrated (expected calibration error {ece:.3}); do not read them as frequencies without recalibration."));
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "–".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.4}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or("–".into(), fmt)
}

/// Horizontal bar chart as inline SVG.
fn bar_chart(items: &[(String, f64)], color: &str) -> String {
    let max = items.iter().map(|i| i.1).fold(0.0, f64::max).max(1e-12);
    let (w, row, label_w) = (640.0, 22.0, 170.0);
    let h = row * items.len() as f64 + 10.0;
    let mut s = format!(r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img">"#);
    for (i, (name, v)) in items.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let bw = (w - label_w - 70.0) * v / max;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">{}</text><rect x="{label_w}" y="{y}" width="{bw:.1}" height="{}" fill="{color}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            label_w - 6.0,
            y + 13.0,
            esc(name),
            row - 6.0,
            label_w + bw + 4.0,
            y + 13.0,
            fmt(*v)
        );
    }
    s.push_str("</svg>");
    s
}

/// Line plot of points in the unit square, with the diagonal.
/// One line of a plot: name, points, colour.
type Series<'a> = (&'a str, &'a [(f64, f64)], &'a str);

fn unit_plot(series: &[Series<'_>], xlabel: &str, ylabel: &str) -> String {
    let (size, pad) = (300.0, 36.0);
    let px = |x: f64| pad + x * (size - 2.0 * pad);
    let py = |y: f64| size - pad - y * (size - 2.0 * pad);
    let mut s =
        format!(r#"<svg viewBox="0 0 {size} {size}" width="{size}" height="{size}" role="img">"#);
    let _ = write!(
        s,
        r##"<rect x="{p}" y="{p}" width="{d}" height="{d}" fill="none" stroke="#bbb"/><line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#ccc" stroke-dasharray="4"/>"##,
        px(0.0),
        py(0.0),
        px(1.0),
        py(1.0),
        p = pad,
        d = size - 2.0 * pad
    );
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="10" text-anchor="middle">{t}</text><text x="{}" y="{}" font-size="10" text-anchor="end">{t}</text>"#,
            px(t),
            size - pad + 14.0,
            pad - 4.0,
            py(t) + 3.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text><text x="12" y="{}" font-size="11" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        size / 2.0,
        size - 6.0,
        esc(xlabel),
        size / 2.0,
        size / 2.0,
        esc(ylabel)
    );
    for (name, pts, color) in series {
        let d: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"><title>{}</title></polyline>"#,
            d.join(" "),
            esc(name)
        );
        for (x, y) in pts.iter() {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{color}"/>"#,
                px(*x),
                py(*y)
            );
        }
    }
    s.push_str("</svg>");
    s
}

const PALETTE: [&str; 8] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
];

/// The confusion matrix as a shaded grid: rows are true classes, columns predicted; each cell's shade is its
/// share of the true class's rows (recall on the diagonal).
fn confusion_chart(labels: &[String], m: &[Vec<usize>]) -> String {
    let k = m.len();
    let cell = (360.0 / k.max(1) as f64).clamp(24.0, 64.0);
    let (left, top) = (110.0, 30.0);
    let size_w = left + cell * k as f64 + 10.0;
    let size_h = top + cell * k as f64 + 40.0;
    let mut s = format!(
        r#"<svg viewBox="0 0 {size_w} {size_h}" width="{size_w}" height="{size_h}" role="img"><title>confusion matrix</title>"#
    );
    for (r, row) in m.iter().enumerate() {
        let total: usize = row.iter().sum();
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + cell * (r as f64 + 0.55),
            esc(&labels[r])
        );
        for (c, &v) in row.iter().enumerate() {
            let share = v as f64 / total.max(1) as f64;
            let color = if r == c { "22,163,74" } else { "220,38,38" };
            let _ = write!(
                s,
                r##"<rect x="{:.1}" y="{:.1}" width="{cell:.1}" height="{cell:.1}" fill="rgba({color},{:.3})" stroke="#ddd"><title>true {} → predicted {}: {v} rows ({:.1} %)</title></rect><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{v}</text>"##,
                left + cell * c as f64,
                top + cell * r as f64,
                0.08 + 0.8 * share,
                esc(&labels[r]),
                esc(&labels[c]),
                100.0 * share,
                left + cell * (c as f64 + 0.5),
                top + cell * (r as f64 + 0.55),
            );
        }
    }
    for (c, l) in labels.iter().enumerate().take(k) {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            left + cell * (c as f64 + 0.5),
            top + cell * k as f64 + 16.0,
            esc(l)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">predicted</text><text x="{:.1}" y="16" font-size="11" text-anchor="end">true ↓</text></svg>"#,
        left + cell * k as f64 / 2.0,
        top + cell * k as f64 + 34.0,
        left - 6.0
    );
    s
}

/// The multiclass part of the card: the confusion matrix, each class's precision and recall with intervals,
/// and each class's calibration.
fn multiclass_section(h: &mut String, ev: &Evaluation) {
    let labels: Vec<String> = ev.classes.iter().map(|c| c.label.clone()).collect();
    h.push_str("<div class=\"grid\"><div><h3>Confusion matrix</h3>");
    h.push_str(&confusion_chart(&labels, &ev.confusion));
    h.push_str("<p class=\"muted\">Rows: true class; columns: predicted (the most probable class). Shade: share of the true class's rows.</p></div><div><h3>Calibration per class</h3>");
    let curves: Vec<Vec<(f64, f64)>> = ev
        .classes
        .iter()
        .map(|c| {
            c.calibration
                .iter()
                .map(|b| (b.mean_predicted, b.observed_rate))
                .collect()
        })
        .collect();
    let series: Vec<Series<'_>> = ev
        .classes
        .iter()
        .zip(&curves)
        .enumerate()
        .map(|(i, (c, pts))| (c.label.as_str(), pts.as_slice(), PALETTE[i % PALETTE.len()]))
        .collect();
    h.push_str(&unit_plot(
        &series,
        "mean predicted probability",
        "observed rate",
    ));
    h.push_str("<p class=\"muted\">");
    for (i, c) in ev.classes.iter().enumerate() {
        let _ = write!(
            h,
            "<span style=\"color:{}\">■</span> {} (ECE {}) ",
            PALETTE[i % PALETTE.len()],
            esc(&c.label),
            fmt(c.expected_calibration_error)
        );
    }
    h.push_str("</p></div></div><h3>Per class</h3><table><tr><th>class</th><th>holdout rows</th><th>precision</th><th>95 % interval</th><th>recall</th><th>95 % interval</th><th>F1</th></tr>");
    for c in &ev.classes {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{} – {}</td><td>{}</td></tr>",
            esc(&c.label),
            c.support,
            fmt(c.precision.value),
            fmt(c.precision.lower),
            fmt(c.precision.upper),
            fmt(c.recall.value),
            fmt(c.recall.lower),
            fmt(c.recall.upper),
            fmt(c.f1)
        );
    }
    h.push_str("</table>");
}

/// Renders the card as a self-contained HTML page.
pub fn render_html(card: &ModelCard) -> String {
    let ev = &card.evaluation;
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Model card: {name} v{ver}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}}
h1{{margin-bottom:.2em}}h2{{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}}
table{{border-collapse:collapse;margin:.6em 0;font-size:14px}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:right}}
th{{background:#f5f5f5}}td:first-child,th:first-child{{text-align:left}}.muted{{color:#666}}.warn{{color:#a33}}
.grid{{display:flex;gap:2em;flex-wrap:wrap}}code{{background:#f3f3f3;padding:1px 4px;border-radius:3px}}</style></head><body>
<h1>{name} <span class="muted">v{ver}</span></h1>
<p class="muted">{kind} · {obj:?} on <code>{target}</code> · created {created} by {by}</p>"#,
        name = esc(&card.model),
        ver = card.version,
        kind = esc(&card.kind),
        obj = card.objective,
        target = esc(&card.target),
        created = esc(&card.created_at),
        by = esc(&card.created_by),
    );
    let _ = write!(h, "<h2>Intended use</h2><p>{}</p>", esc(&card.intended_use));
    if let Some(i) = &card.imported {
        let s = &i.source;
        let _ = write!(
            h,
            "<h2>Imported model</h2><table><tr><td>library</td><td>{}{}</td></tr><tr><td>file format</td><td>{}{}</td></tr>\
             <tr><td>objective</td><td>{}</td></tr><tr><td>trees</td><td>{}</td></tr><tr><td>file</td><td><code>{}</code></td></tr>\
             <tr><td>file SHA-256</td><td><code>{}</code></td></tr></table><p class=\"muted\">Keel compiled the file's trees into its own \
             layout with the library's decision rules kept, so predictions agree with the library bit for bit; it did not train \
             the model and cannot say what it was trained on.</p>",
            esc(&s.library),
            s.library_version
                .as_deref()
                .map_or(String::new(), |v| format!(" {}", esc(v))),
            esc(s.format.as_str()),
            s.format_version
                .as_deref()
                .map_or(String::new(), |v| format!(" ({})", esc(v))),
            esc(&s.objective),
            s.trees,
            esc(&i.file),
            esc(&s.sha256)
        );
    }
    if ev.rows == 0 {
        h.push_str(
            "<h2>Holdout metrics</h2><p class=\"warn\">Not measured: the model was registered without labelled reference data, \
             so this card has no metrics, intervals, calibration, fairness or SHAP summary, and drift is measured against the \
             first served window. Import again with <code>--reference DATA --target COL</code> to get them.</p>",
        );
        let _ = write!(h, "<h2>Limitations</h2><ul>");
        for l in &card.limitations {
            let _ = write!(h, "<li>{}</li>", esc(l));
        }
        h.push_str("</ul></body></html>");
        return h;
    }
    if let Some(s) = &card.selection {
        let _ = write!(
            h,
            "<h2>Model choice</h2><p>Registered: {}. Why: {}.</p><p class=\"muted\">By default (<code>--model auto</code>) \
             Keel trains both candidates, compares them on a validation split carved from the training rows and registers \
             the better one, so the holdout below measures the registered model without having chosen it.</p>",
            esc(s.chosen.name()),
            esc(&s.reason)
        );
    }

    // Metrics.
    h.push_str(
        "<h2>Holdout metrics</h2><table><tr><th>metric</th><th>value</th><th>95 % interval</th>",
    );
    if let Some(b) = &card.baseline {
        let _ = write!(h, "<th>{}</th>", esc(&b.kind));
    }
    h.push_str("</tr>");
    for (k, m) in &ev.metrics {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><b>{}</b></td><td>{} – {}</td>",
            esc(k),
            fmt(m.value),
            fmt(m.lower),
            fmt(m.upper)
        );
        if let Some(b) = &card.baseline {
            let _ = write!(h, "<td>{}</td>", opt(b.metrics.get(k).copied()));
        }
        h.push_str("</tr>");
    }
    let _ = write!(
        h,
        "</table><p class=\"muted\">{} holdout rows{}; intervals from {} bootstrap resamples; threshold-dependent metrics at {}.</p>",
        ev.rows,
        ev.positives
            .map_or(String::new(), |p| format!(", {p} positive")),
        ev.bootstrap_resamples,
        ev.threshold
    );
    if card.objective == Objective::Binary {
        let cal: Vec<(f64, f64)> = ev
            .calibration
            .iter()
            .map(|b| (b.mean_predicted, b.observed_rate))
            .collect();
        h.push_str("<div class=\"grid\"><div><h3>ROC curve</h3>");
        h.push_str(&unit_plot(
            &[("ROC", &ev.roc_curve, "#2563eb")],
            "false-positive rate",
            "true-positive rate",
        ));
        h.push_str("</div><div><h3>Calibration</h3>");
        h.push_str(&unit_plot(
            &[("calibration", &cal, "#16a34a")],
            "mean predicted probability",
            "observed rate",
        ));
        let _ = write!(
            h,
            "<p class=\"muted\">Expected calibration error: {}</p></div></div>",
            opt(ev.expected_calibration_error)
        );
        h.push_str("<h3>Threshold table</h3><table><tr><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>accuracy</th><th>selection rate</th><th>FPR</th></tr>");
        for t in &ev.threshold_table {
            let _ = write!(
                h,
                "<tr><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                t.threshold,
                fmt(t.precision),
                fmt(t.recall),
                fmt(t.f1),
                fmt(t.accuracy),
                fmt(t.selection_rate),
                fmt(t.false_positive_rate)
            );
        }
        h.push_str("</table>");
    }
    if card.objective == Objective::Multiclass && !ev.classes.is_empty() {
        multiclass_section(&mut h, ev);
    }
    if let Some(c) = &ev.interval {
        let _ = write!(
            h,
            "<h3>Prediction intervals</h3><p>Every prediction is served with a {:.0} % interval: the value ± <b>{}</b>,              the split-conformal half-width from {} holdout rows. On the other {} holdout rows the interval held the              target for <b>{:.1} %</b> (95 % interval {:.1}–{:.1} %). Monitoring checks the same coverage on labels              that arrive later.</p>",
            c.level * 100.0,
            fmt(c.half_width),
            c.calibration_rows,
            c.coverage_rows,
            c.coverage * 100.0,
            c.coverage_interval[0] * 100.0,
            c.coverage_interval[1] * 100.0
        );
    }

    // Explanations.
    if let Some(shap) = &ev.shap {
        let top: Vec<(String, f64)> = shap.features.iter().take(15).cloned().collect();
        let _ = write!(
            h,
            "<h2>What drives predictions</h2><p>Mean |SHAP value| (exact TreeSHAP, {}) over {} holdout rows; expected value {}.</p>{}",
            match card.objective {
                Objective::Binary => "log-odds scale",
                Objective::Multiclass => "summed over the classes' softmax margins",
                Objective::Regression => "the target's scale",
            },
            shap.rows,
            fmt(shap.expected_value),
            bar_chart(&top, "#7c3aed")
        );
    }

    // Fairness and slices.
    if !ev.fairness.is_empty() {
        h.push_str("<h2>Fairness</h2><table><tr><th>sensitive column</th><th>demographic parity diff.</th><th>disparate impact ratio</th><th>equal opportunity diff.</th><th>FPR diff.</th></tr>");
        for f in &ev.fairness {
            let cls = |x: f64| if x > 0.1 { " class=\"warn\"" } else { "" };
            let _ = write!(
                h,
                "<tr><td>{}</td><td{}>{}</td><td>{}</td><td{}>{}</td><td>{}</td></tr>",
                esc(&f.column),
                cls(f.demographic_parity_difference),
                fmt(f.demographic_parity_difference),
                fmt(f.disparate_impact_ratio),
                cls(f.equal_opportunity_difference),
                fmt(f.equal_opportunity_difference),
                fmt(f.false_positive_rate_difference)
            );
        }
        h.push_str("</table>");
    }
    if !ev.slices.is_empty() {
        h.push_str("<h2>Slices</h2>");
        for s in &ev.slices {
            let _ = write!(
                h,
                "<h3>{}</h3><table><tr><th>group</th><th>rows</th>",
                esc(&s.column)
            );
            if card.objective == Objective::Binary {
                h.push_str("<th>positives</th><th>AUC</th><th>accuracy</th><th>selection rate</th><th>TPR</th><th>FPR</th></tr>");
                for g in &s.groups {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&g.group),
                        g.rows,
                        g.positives,
                        opt(g.auc),
                        opt(g.accuracy),
                        opt(g.selection_rate),
                        opt(g.true_positive_rate),
                        opt(g.false_positive_rate)
                    );
                }
                let sel: Vec<(String, f64)> = s
                    .groups
                    .iter()
                    .filter_map(|g| Some((g.group.clone(), g.selection_rate?)))
                    .collect();
                let _ = write!(
                    h,
                    "</table><p class=\"muted\">Selection rate by group</p>{}",
                    bar_chart(&sel, "#0891b2")
                );
            } else if card.objective == Objective::Multiclass {
                h.push_str("<th>accuracy</th></tr>");
                for g in &s.groups {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&g.group),
                        g.rows,
                        opt(g.accuracy)
                    );
                }
                let acc: Vec<(String, f64)> = s
                    .groups
                    .iter()
                    .filter_map(|g| Some((g.group.clone(), g.accuracy?)))
                    .collect();
                let _ = write!(
                    h,
                    "</table><p class=\"muted\">Accuracy by group</p>{}",
                    bar_chart(&acc, "#0891b2")
                );
            } else {
                h.push_str("<th>RMSE</th></tr>");
                for g in &s.groups {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&g.group),
                        g.rows,
                        opt(g.rmse)
                    );
                }
                h.push_str("</table>");
            }
        }
    }

    // Data.
    let d = &card.data;
    let _ = write!(
        h,
        "<h2>Data</h2><p>Source <code>{}</code>: {} rows; {} for training, {} for evaluation ({}).</p><p>Features ({}): {}</p>",
        esc(&d.source),
        d.rows,
        d.train_rows,
        d.test_rows,
        esc(&d.split),
        card.features.len(),
        card.features
            .iter()
            .map(|f| format!("<code>{}</code>", esc(f)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    if !d.dropped.is_empty() {
        h.push_str("<p>Not used as features: ");
        let items: Vec<String> = d
            .dropped
            .iter()
            .map(|(c, r)| format!("<code>{}</code> ({})", esc(c), esc(r)))
            .collect();
        h.push_str(&items.join(", "));
        h.push_str("</p>");
    }
    if let Some(cols) = d.profile.get("columns").and_then(|c| c.as_array()) {
        h.push_str("<table><tr><th>column</th><th>type</th><th>nulls</th><th>distinct</th><th>min</th><th>mean</th><th>max</th><th>top values</th></tr>");
        for c in cols {
            let g = |k: &str| c.get(k).cloned().unwrap_or_default();
            let num = c.get("numeric").filter(|n| !n.is_null());
            let nf = |k: &str| {
                num.and_then(|n| n.get(k))
                    .and_then(|v| v.as_f64())
                    .map_or("".into(), fmt)
            };
            let top = c
                .get("top")
                .and_then(|t| t.as_array())
                .map(|t| {
                    t.iter()
                        .take(3)
                        .filter_map(|p| Some(format!("{} ({})", p.get(0)?.as_str()?, p.get(1)?)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(g("name").as_str().unwrap_or("")),
                esc(g("type").as_str().unwrap_or("")),
                g("nulls"),
                g("distinct"),
                nf("min"),
                nf("mean"),
                nf("max"),
                esc(&top)
            );
        }
        h.push_str("</table>");
    }

    // Lineage and limitations.
    let l = &card.lineage;
    let _ = write!(
        h,
        "<h2>Lineage</h2><table><tr><td>dataset</td><td><code>{}</code></td></tr>{}<tr><td>model artifact</td><td><code>sha256:{}</code></td></tr><tr><td>code version</td><td><code>{}</code></td></tr><tr><td>seed</td><td>{}</td></tr><tr><td>training time</td><td>{:.2} s</td></tr></table><details><summary>Parameters</summary><pre>{}</pre></details>",
        esc(&l.dataset_hash),
        l.test_dataset_hash
            .as_ref()
            .map_or(String::new(), |t| format!(
                "<tr><td>test dataset</td><td><code>{}</code></td></tr>",
                esc(t)
            )),
        esc(&l.model_sha256),
        esc(&l.code_version),
        l.seed,
        card.train_seconds,
        esc(&serde_json::to_string_pretty(&card.params).unwrap_or_default())
    );
    h.push_str("<h2>Limitations</h2><ul>");
    for x in &card.limitations {
        let _ = write!(h, "<li>{}</li>", esc(x));
    }
    h.push_str("</ul></body></html>\n");
    h
}
