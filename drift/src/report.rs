//! What a check produces: the compact result (the operator's contract, under 4 KB), the
//! full JSON report and a self-contained HTML page with one histogram per feature.

use std::fmt::Write as _;

use mooring_drift_report::ChallengerCheck;
use mooring_drift_report::{
    DriftReport, DriftTest, DriftVerdict, FeatureDrift, FeatureKind, TestResult,
};
use plotters::prelude::*;

use crate::check::{FeatureReport, FullReport, Kind, Verdict};
use crate::stats::{Histogram, TestKind};

/// The kubelet keeps at most 4096 bytes of a termination message; stay clear of it.
pub const COMPACT_LIMIT: usize = 3800;

fn drift_test(t: TestKind) -> DriftTest {
    match t {
        TestKind::Ks => DriftTest::KolmogorovSmirnov,
        TestKind::Wasserstein => DriftTest::Wasserstein,
        TestKind::Chisquare | TestKind::Chi2Contingency => DriftTest::ChiSquare,
        TestKind::Jensenshannon => DriftTest::JensenShannon,
        TestKind::Psi => DriftTest::Psi,
    }
}

fn test_result(f: &FeatureReport) -> TestResult {
    TestResult {
        test: drift_test(f.outcome.test),
        statistic: finite(f.outcome.statistic),
        p_value: f.outcome.p_value,
        threshold: f.outcome.threshold,
        drifted: f.outcome.drifted,
    }
}

/// JSON has no infinity (a new category gives an infinite chi-square): cap at f64::MAX.
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { f64::MAX }
}

/// The compact result: drifted features first; features are dropped from the end until
/// the JSON fits [`COMPACT_LIMIT`], and the message says how many were left out.
pub fn compact(
    full: &FullReport,
    report_uri: Option<String>,
    challenger: Option<ChallengerCheck>,
) -> DriftReport {
    let mut features: Vec<&FeatureReport> = full.features.iter().collect();
    features.sort_by_key(|f| (!f.outcome.drifted, f.name.clone()));
    let mut out = DriftReport {
        verdict: match full.verdict {
            Verdict::NoDrift => DriftVerdict::NoDrift,
            Verdict::Drift => DriftVerdict::Drift,
            Verdict::InsufficientData => DriftVerdict::InsufficientData,
        },
        model: full.model.clone(),
        model_version: full.version.clone(),
        samples: full.samples as u64,
        reference_samples: full.reference_samples as u64,
        drift_share: full.drift_share,
        drift_share_threshold: full.drift_share_threshold,
        features: features
            .iter()
            .map(|f| FeatureDrift {
                name: f.name.clone(),
                kind: if f.kind == Kind::Numeric {
                    FeatureKind::Numeric
                } else {
                    FeatureKind::Categorical
                },
                result: test_result(f),
            })
            .collect(),
        prediction: full.prediction.as_ref().map(test_result),
        // A message alone must not push the report past the kubelet's limit.
        message: full
            .message
            .as_deref()
            .map(|m| cut_message(m, FAILED_MESSAGE_LIMIT)),
        report_uri,
        challenger,
    };
    let total = out.features.len();
    while compact_json(&out).len() > COMPACT_LIMIT && !out.features.is_empty() {
        out.features.pop();
        let note = format!(
            "{} of {total} features omitted to fit the termination message; see the full report",
            total - out.features.len()
        );
        out.message = Some(match &full.message {
            Some(m) => format!("{}; {note}", cut_message(m, FAILED_MESSAGE_LIMIT)),
            None => note,
        });
    }
    out
}

pub fn compact_json(r: &DriftReport) -> String {
    serde_json::to_string(r).expect("the report serialises")
}

