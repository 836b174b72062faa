//! Printing results: JSON (as `az` does by default) or a plain table.

use serde_json::Value;

use crate::args::Output;

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
