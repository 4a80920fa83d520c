//! An RFC 4180 CSV writer: fields are quoted only when they must be, quotes
//! are doubled, and records end with CRLF.
//!
//! Written here rather than taken from the `csv` crate: this is guest code,
//! so every dependency is compiled into each plugin's component, and the
//! writer half of CSV is forty lines; `csv` brings its reader, serde
//! integration and `csv-core` along.

/// Builds a CSV document.
///
/// ```
/// let mut csv = prism_sdk::csv::CsvWriter::new(b',');
/// csv.record(["sku", "name"]);
/// csv.record(["A-1", "Bolt, \"M8\""]);
/// assert_eq!(csv.finish(), "sku,name\r\nA-1,\"Bolt, \"\"M8\"\"\"\r\n");
/// ```
#[derive(Debug)]
pub struct CsvWriter {
    out: String,
    delimiter: char,
    guard_formulas: bool,
}

impl CsvWriter {
    /// A writer with this delimiter (`b','` or `b';'` are common).
    pub fn new(delimiter: u8) -> Self {
        Self {
            out: String::new(),
            delimiter: char::from(delimiter),
            guard_formulas: false,
        }
    }

    /// Prefix fields that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`)
    /// with `'`, against CSV injection. Numbers such as `-5` are left alone.
    pub fn guard_formulas(mut self, on: bool) -> Self {
        self.guard_formulas = on;
        self
    }

    /// Append one record.
    pub fn record<I, S>(&mut self, fields: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for (i, field) in fields.into_iter().enumerate() {
            if i > 0 {
                self.out.push(self.delimiter);
            }
            self.field(field.as_ref());
        }
        self.out.push_str("\r\n");
        self
    }

    fn field(&mut self, raw: &str) {
        let guarded;
        let f = if self.guard_formulas && is_formula(raw) {
            guarded = format!("'{raw}");
            guarded.as_str()
        } else {
            raw
        };
        let needs_quotes =
            f.contains([self.delimiter, '"', '\r', '\n']) || f.starts_with(' ') || f.ends_with(' ');
        if needs_quotes {
            self.out.push('"');
            self.out.push_str(&f.replace('"', "\"\""));
            self.out.push('"');
        } else {
            self.out.push_str(f);
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Has nothing been written?
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

fn is_formula(f: &str) -> bool {
    f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let mut c = CsvWriter::new(b';');
        c.record(["plain", "a;b", "line\nbreak", " padded", "q\"q", ""]);
        assert_eq!(
            c.finish(),
            "plain;\"a;b\";\"line\nbreak\";\" padded\";\"q\"\"q\";\r\n"
        );
    }

    #[test]
    fn guards_formulas_but_not_numbers() {
        let mut c = CsvWriter::new(b',').guard_formulas(true);
        c.record(["=HYPERLINK(\"x\")", "-5", "@SUM(A1)", "ok"]);
        assert_eq!(c.finish(), "\"'=HYPERLINK(\"\"x\"\")\",-5,'@SUM(A1),ok\r\n");
    }
}
