//! Tab-separated tables with a header line (BIDS events, ROI label tables): the one reader.
//! Cells are trimmed; blank lines are skipped. Errors are plain messages that the caller puts
//! behind the file's name.

use std::path::Path;

pub struct Table {
    header: Vec<String>,
    /// Data rows with their 1-based line numbers in the file.
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header = lines
            .next()
            .ok_or("empty; expected a header line")?
            .1
            .split('\t')
            .map(|c| c.trim().to_string())
            .collect();
        let rows = lines
            .map(|(n, l)| (n + 1, l.split('\t').map(|c| c.trim().to_string()).collect()))
            .collect();
        Ok(Table { header, rows })
    }

    /// The position of a column, or a message naming it and what the table should have.
    pub fn column(&self, name: &str, expected: &str) -> Result<usize, String> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no `{name}` column; expected {expected}"))
    }

    pub fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// (line number, cells) for each data row.
    pub fn rows(&self) -> impl Iterator<Item = (usize, &[String])> {
        self.rows.iter().map(|(n, cells)| (*n, cells.as_slice()))
    }
}

/// A row's cell, or a message saying the line is short.
pub fn cell(cells: &[String], column: usize, line: usize) -> Result<&str, String> {
    cells
        .get(column)
        .map(String::as_str)
        .ok_or_else(|| format!("line {line}: too few columns"))
}
