//! Structured log lines: one JSON object per line, so Workers Logs can index
//! them. Callers pass only masked or hashed values: never a code, a token or a
//! secret.

use serde_json::{json, Value};

pub fn emit(level: &str, event: &str, fields: Value) {
    let mut line = json!({ "level": level, "event": event });
    if let (Value::Object(line), Value::Object(fields)) = (&mut line, fields) {
        line.extend(fields);
    }
    write_line(&line.to_string());
}

pub fn error(event: &str, detail: &str) {
    emit("error", event, json!({ "detail": detail }));
}

pub fn info(event: &str, fields: Value) {
    emit("info", event, fields);
}

/// The development `log` delivery provider's output: the one place a code
/// is printed (refused in production by the configuration).
pub fn console(text: &str) {
    write_line(text);
}

#[cfg(target_arch = "wasm32")]
fn write_line(line: &str) {
    worker::console_log!("{}", line);
}

#[cfg(not(target_arch = "wasm32"))]
fn write_line(line: &str) {
    eprintln!("{line}");
}
