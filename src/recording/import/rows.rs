//! Rows of foreign data, from CSV or JSON lines, as fields named by their
//! column (CSV header) or key (JSON object). Nothing here knows about tags
//! or time: that is the import's job (`super`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{BadRow, ImportError};

/// A cell as the file holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Json(serde_json::Value),
}

impl Cell {
    /// Empty CSV cells and JSON nulls hold no sample.
    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Text(t) => t.trim().is_empty(),
            Cell::Json(v) => v.is_null(),
        }
    }

    /// The cell as people read it, for messages.
    pub fn shown(&self) -> String {
        match self {
            Cell::Text(t) => format!("{t:?}"),
            Cell::Json(v) => v.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    /// 1-based position in the row (CSV column, JSON key order).
    pub col: usize,
    pub name: String,
    pub cell: Cell,
}

#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based line of the file the row starts on.
    pub row: u64,
    pub fields: Vec<Field>,
}

impl Row {
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

pub enum Rows {
    Csv {
        path: PathBuf,
        reader: csv::Reader<File>,
        header: Vec<String>,
        record: csv::StringRecord,
    },
    Jsonl {
        path: PathBuf,
        lines: std::io::Lines<BufReader<File>>,
        line: u64,
    },
}

/// Whether `path` names JSON lines (by its extension) rather than CSV.
pub fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jsonl" | "ndjson" | "json"))
}

impl Rows {
    pub fn open(path: &Path) -> Result<Rows, ImportError> {
        let io = |e| ImportError::io(path, e);
        let file = File::open(path).map_err(io)?;
        if is_jsonl(path) {
            return Ok(Rows::Jsonl {
                path: path.to_path_buf(),
                lines: BufReader::new(file).lines(),
                line: 0,
            });
        }
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::Headers)
            .from_reader(file);
        let header: Vec<String> = match reader.headers() {
            Ok(h) => h
                .iter()
                .map(|s| s.trim_start_matches('\u{feff}').to_string())
                .collect(),
            Err(e) => {
                return Err(ImportError::setup(
                    path,
                    format!("cannot read the header: {e}"),
                ));
            }
        };
        if header.iter().all(|h| h.is_empty()) {
            return Err(ImportError::setup(
                path,
                "the file is empty or has no header line; the first line must name the columns",
            ));
        }
        // Two columns of one name would feed one tag, the later cell
        // silently winning over the earlier one in every row.
        for (i, h) in header.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
            if let Some(first) = header[..i].iter().position(|x| x == h) {
                return Err(ImportError::setup(
                    path,
                    format!(
                        "columns {} and {} are both named {h:?}; rename one (or drop it) so each column is one tag",
                        first + 1,
                        i + 1
                    ),
                ));
            }
        }
        Ok(Rows::Csv {
            path: path.to_path_buf(),
            reader,
            header,
            record: csv::StringRecord::new(),
        })
    }

    /// The CSV header (JSON lines have none: their keys are per row).
    pub fn header(&self) -> Option<&[String]> {
        match self {
            Rows::Csv { header, .. } => Some(header),
            Rows::Jsonl { .. } => None,
        }
    }

    /// The next row; `Err(Ok(bad))` is a row that cannot be read as a row
    /// at all, `Err(Err(e))` a file that cannot be read on.
    pub fn next_row(&mut self) -> Option<Result<Row, Result<BadRow, ImportError>>> {
        match self {
            Rows::Csv {
                path,
                reader,
                header,
                record,
            } => match reader.read_record(record) {
                Ok(false) => None,
                Ok(true) => {
                    let row = record.position().map_or(0, |p| p.line());
                    if record.len() > header.len() {
                        return Some(Err(Ok(BadRow {
                            path: path.clone(),
                            row,
                            col: header.len() + 1,
                            column: String::new(),
                            detail: format!(
                                "the row has {} fields, the header names {}",
                                record.len(),
                                header.len()
                            ),
                        })));
                    }
                    let fields = record
                        .iter()
                        .zip(header.iter())
                        .enumerate()
                        .map(|(i, (v, name))| Field {
                            col: i + 1,
                            name: name.clone(),
                            cell: Cell::Text(v.to_string()),
                        })
                        .collect();
                    Some(Ok(Row { row, fields }))
                }
                Err(e) => {
                    let row = e.position().map_or(0, |p| p.line());
                    match e.kind() {
                        csv::ErrorKind::Io(_) => {
                            Some(Err(Err(ImportError::setup(path, e.to_string()))))
                        }
                        _ => {
                            let bad = BadRow {
                                path: path.clone(),
                                row,
                                col: 0,
                                column: String::new(),
                                detail: format!("not a CSV row: {e}"),
                            };
                            Some(Err(Ok(bad)))
                        }
                    }
                }
            },
            Rows::Jsonl { path, lines, line } => loop {
                let text = match lines.next()? {
                    Ok(t) => t,
                    Err(e) => return Some(Err(Err(ImportError::io(path, e)))),
                };
                *line += 1;
                if text.trim().is_empty() {
                    continue;
                }
                let bad = |detail: String| BadRow {
                    path: path.clone(),
                    row: *line,
                    col: 0,
                    column: String::new(),
                    detail,
                };
                let value: serde_json::Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => {
                        return Some(Err(Ok(BadRow {
                            col: e.column(),
                            ..bad(format!("not JSON: {e}"))
                        })));
                    }
                };
                let serde_json::Value::Object(map) = value else {
                    return Some(Err(Ok(bad(
                        "expected one JSON object per line, e.g. {\"time\": \"2026-12-04T10:00:00Z\", \"speed\": 1.2}".into(),
                    ))));
                };
                // The column is where the key stands on the line, so an
                // editor's "go to line:column" lands on it.
                let fields = map
                    .into_iter()
                    .map(|(name, v)| Field {
                        col: key_column(&text, &name),
                        name,
                        cell: Cell::Json(v),
                    })
                    .collect();
                return Some(Ok(Row { row: *line, fields }));
            },
        }
    }
}

/// 1-based character column of `"key"` on a JSON line (1 if it is spelled
/// with escapes and cannot be found as written).
fn key_column(line: &str, key: &str) -> usize {
    let quoted = format!("{key:?}");
    line.find(&quoted)
        .map_or(1, |at| line[..at].chars().count() + 1)
}