/// Bytes of a failed check's message kept in the termination message.
const FAILED_MESSAGE_LIMIT: usize = 2000;

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a character
/// boundary, with `…` appended when something was cut. `String::truncate` at a fixed byte
/// count panics inside a multibyte character (an error message quoting a user's text).
pub fn cut_message(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The result of a check that could not run, for the termination message.
pub fn failed(model: &str, version: Option<&str>, message: &str) -> DriftReport {
    let msg = cut_message(message, FAILED_MESSAGE_LIMIT);
    DriftReport {
        verdict: DriftVerdict::Failed,
        model: model.to_string(),
        model_version: version.map(str::to_string),
        samples: 0,
        reference_samples: 0,
        drift_share: 0.0,
        drift_share_threshold: 0.0,
        features: Vec::new(),
        prediction: None,
        message: Some(msg),
        report_uri: None,
        challenger: None,
    }
}

/// The full report as pretty JSON (infinite statistics written as null).
pub fn full_json(full: &FullReport) -> String {
    serde_json::to_string_pretty(full).expect("the report serialises")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "∞".into()
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e5) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// One bin: left edge, right edge, reference share, current share.
type Bar = (f64, f64, f64, f64);

/// Axis ticks: `2` and `2.5`, not `2.0000`.
fn axis_num(x: f64) -> String {
    let s = fmt_num(x);
    if s.contains('e') || !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

const REFERENCE_COLOUR: RGBColor = RGBColor(70, 110, 200);
const CURRENT_COLOUR: RGBColor = RGBColor(230, 110, 40);

/// An SVG histogram of reference vs current shares.
pub fn histogram_svg(title: &str, h: &Histogram) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520, 260)).into_drawing_area();
        if draw_histogram(&root, title, h).is_err() {
            return String::new();
        }
        let _ = root.present();
    }
    svg
}

fn draw_histogram<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    h: &Histogram,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (bars, labels): (Vec<Bar>, Option<Vec<String>>) = match h {
        Histogram::Numeric {
            edges,
            reference,
            current,
        } => (
            (0..reference.len())
                .map(|i| (edges[i], edges[i + 1], reference[i], current[i]))
                .collect(),
            None,
        ),
        Histogram::Categorical {
            categories,
            reference,
            current,
        } => (
            (0..reference.len())
                .map(|i| (i as f64 - 0.4, i as f64 + 0.4, reference[i], current[i]))
                .collect(),
            Some(categories.clone()),
        ),
    };
    if bars.is_empty() {
        return Ok(());
    }
    let x0 = bars.first().map(|b| b.0).unwrap_or(0.0);
    let x1 = bars.last().map(|b| b.1).unwrap_or(1.0);
    let ymax = bars
        .iter()
        .map(|b| b.2.max(b.3))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(x0..x1, 0.0..ymax)?;
    let cats = labels.clone();
    let x_fmt = move |x: &f64| match &cats {
        Some(c) => {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                c.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
        None => axis_num(*x),
    };
    let mut mesh = chart.configure_mesh();
    mesh.y_desc("share")
        .x_label_formatter(&x_fmt)
        .disable_x_mesh();
    if let Some(c) = &labels {
        mesh.x_labels(c.len() * 2 + 1);
    }
    mesh.draw()?;
    // Reference and current side by side within each bin.
    chart
        .draw_series(bars.iter().map(|&(a, b, r, _)| {
            Rectangle::new(
                [(a, 0.0), (a + (b - a) / 2.0, r)],
                REFERENCE_COLOUR.mix(0.85).filled(),
            )
        }))?
        .label("reference")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], REFERENCE_COLOUR.filled()));
    chart
        .draw_series(bars.iter().map(|&(a, b, _, c)| {
            Rectangle::new(
                [(a + (b - a) / 2.0, 0.0), (b, c)],
                CURRENT_COLOUR.mix(0.85).filled(),
            )
        }))?
        .label("current")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], CURRENT_COLOUR.filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn feature_card(out: &mut String, f: &FeatureReport) {
    let o = &f.outcome;
    let score = match o.p_value {
        Some(p) => format!(
            "p-value {} ({} if &lt; {})",
            fmt_num(p),
            "drift",
            fmt_num(o.threshold)
        ),
        None => format!(
            "distance {} (drift if ≥ {})",
            fmt_num(o.statistic),
            fmt_num(o.threshold)
        ),
    };
    let badge = if o.drifted {
        r#"<span class="bad">drift</span>"#
    } else {
        r#"<span class="ok">no drift</span>"#
    };
    let _ = write!(
        out,
        r#"<section class="card"><h3>{name} {badge}</h3><p>{test} · statistic {stat} · {score}<br>reference {rc} values · current {cc} values{missing}</p>{svg}</section>"#,
        name = escape(&f.name),
        test = o.test,
        stat = fmt_num(o.statistic),
        rc = f.reference_count,
        cc = f.current_count,
        missing = if f.current_missing > 0 {
            format!(" · {} missing/NaN dropped", f.current_missing)
        } else {
            String::new()
        },
        svg = histogram_svg(&f.name, &f.histogram),
    );
}

