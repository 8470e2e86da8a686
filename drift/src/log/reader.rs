//! Reading a window of logged predictions back from a sink.
//!
//! Every `predictions-*.jsonl` file (or object) under the sink is scanned; records of other
//! models or versions, or older than `since`, are skipped. A last line without its newline
//! that does not parse is a write cut short by a crash: skipped and counted in
//! `truncated_lines`, never fatal. Other unparseable lines are counted in `invalid_lines`.
//! With `max_samples`, the most recent records are kept.
//!
//! The same scan reads into records ([`read_records`]) or into the columns a drift check
//! reads ([`read_columns`]), which never builds a record for a line the fast path reads.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::columns::LogColumns;
use super::line::{Row, parse_row};
use super::record::PredictionRecord;
use super::sink::{S3Options, SinkError, SinkUrl};

/// Which records to read.
#[derive(Clone, Debug, Default)]
pub struct ReadQuery {
    pub model: String,
    /// `None` reads every version.
    pub version: Option<String>,
    /// Only records at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Keep at most this many (the most recent).
    pub max_samples: Option<usize>,
}

/// What the scan saw, for the report.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ReadStats {
    pub files: usize,
    pub lines: usize,
    /// Records of this model/version in the window, before `max_samples`.
    pub matched: usize,
    pub truncated_lines: usize,
    pub invalid_lines: usize,
}

/// Files last modified this long before `since` are skipped unread. The margin covers
/// coarse file-system timestamps and clock skew between writers and the object store, which
/// stamps `last_modified` with its own clock; records are still filtered one by one.
const MTIME_SLACK_MS: i64 = 5 * 60 * 1000;

impl ReadStats {
    /// Adds the line counts of a part of the scan (a block, a chunk parsed on another core).
    fn add(&mut self, part: &ReadStats) {
        self.lines += part.lines;
        self.truncated_lines += part.truncated_lines;
        self.invalid_lines += part.invalid_lines;
    }
}

impl ReadQuery {
    fn selects(&self, model: &str, version: &str, ts_ms: i64) -> bool {
        model == self.model
            && self.version.as_ref().is_none_or(|v| v == version)
            && self.since_ms.is_none_or(|s| ts_ms >= s)
    }
}

/// What a scan reads the selected lines into.
pub trait Rows: Default + Send {
    /// How many rows were read.
    fn count(&self) -> usize;
    /// Adds the rows of a later part of the scan.
    fn append(&mut self, later: Self);
    /// Keeps the `max` most recent rows.
    fn keep_most_recent(&mut self, max: usize);
    /// Adds a line the fast path read.
    #[doc(hidden)]
    fn add_row(&mut self, row: &Row<'_>);
    /// Adds a line serde_json read.
    #[doc(hidden)]
    fn add_record(&mut self, record: PredictionRecord);

    /// Adds one line if the query selects it; `row` is scratch for the fast path. An error
    /// is the line's own (serde_json's verdict).
    #[doc(hidden)]
    fn push_line<'a>(
        &mut self,
        line: &'a [u8],
        row: &mut Row<'a>,
        query: &ReadQuery,
    ) -> Result<(), serde_json::Error> {
        // The fast path reads the lines the logger writes; what it declines, serde_json
        // judges (see `line`).
        if parse_row(line, row).is_some() {
            if query.selects(&row.model, &row.version, row.ts_ms) {
                self.add_row(row);
            }
            return Ok(());
        }
        let rec = serde_json::from_slice::<PredictionRecord>(line)?;
        if query.selects(&rec.model, &rec.version, rec.ts_ms) {
            self.add_record(rec);
        }
        Ok(())
    }
}

impl Rows for Vec<PredictionRecord> {
    fn count(&self) -> usize {
        self.len()
    }

    fn append(&mut self, mut later: Self) {
        if self.is_empty() {
            *self = later;
        } else {
            Vec::append(self, &mut later);
        }
    }

    fn keep_most_recent(&mut self, max: usize) {
        // Most recent first, then keep `max`.
        self.sort_by_key(|r| std::cmp::Reverse(r.ts_ms));
        self.truncate(max);
    }

    fn add_row(&mut self, row: &Row<'_>) {
        self.push(row.to_record());
    }

    fn add_record(&mut self, record: PredictionRecord) {
        self.push(record);
    }
}

impl Rows for LogColumns {
    fn count(&self) -> usize {
        self.len()
    }

    fn append(&mut self, later: Self) {
        LogColumns::append(self, later);
    }

    fn keep_most_recent(&mut self, max: usize) {
        LogColumns::keep_most_recent(self, max);
    }

    fn add_row(&mut self, row: &Row<'_>) {
        self.push_row(row);
    }

    fn add_record(&mut self, record: PredictionRecord) {
        self.push_record(&record);
    }
}

fn is_log_file(name: &str) -> bool {
    name.starts_with("predictions-") && name.ends_with(".jsonl")
}

