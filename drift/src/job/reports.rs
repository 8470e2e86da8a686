//! Where the full reports go: `report.json` and `report.html` under `--report-dir`, else
//! under `reports/` in the sink (a directory or S3).

use std::time::SystemTime;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::{DriftArgs, DriftError};
use crate::check;
use crate::log::SinkUrl;
use crate::report;

/// Write `report.json` and `report.html`; returns where the HTML is.
pub(super) async fn write(
    args: &DriftArgs,
    sink: &SinkUrl,
    full: &check::FullReport,
) -> Result<String, DriftError> {
    let stamp = humantime::format_rfc3339_millis(SystemTime::now())
        .to_string()
        .replace(':', "");
    let name = format!(
        "drift-{}-{}-{stamp}",
        safe(&args.model),
        safe(args.version.as_deref().unwrap_or("all"))
    );
    let json = report::full_json(full);
    let html = report::html(full);
    let out_err = |what: String| {
        move |e: std::io::Error| DriftError::Output {
            what: what.clone(),
            reason: e.to_string(),
        }
    };
    let dir = match (&args.report_dir, sink) {
        (Some(d), _) => Some(d.join(&name)),
        (None, SinkUrl::Dir(d)) => Some(d.join("reports").join(&name)),
        (None, SinkUrl::S3 { .. }) => None,
    };
    if let Some(dir) = dir {
        std::fs::create_dir_all(&dir).map_err(out_err(dir.display().to_string()))?;
        std::fs::write(dir.join("report.json"), json)
            .map_err(out_err(dir.join("report.json").display().to_string()))?;
        let html_path = dir.join("report.html");
        std::fs::write(&html_path, html).map_err(out_err(html_path.display().to_string()))?;
        return Ok(format!("file://{}", html_path.display()));
    }
    let SinkUrl::S3 { bucket, prefix } = sink else {
        unreachable!("directories handled above")
    };
    let store = SinkUrl::object_store(bucket, &args.s3())?;
    let base = if prefix.is_empty() {
        format!("reports/{name}")
    } else {
        format!("{prefix}/reports/{name}")
    };
    for (file, body) in [("report.json", json), ("report.html", html)] {
        let key = format!("{base}/{file}");
        store
            .put(
                &ObjectPath::from(key.as_str()),
                bytes::Bytes::from(body).into(),
            )
            .await
            .map_err(|e| DriftError::Output {
                what: format!("s3://{bucket}/{key}"),
                reason: e.to_string(),
            })?;
    }
    Ok(format!("s3://{bucket}/{base}/report.html"))
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
