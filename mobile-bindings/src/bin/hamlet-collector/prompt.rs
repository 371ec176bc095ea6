//! Interactive recording: one question at a time, as a collector would read them to a resident.

use std::io::{self, BufRead, IsTerminal, Write};

use hamlet_mobile::views::AnswerSlot;

use hamlet_sync_core::texts::Lang;

/// Asks every slot on the terminal, asking again while `check` refuses an answer; returns the
/// answers given and whether to submit at once. Fails when standard input is not a terminal
/// (scripts give --answer or --file).
pub fn answers(
    slots: &[AnswerSlot],
    lang: Lang,
    check: impl Fn(&str, &str) -> Result<(), String>,
) -> io::Result<(Vec<(String, String)>, bool)> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(io::Error::other("standard input is not a terminal"));
    }
    let mut out = Vec::new();
    let mut lines = stdin.lock().lines();
    let mut stdout = io::stdout();
    for slot in slots {
        let label = lang.pick(&slot.label_vi, &slot.label_en);
        let subject = slot.subject_name.as_deref().map(|s| format!(" — {s}")).unwrap_or_default();
        let required = if slot.required { format!(" ({})", lang.texts().required) } else { String::new() };
        writeln!(stdout, "\n{label}{subject}{required}")?;
        match slot.kind.as_str() {
            "rating" => {
                for (i, c) in slot.choices.iter().enumerate() {
                    writeln!(stdout, "  {}. {}", i + 1, lang.pick(&c.label_vi, &c.label_en))?;
                }
                write!(stdout, "{} 1-{}", lang.texts().choose, slot.choices.len())?;
            }
            "yes_no" => write!(stdout, "{}", lang.texts().yes_or_no)?,
            "number" => write!(
                stdout,
                "{} {} – {}",
                lang.texts().range_from,
                slot.min.unwrap_or_default(),
                slot.max.unwrap_or_default()
            )?,
            _ => write!(stdout, "{}", lang.texts().answer)?,
        }
        loop {
            write!(stdout, " [{}]: ", lang.texts().enter_to_skip)?;
            stdout.flush()?;
            let Some(line) = lines.next() else { break };
            let line = line?;
            let text = line.trim();
            if text.is_empty() {
                break;
            }
            match check(&slot.key, text) {
                Ok(()) => {
                    out.push((slot.key.clone(), text.to_owned()));
                    break;
                }
                Err(message) => write!(stdout, "{}: {message}\n{}", lang.texts().error, lang.texts().answer)?,
            }
        }
    }
    write!(stdout, "\n{} ", lang.texts().submit_now)?;
    stdout.flush()?;
    let submit = match lines.next() {
        Some(Ok(line)) => matches!(line.trim().to_lowercase().as_str(), "c" | "có" | "co" | "y" | "yes"),
        _ => false,
    };
    Ok((out, submit))
}