/// Read the records `query` selects from the sink at `sink_url`.
pub async fn read_records(
    sink_url: &str,
    query: &ReadQuery,
    s3: &S3Options,
) -> Result<(Vec<PredictionRecord>, ReadStats), SinkError> {
    read(sink_url, query, s3).await
}

/// Read the rows `query` selects from the sink at `sink_url` as the drift check's columns.
pub async fn read_columns(
    sink_url: &str,
    query: &ReadQuery,
    s3: &S3Options,
) -> Result<(LogColumns, ReadStats), SinkError> {
    read(sink_url, query, s3).await
}

async fn read<R: Rows + 'static>(
    sink_url: &str,
    query: &ReadQuery,
    s3: &S3Options,
) -> Result<(R, ReadStats), SinkError> {
    let url = SinkUrl::parse(sink_url)?;
    let mut stats = ReadStats::default();
    let mut records = R::default();
    match url {
        SinkUrl::Dir(dir) => {
            let mut entries = tokio::fs::read_dir(&dir)
                .await
                .map_err(|source| SinkError::Io {
                    context: format!("listing the prediction log directory {}", dir.display()),
                    source,
                })?;
            let io = |context: String| move |source| SinkError::Io { context, source };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(io(format!("listing {}", dir.display())))?
            {
                let name = entry.file_name().to_string_lossy().to_string();
                if !is_log_file(&name) {
                    continue;
                }
                // A file last written before the window cannot hold records inside it.
                if let (Some(since), Ok(meta)) = (query.since_ms, entry.metadata().await) {
                    let modified_ms = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as i64);
                    if modified_ms.is_some_and(|m| m < since - MTIME_SLACK_MS) {
                        continue;
                    }
                }
                let path = entry.path();
                let q = query.clone();
                let (recs, st) = tokio::task::spawn_blocking(move || read_file::<R>(&path, &q))
                    .await
                    .map_err(|e| SinkError::Io {
                        context: format!("reading {}", entry.path().display()),
                        source: std::io::Error::other(e),
                    })?
                    .map_err(io(format!("reading {}", entry.path().display())))?;
                records.append(recs);
                stats.files += 1;
                stats.add(&st);
            }
        }
        SinkUrl::S3 { bucket, prefix } => {
            let store = SinkUrl::object_store(&bucket, s3)?;
            let list_prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
            let objects: Vec<_> = store
                .list(list_prefix.as_ref())
                .try_collect()
                .await
                .map_err(|source| SinkError::ObjectStore {
                    context: format!("listing s3://{bucket}/{prefix}"),
                    source,
                })?;
            for meta in objects {
                let name = meta.location.filename().unwrap_or_default().to_string();
                if !is_log_file(&name) {
                    continue;
                }
                if query
                    .since_ms
                    .is_some_and(|since| meta.last_modified.timestamp_millis() < since)
                {
                    continue;
                }
                let ctx = || format!("reading s3://{bucket}/{}", meta.location);
                let got =
                    store
                        .get(&meta.location)
                        .await
                        .map_err(|source| SinkError::ObjectStore {
                            context: ctx(),
                            source,
                        })?;
                let bytes = got.bytes().await.map_err(|source| SinkError::ObjectStore {
                    context: ctx(),
                    source,
                })?;
                stats.files += 1;
                parse_lines(&bytes, query, &mut records, &mut stats);
            }
        }
    }
    stats.matched = records.count();
    if let Some(max) = query.max_samples.filter(|&max| records.count() > max) {
        records.keep_most_recent(max);
    }
    Ok((records, stats))
}

/// Bytes read from a log file at a time: the file is parsed block by block, so memory holds
/// one block (and the records kept), never the whole file.
const READ_BLOCK_BYTES: usize = 16 << 20;

/// Reads one log file in blocks of whole lines.
fn read_file<R: Rows>(
    path: &std::path::Path,
    query: &ReadQuery,
) -> std::io::Result<(R, ReadStats)> {
    read_file_in_blocks(path, query, READ_BLOCK_BYTES)
}

/// [`read_file`] with `block` bytes a read; a line longer than a block grows the block.
fn read_file_in_blocks<R: Rows>(
    path: &std::path::Path,
    query: &ReadQuery,
    block: usize,
) -> std::io::Result<(R, ReadStats)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let (mut records, mut stats) = (R::default(), ReadStats::default());
    let mut buf: Vec<u8> = Vec::with_capacity(block);
    loop {
        let n = (&mut file).take(block as u64).read_to_end(&mut buf)?;
        if n == 0 {
            // The end: what is left is the last line, perhaps cut short by a crash.
            parse_lines(&buf, query, &mut records, &mut stats);
            return Ok((records, stats));
        }
        if let Some(last) = memchr::memrchr(b'\n', &buf) {
            parse_lines(&buf[..=last], query, &mut records, &mut stats);
            buf.drain(..=last);
        }
    }
}

