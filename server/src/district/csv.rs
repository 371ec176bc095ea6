//! CSV as district staff exchange it: read with line numbers for error messages, written with
//! correct quoting and a UTF-8 byte order mark so that Excel shows Vietnamese.

/// The UTF-8 byte order mark Excel needs to read a CSV file as UTF-8.
pub const BOM: &str = "\u{feff}";

/// A CSV file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    /// The line (from 1) where the problem is.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One record, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line (from 1) the record starts on.
    pub line: usize,
    /// Its fields, trimmed of surrounding spaces.
    pub fields: Vec<String>,
}

impl Record {
    /// The field at `i`, or "" when the record is shorter.
    pub fn get(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", String::as_str)
    }
}

/// Reads CSV text (comma or semicolon separated, as Excel writes it in Vietnamese locales),
/// skipping a leading BOM and blank lines. Quoted fields may hold separators, quotes (doubled)
/// and line breaks.
pub fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let first_line = text.lines().next().unwrap_or("");
    let separator = if first_line.matches(';').count() > first_line.matches(',').count() { ';' } else { ',' };
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    let finish = |fields: &mut Vec<String>, field: &mut String, was_quoted: bool| {
        let value = if was_quoted { std::mem::take(field) } else { std::mem::take(field).trim().to_owned() };
        fields.push(value);
    };
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
            }
            '"' => return Err(CsvError { line, message: "a quote inside an unquoted field".into() }),
            c if c == separator => {
                finish(&mut fields, &mut field, was_quoted);
                was_quoted = false;
            }
            '\r' => {}
            '\n' => {
                finish(&mut fields, &mut field, was_quoted);
                was_quoted = false;
                if fields.iter().any(|f| !f.is_empty()) {
                    records.push(Record { line: start, fields: std::mem::take(&mut fields) });
                }
                fields.clear();
                line += 1;
                start = line;
            }
            _ if was_quoted && !c.is_whitespace() => {
                return Err(CsvError { line, message: "text after a closing quote".into() });
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(CsvError { line: start, message: "a quoted field is not closed".into() });
    }
    finish(&mut fields, &mut field, was_quoted);
    if fields.iter().any(|f| !f.is_empty()) {
        records.push(Record { line: start, fields });
    }
    Ok(records)
}

/// Checks that the first record is the expected header (case-insensitive) and returns the
/// records after it.
pub fn with_header(records: Vec<Record>, expected: &[&str]) -> Result<Vec<Record>, CsvError> {
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        return Err(CsvError {
            line: 1,
            message: format!("the file is empty; expected the header {}", expected.join(",")),
        });
    };
    let got: Vec<String> = header.fields.iter().map(|f| f.to_lowercase()).collect();
    if got.len() < expected.len() || got.iter().zip(expected).any(|(g, e)| g != e) {
        return Err(CsvError {
            line: header.line,
            message: format!("the header must be {} (found {})", expected.join(","), header.fields.join(",")),
        });
    }
    Ok(records.collect())
}

/// Whether a spreadsheet could read `value` as a formula: it starts with `=`, `+`, `-` or `@`
/// (or their full-width forms `＝ ＋ － ＠`, which some spreadsheets fold to ASCII), possibly
/// after spaces, or with a TAB, CR or LF (which spreadsheets strip before looking). Plain
/// numbers such as `-3` are not.
pub fn formula_like(value: &str) -> bool {
    if value.starts_with(['\t', '\r', '\n']) {
        return true;
    }
    let rest = value.trim_start_matches([' ', '\u{3000}', '\u{a0}']);
    rest.starts_with(['=', '+', '-', '@', '＝', '＋', '－', '＠']) && value.trim().parse::<f64>().is_err()
}

/// One field, quoted when it must be. A field that a spreadsheet would read as a formula (see
/// [`formula_like`]) is prefixed with an apostrophe so that a comment cannot run code.
pub fn field(value: &str) -> String {
    let guarded;
    let value = if formula_like(value) {
        guarded = format!("'{value}");
        guarded.as_str()
    } else {
        value
    };
    if value.contains([',', '"', '\n', '\r', ';']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// One line: fields joined by commas, ended by CRLF (as RFC 4180 and Excel expect).
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = fields.iter().map(|f| field(f.as_ref())).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        parse(text).expect("parses").into_iter().map(|r| (r.line, r.fields)).collect()
    }

    fn owned(line: usize, fields: &[&str]) -> (usize, Vec<String>) {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn reads_quotes_separators_and_line_numbers() {
        let text = "\u{feff}id,name\r\nthon-dong, Thôn Đông \n\n\"x\",\"Tổ \"\"1\"\", phường\nmới\"\nlast,one";
        assert_eq!(
            fields(text),
            vec![
                owned(1, &["id", "name"]),
                owned(2, &["thon-dong", "Thôn Đông"]),
                owned(4, &["x", "Tổ \"1\", phường\nmới"]),
                owned(6, &["last", "one"]),
            ]
        );
        assert_eq!(fields("a;b\n1;2")[1], owned(2, &["1", "2"]));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("a,b\n1,\"open").expect_err("unclosed").line, 2);
        assert_eq!(parse("a\nx\"y").expect_err("stray quote").line, 2);
        assert_eq!(with_header(parse("x,y\n").expect("parses"), &["id", "name"]).expect_err("header").line, 1);
    }

    #[test]
    fn writes_fields_that_read_back() {
        let written = line(&["a,b", "say \"hi\"", "=1+1", "-3", "Tín nhiệm"]);
        assert_eq!(written, "\"a,b\",\"say \"\"hi\"\"\",'=1+1,-3,Tín nhiệm\r\n");
        let back = parse(&written).expect("parses");
        assert_eq!(back[0].fields, ["a,b", "say \"hi\"", "'=1+1", "-3", "Tín nhiệm"]);
    }
}
