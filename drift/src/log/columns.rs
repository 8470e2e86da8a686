//! The logged rows a drift check reads, as columns: one cell per row for each feature, the
//! predicted class, and the timestamp (for `max_samples`). Texts (categorical values and
//! labels) are interned once and held as ids.
//!
//! A million rows as [`PredictionRecord`]s is a million maps of small owned strings; most
//! of reading a log went into building and freeing them. The columns cost 16 bytes a cell.

use std::collections::{BTreeMap, HashMap};

use super::line::{Row, Value};
use super::record::{FeatureValue, PredictionRecord};

/// One feature in one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell {
    /// The row does not have this feature.
    Absent,
    /// A finite number.
    Number(f64),
    /// A text, by id (see [`LogColumns::texts`]).
    Text(u32),
    /// `null`, NaN or ±inf.
    Missing,
}

/// Columns by name, in the order they were first seen; every column has a cell per row.
#[derive(Clone, Debug, Default)]
struct Named {
    names: Vec<String>,
    index: HashMap<String, usize>,
    cells: Vec<Vec<Cell>>,
}

impl Named {
    /// The column `name`, created with `rows` absent cells when new; `guess` is where it
    /// probably is (lines list their features in the same order).
    fn column(&mut self, name: &str, rows: usize, guess: usize) -> &mut Vec<Cell> {
        let i = match self.names.get(guess) {
            Some(n) if n == name => guess,
            _ => match self.index.get(name) {
                Some(&i) => i,
                None => {
                    self.names.push(name.to_string());
                    self.index.insert(name.to_string(), self.cells.len());
                    self.cells.push(vec![Cell::Absent; rows]);
                    self.cells.len() - 1
                }
            },
        };
        &mut self.cells[i]
    }

    /// Sets the cell of `name` in row `row`, the one being added; a second value wins.
    fn set(&mut self, name: &str, row: usize, guess: usize, cell: Cell) {
        let column = self.column(name, row, guess);
        match column.get_mut(row) {
            Some(c) => *c = cell,
            None => column.push(cell),
        }
    }

    /// Pads every column to `rows` cells.
    fn pad(&mut self, rows: usize) {
        for column in &mut self.cells {
            column.resize(rows, Cell::Absent);
        }
    }

    /// Keeps the rows whose flag is set; a column no kept row has goes.
    fn retain(&mut self, keep: &[bool]) {
        for column in &mut self.cells {
            retain(column, keep);
        }
        let used: Vec<bool> = self
            .cells
            .iter()
            .map(|c| c.iter().any(|&c| c != Cell::Absent))
            .collect();
        retain(&mut self.names, &used);
        retain(&mut self.cells, &used);
        self.index = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
    }
}

/// Keeps the items of `v` whose flag is set.
fn retain<T>(v: &mut Vec<T>, keep: &[bool]) {
    let mut k = keep.iter();
    v.retain(|_| *k.next().expect("a flag per item"));
}

/// The rows of a prediction log a drift check reads.
#[derive(Clone, Debug, Default)]
pub struct LogColumns {
    ts_ms: Vec<i64>,
    features: Named,
    /// Raw input tensors flattened to `<input>[<i>]`, kept apart from `features` as the
    /// records keep them (a row may have both).
    raw_inputs: Named,
    class_index: Vec<Option<i64>>,
    label: Vec<Option<u32>>,
    texts: HashMap<Box<str>, u32>,
    /// Scratch for building `<input>[<i>]` names.
    name: String,
}

impl LogColumns {
    /// The columns of `records`.
    pub fn from_records(records: &[PredictionRecord]) -> LogColumns {
        let mut columns = LogColumns::default();
        for r in records {
            columns.push_record(r);
        }
        columns
    }

    pub fn len(&self) -> usize {
        self.ts_ms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts_ms.is_empty()
    }

    fn text_id(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.texts.get(text) {
            return id;
        }
        let id = u32::try_from(self.texts.len()).expect("fewer than 2^32 distinct texts");
        self.texts.insert(text.into(), id);
        id
    }

    fn push_raw(&mut self, row: usize, input: &str, values: &[f64]) {
        use std::fmt::Write;
        for (i, v) in values.iter().enumerate() {
            self.name.clear();
            let _ = write!(self.name, "{input}[{i}]");
            let cell = if v.is_finite() {
                Cell::Number(*v)
            } else {
                Cell::Missing
            };
            let name = std::mem::take(&mut self.name);
            self.raw_inputs.set(&name, row, usize::MAX, cell);
            self.name = name;
        }
    }