/// Parse JSON lines, keeping the rows the query selects. Large files are split at line
/// boundaries and parsed on all cores (JSON parsing dominates reading a log).
pub fn parse_lines<R: Rows>(bytes: &[u8], query: &ReadQuery, out: &mut R, stats: &mut ReadStats) {
    const PARALLEL_MIN_BYTES: usize = 8 << 20;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if bytes.len() < PARALLEL_MIN_BYTES || threads < 2 {
        return parse_lines_serial(bytes, query, out, stats);
    }
    // Chunk ends move forward to just after a newline, so only the last chunk can end in
    // an unterminated (possibly truncated) line, exactly as in the serial scan.
    let mut bounds = vec![0];
    for i in 1..threads {
        let target = (bytes.len() * i / threads).max(*bounds.last().expect("non-empty"));
        let end = bytes[target..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| target + p + 1);
        bounds.push(end);
    }
    bounds.push(bytes.len());
    let parts: Vec<(R, ReadStats)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let chunk = &bytes[w[0]..w[1]];
                scope.spawn(move || {
                    let (mut recs, mut st) = (R::default(), ReadStats::default());
                    parse_lines_serial(chunk, query, &mut recs, &mut st);
                    (recs, st)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread"))
            .collect()
    });
    for (recs, st) in parts {
        out.append(recs);
        stats.add(&st);
    }
}

fn parse_lines_serial<R: Rows>(
    bytes: &[u8],
    query: &ReadQuery,
    out: &mut R,
    stats: &mut ReadStats,
) {
    let mut rest = bytes;
    let mut row = Row::default();
    while !rest.is_empty() {
        let (line, terminated, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], true, &rest[i + 1..]),
            None => (rest, false, &rest[rest.len()..]),
        };
        rest = next;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        stats.lines += 1;
        match out.push_line(line, &mut row, query) {
            Ok(()) => {}
            Err(_) if !terminated => stats.truncated_lines += 1,
            Err(e) => {
                stats.invalid_lines += 1;
                tracing::warn!(error = %e, "skipping an invalid prediction log line");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(model: &str, version: &str, ts: i64) -> String {
        let mut r = PredictionRecord::now(model, version, "r", "api_v1");
        r.ts_ms = ts;
        serde_json::to_string(&r).unwrap() + "\n"
    }

    #[test]
    fn a_truncated_last_line_is_counted_not_fatal() {
        let full = line("m", "1", 10);
        let data = format!("{full}{}", &full[..full.len() / 2]);
        let (mut out, mut stats) = (Vec::new(), ReadStats::default());
        let q = ReadQuery {
            model: "m".into(),
            ..Default::default()
        };
        parse_lines(data.as_bytes(), &q, &mut out, &mut stats);
        assert_eq!(out.len(), 1);
        assert_eq!(stats.truncated_lines, 1);
        assert_eq!(stats.invalid_lines, 0);
    }

    #[test]
    fn a_large_file_parsed_in_parallel_keeps_every_record_and_the_truncation() {
        let one = line("m", "1", 10);
        let n = (9 << 20) / one.len() + 1;
        let mut data = one.repeat(n);
        data.push_str(&one[..one.len() / 2]);
        let (mut out, mut stats) = (Vec::new(), ReadStats::default());
        let q = ReadQuery {
            model: "m".into(),
            ..Default::default()
        };
        parse_lines(data.as_bytes(), &q, &mut out, &mut stats);
        assert_eq!(out.len(), n);
        assert_eq!(stats.lines, n + 1);
        assert_eq!((stats.truncated_lines, stats.invalid_lines), (1, 0));
    }

    #[test]
    fn a_file_read_in_blocks_smaller_than_a_line_reads_every_line_once() {
        let lines: Vec<String> = (0..20).map(|i| line("m", "1", i)).collect();
        let mut data = lines.concat();
        data.push_str(&lines[0][..lines[0].len() / 2]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions-a.jsonl");
        std::fs::write(&path, &data).unwrap();
        let q = ReadQuery {
            model: "m".into(),
            ..Default::default()
        };
        for block in [7, lines[0].len(), 1000, READ_BLOCK_BYTES] {
            let (out, stats): (Vec<PredictionRecord>, _) =
                read_file_in_blocks(&path, &q, block).unwrap();
            assert_eq!(
                out.iter().map(|r| r.ts_ms).collect::<Vec<_>>(),
                (0..20).collect::<Vec<_>>()
            );
            assert_eq!(
                (stats.lines, stats.truncated_lines, stats.invalid_lines),
                (21, 1, 0)
            );
        }
    }

    #[test]
    fn filters_model_version_and_window() {
        let data = [
            line("m", "1", 10),
            line("m", "2", 20),
            line("other", "1", 30),
            line("m", "1", 5),
        ]
        .concat();
        let q = ReadQuery {
            model: "m".into(),
            version: Some("1".into()),
            since_ms: Some(8),
            max_samples: None,
        };
        let (mut out, mut stats) = (Vec::new(), ReadStats::default());
        parse_lines(data.as_bytes(), &q, &mut out, &mut stats);
        assert_eq!(out.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), vec![10]);
        assert_eq!(stats.lines, 4);
    }
}