/// A self-contained HTML page: verdict, summary, one card per feature with its histogram.
pub fn html(full: &FullReport) -> String {
    let mut out = String::new();
    let verdict = format!("{:?}", full.verdict);
    let _ = write!(
        out,
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Drift report: {model}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#f6f7f9}}
.card{{background:#fff;border-radius:8px;padding:1em;margin:1em 0;box-shadow:0 1px 3px #0002;display:inline-block;vertical-align:top;margin-right:1em}}
.bad{{background:#d33;color:#fff;padding:2px 8px;border-radius:4px;font-size:.8em}}
.ok{{background:#3a3;color:#fff;padding:2px 8px;border-radius:4px;font-size:.8em}}
.verdict{{font-size:1.6em}} td,th{{padding:2px 10px;text-align:left}}
</style></head><body><h1>Drift report: {model} {version}</h1>
<p class="verdict">Verdict: <b>{verdict}</b></p>
<table><tr><th>generated</th><td>{generated}</td></tr><tr><th>current samples</th><td>{samples}</td></tr>
<tr><th>reference samples</th><td>{refs}</td></tr><tr><th>drifted features</th><td>{drifted} of {tested} (share {share}, threshold {threshold})</td></tr></table>"#,
        model = escape(&full.model),
        version = escape(
            full.version
                .as_deref()
                .map(|v| format!("version {v}"))
                .as_deref()
                .unwrap_or("")
        ),
        generated = escape(&full.generated_at),
        samples = full.samples,
        refs = full.reference_samples,
        drifted = full.drifted_features,
        tested = full.tested_features,
        share = fmt_num(full.drift_share),
        threshold = fmt_num(full.drift_share_threshold),
    );
    if let Some(m) = &full.message {
        let _ = write!(out, "<p><i>{}</i></p>", escape(m));
    }
    out.push_str("<h2>Features</h2>");
    for f in &full.features {
        feature_card(&mut out, f);
    }
    if let Some(p) = &full.prediction {
        out.push_str("<h2>Predictions</h2>");
        feature_card(&mut out, p);
    }
    if !full.skipped.is_empty() {
        out.push_str("<h2>Not tested</h2><ul>");
        for s in &full.skipped {
            let _ = write!(out, "<li>{}: {}</li>", escape(&s.name), escape(&s.reason));
        }
        out.push_str("</ul>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_on_a_character_boundary() {
        // 2000 is not a multiple of 3: a byte cut lands inside a `€` (it used to panic).
        let message = "€".repeat(1000);
        let report = failed("m", Some("1"), &message);
        let kept = report.message.unwrap();
        assert!(kept.len() <= FAILED_MESSAGE_LIMIT + '…'.len_utf8());
        assert!(kept.ends_with('…'));
        assert_eq!(kept.trim_end_matches('…'), "€".repeat(666));
        assert!(compact_json(&failed("m", None, &message)).len() < COMPACT_LIMIT);
    }

    #[test]
    fn cut_message_keeps_short_text_and_never_splits_a_character() {
        assert_eq!(cut_message("héllo", 100), "héllo");
        for max in 0..8 {
            let cut = cut_message("aé€😀b", max);
            assert!(cut.trim_end_matches('…').len() <= max, "{max}: {cut}");
        }
    }
}