    fn end_row(&mut self, ts_ms: i64, class_index: Option<i64>, label: Option<u32>) {
        self.ts_ms.push(ts_ms);
        self.class_index.push(class_index);
        self.label.push(label);
        let rows = self.len();
        self.features.pad(rows);
        self.raw_inputs.pad(rows);
    }

    /// Adds a row parsed by the line scanner.
    pub(crate) fn push_row(&mut self, line: &Row<'_>) {
        let row = self.len();
        for (guess, (name, value)) in line.features.iter().enumerate() {
            let cell = match value {
                Value::Number(x) => Cell::Number(*x),
                Value::Text(t) => Cell::Text(self.text_id(t)),
                Value::Missing => Cell::Missing,
            };
            self.features.set(name, row, guess, cell);
        }
        let raw = line.raw_inputs.as_deref().unwrap_or_default();
        for (i, (input, range)) in raw.iter().enumerate() {
            // An input given twice keeps its last array, whole (as a map does).
            if raw[i + 1..].iter().all(|(later, _)| later != input) {
                self.push_raw(row, input, &line.numbers[range.clone()]);
            }
        }
        let label = line.label.as_deref().map(|l| self.text_id(l));
        self.end_row(line.ts_ms, line.class_index, label);
    }

    /// Adds a record (a line serde_json read, or a record built in memory).
    pub fn push_record(&mut self, record: &PredictionRecord) {
        let row = self.len();
        for (guess, (name, value)) in record.features.iter().enumerate() {
            let cell = match value {
                FeatureValue::Number(x) if x.is_finite() => Cell::Number(*x),
                FeatureValue::Text(t) => Cell::Text(self.text_id(t)),
                _ => Cell::Missing,
            };
            self.features.set(name, row, guess, cell);
        }
        for (input, values) in record.raw_inputs.iter().flatten() {
            self.push_raw(row, input, values);
        }
        let p = &record.prediction;
        let label = p.label.as_deref().map(|l| self.text_id(l));
        self.end_row(record.ts_ms, p.class_index, label);
    }

    /// Appends the rows of `other` after these.
    pub fn append(&mut self, other: LogColumns) {
        if self.is_empty() {
            *self = other;
            return;
        }
        let (base, rows) = (self.len(), self.len() + other.len());
        let mut ids = vec![0u32; other.texts.len()];
        for (text, id) in other.texts {
            ids[id as usize] = self.text_id(&text);
        }
        let remap = |c: Cell| match c {
            Cell::Text(id) => Cell::Text(ids[id as usize]),
            c => c,
        };
        for (mine, theirs) in [
            (&mut self.features, other.features),
            (&mut self.raw_inputs, other.raw_inputs),
        ] {
            for (name, cells) in theirs.names.iter().zip(theirs.cells) {
                mine.column(name, base, usize::MAX)
                    .extend(cells.into_iter().map(remap));
            }
            mine.pad(rows);
        }
        self.ts_ms.extend(other.ts_ms);
        self.class_index.extend(other.class_index);
        self.label.extend(
            other
                .label
                .into_iter()
                .map(|l| l.map(|id| ids[id as usize])),
        );
    }

    /// Keeps the `max` most recent rows (of rows logged at the same time, the first read).
    pub fn keep_most_recent(&mut self, max: usize) {
        if self.len() <= max {
            return;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.ts_ms[i]));
        let mut keep = vec![false; self.len()];
        for &i in &order[..max] {
            keep[i] = true;
        }
        retain(&mut self.ts_ms, &keep);
        retain(&mut self.class_index, &keep);
        retain(&mut self.label, &keep);
        self.features.retain(&keep);
        self.raw_inputs.retain(&keep);
    }

    /// Every feature's cells by name: features first, then raw inputs of the same name.
    pub fn features(&self) -> BTreeMap<&str, Vec<&[Cell]>> {
        let mut out: BTreeMap<&str, Vec<&[Cell]>> = BTreeMap::new();
        for named in [&self.features, &self.raw_inputs] {
            for (name, cells) in named.names.iter().zip(&named.cells) {
                out.entry(name.as_str()).or_default().push(cells);
            }
        }
        out
    }

    /// Texts by id.
    pub fn texts(&self) -> Vec<&str> {
        let mut out = vec![""; self.texts.len()];
        for (text, &id) in &self.texts {
            out[id as usize] = text;
        }
        out
    }

    /// The predicted class index of each row.
    pub fn class_index(&self) -> &[Option<i64>] {
        &self.class_index
    }

    /// The predicted label of each row, as a text id.
    pub fn label(&self) -> &[Option<u32>] {
        &self.label
    }
}
