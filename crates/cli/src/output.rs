//! Printing results: JSON (as `az` does by default) or a plain table; and asking the user
//! to confirm on the terminal.

use anyhow::bail;
use serde_json::{Value, json};

use crate::args::{GlobalArgs, Output};

const CREDENTIAL_COLUMNS: &[(&str, &str)] = &[
    ("USERNAME", "/username"),
    ("PASSWORD NAME", "/name"),
    ("PASSWORD", "/value"),
    ("EXPIRY", "/expiry"),
];

/// Print `v` as pretty JSON, or as a table of the named columns (`(header, JSON pointer)`).
pub(crate) fn print(format: Output, v: &Value, columns: &[(&str, &str)]) {
    match format {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => {
            let rows: Vec<&Value> = match v {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            let cell = |row: &Value, ptr: &str| -> String {
                let x = if ptr.is_empty() { row } else { row.pointer(ptr).unwrap_or(&Value::Null) };
                match x {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                }
            };
            let table: Vec<Vec<String>> =
                rows.iter().map(|r| columns.iter().map(|(_, p)| cell(r, p)).collect()).collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(i, (h, _))| {
                    table.iter().map(|r| r[i].len()).chain([h.len()]).max().unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            println!("{}", line(columns.iter().map(|(h, _)| h.to_string()).collect()));
            println!("{}", line(widths.iter().map(|w| "-".repeat(*w)).collect()));
            for row in table {
                println!("{}", line(row));
            }
        }
    }
}

/// A credential answer (`listCredentials`, `generateCredentials`): the JSON, or a row per
/// password.
pub(crate) fn print_credentials(global: &GlobalArgs, creds: &Value) {
    match global.output {
        Output::Json => print(global.output, creds, &[]),
        Output::Table => {
            let rows: Vec<Value> = creds["passwords"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    json!({"username": creds["username"], "name": p["name"], "value": p["value"], "expiry": p["expiry"]})
                })
                .collect();
            print(global.output, &Value::Array(rows), CREDENTIAL_COLUMNS);
        }
    }
}

/// Ask on the terminal; a non-interactive stdin answers no.
pub(crate) fn confirm(question: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm without a prompt.");
    }
    eprint!("{question} (y/N): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
