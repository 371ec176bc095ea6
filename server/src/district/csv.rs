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
/// and line breaks; fields are trimmed of surrounding spaces.
///
/// The `csv` crate reads the records. It is lenient where an import should not be: a quote left
/// open swallows the rest of the file into one field, and a stray quote is read as text. A
/// record whose own text holds an odd number of quotes has one of those, and is refused with
/// its line, so that staff are told where to look instead of importing half a file.
pub fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let first_line = text.lines().next().unwrap_or("");
    let separator = if first_line.matches(';').count() > first_line.matches(',').count() { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::Fields)
        .delimiter(separator)
        .from_reader(text.as_bytes());
    // The crate places each record at the end of the one before (ahead of its line break), so
    // where a record's own text begins, and its line, are counted here.
    let mut read: Vec<(usize, Vec<String>)> = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| CsvError { line: 1, message: e.to_string() })?;
        let byte = record.position().map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        read.push((byte.min(text.len()), record.iter().map(str::to_owned).collect()));
    }
    let mut records = Vec::with_capacity(read.len());
    let (mut counted_to, mut line) = (0, 1);
    for (i, (byte, fields)) in read.iter().enumerate() {
        let end = read.get(i + 1).map_or(text.len(), |next| next.0);
        let own = text.get(*byte..end).unwrap_or("");
        let begins = byte + (own.len() - own.trim_start_matches(['\r', '\n']).len());
        line += text.get(counted_to..begins).map_or(0, |t| t.matches('\n').count());
        counted_to = begins;
        if own.matches('"').count() % 2 == 1 {
            return Err(CsvError {
                line,
                message: "a quoted field is not closed, or a quote stands inside an unquoted field".into(),
            });
        }
        if fields.iter().any(|f| !f.is_empty()) {
            records.push(Record { line, fields: fields.clone() });
        }
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

/// `value` as it may be written: a value that a spreadsheet would read as a formula (see
/// [`formula_like`]) is prefixed with an apostrophe so that a comment cannot run code.
fn guarded(value: &str) -> std::borrow::Cow<'_, str> {
    if formula_like(value) { format!("'{value}").into() } else { value.into() }
}

/// One field as [`line()`] writes it: guarded against formulas, quoted when it must be.
pub fn field(value: &str) -> String {
    if value.is_empty() {
        return String::new();
    }
    let mut out = line(&[value]);
    out.truncate(out.len() - 2);
    out
}

/// One line: fields joined by commas, quoted where needed (by the `csv` crate), ended by CRLF
/// (as RFC 4180 and Excel expect), each field guarded against formulas.
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let written = writer.write_record(fields.iter().map(|f| guarded(f.as_ref()).into_owned())).err();
    // Writing into memory fails only on a record of no fields; that is a blank line.
    let bytes = match (written, writer.into_inner()) {
        (None, Ok(bytes)) => bytes,
        _ => b"\r\n".to_vec(),
    };
    String::from_utf8(bytes).unwrap_or_default()
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
    fn an_unclosed_quote_is_refused_even_with_quotes_after_it() {
        assert_eq!(parse("a,b\n1,\"open\n2,\"b\"\n3,c\n").expect_err("unclosed").line, 2);
        assert_eq!(parse("a,b\n1,2\n3,x\"y\n").expect_err("stray").line, 3);
    }

    #[test]
    fn empty_fields_and_records_of_one_field_read_back() {
        let written = format!("{}{}", line(&["", "x", ""]), line(&["only"]));
        assert_eq!(written, ",x,\r\nonly\r\n");
        assert_eq!(field(""), "");
        assert_eq!(parse(&written).expect("parses")[0].fields, ["", "x", ""]);
    }

    #[test]
    fn writes_fields_that_read_back() {
        let written = line(&["a,b", "say \"hi\"", "=1+1", "-3", "Tín nhiệm"]);
        assert_eq!(written, "\"a,b\",\"say \"\"hi\"\"\",'=1+1,-3,Tín nhiệm\r\n");
        let back = parse(&written).expect("parses");
        assert_eq!(back[0].fields, ["a,b", "say \"hi\"", "'=1+1", "-3", "Tín nhiệm"]);
    }
}
