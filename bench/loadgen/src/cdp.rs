//! A small Chrome DevTools Protocol client for workerd's V8 inspector: the
//! targets it lists (one per Worker script, i.e. per isolate), and, over a
//! WebSocket per target, method calls with their results. Blocking
//! (tungstenite): the profiler is driven from its own thread while the load
//! runs on the async runtime.

use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// One inspectable isolate, from the inspector's `/json` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// workerd's name of the Worker script, e.g. `core:user:` for ours.
    pub id: String,
    pub websocket_url: String,
}

/// The targets in the answer to `GET /json` (`id`, `webSocketDebuggerUrl`).
pub fn parse_targets(list: &Value) -> Vec<Target> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Target {
                id: t["id"].as_str()?.to_string(),
                websocket_url: t["webSocketDebuggerUrl"].as_str()?.to_string(),
            })
        })
        .collect()
}

pub struct Session {
    socket: WebSocket<TcpStream>,
    next_id: u64,
}

impl Session {
    pub fn connect(url: &str) -> Result<Session, String> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| format!("{url}: not a ws:// URL"))?;
        let host = rest.split('/').next().unwrap_or_default();
        let stream = TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
        // A profile of a few seconds arrives as one large message; stopping
        // and serialising it takes workerd a while on a loaded machine.
        stream.set_read_timeout(Some(Duration::from_secs(120))).ok();
        let (socket, _) = tungstenite::client(url, stream).map_err(|e| format!("WebSocket {url}: {e}"))?;
        Ok(Session { socket, next_id: 0 })
    }

    /// Calls `method` and waits for its result, skipping events.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(request)).map_err(|e| format!("{method}: {e}"))?;
        loop {
            let message = self.socket.read().map_err(|e| format!("{method}: {e}"))?;
            let text = match message {
                Message::Text(t) => t.to_string(),
                Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                Message::Close(_) => return Err(format!("{method}: the inspector closed the connection")),
                _ => continue,
            };
            if let Some(result) = response_for(&text, id)? {
                return Ok(result);
            }
        }
    }
}

/// The result of the response with `id` in `text`, `None` for another
/// message (an event, another call's answer), an error for an error answer.
fn response_for(text: &str, id: u64) -> Result<Option<Value>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("inspector message is not JSON: {e}"))?;
    if v["id"].as_u64() != Some(id) {
        return Ok(None);
    }
    if let Some(error) = v.get("error") {
        return Err(format!("inspector error: {error}"));
    }
    Ok(Some(v["result"].clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_the_json_list() {
        // As workerd's inspector answers (fields trimmed).
        let list = json!([
            {"id": "core:user:", "title": "workerd: worker core:user:", "type": "node",
             "webSocketDebuggerUrl": "ws://127.0.0.1:9229/core:user:"},
            {"id": "d1:db", "webSocketDebuggerUrl": "ws://127.0.0.1:9229/d1:db"},
            {"id": "no-socket"}
        ]);
        assert_eq!(
            parse_targets(&list),
            vec![
                Target { id: "core:user:".into(), websocket_url: "ws://127.0.0.1:9229/core:user:".into() },
                Target { id: "d1:db".into(), websocket_url: "ws://127.0.0.1:9229/d1:db".into() },
            ]
        );
        assert!(parse_targets(&json!({"not": "a list"})).is_empty());
    }

    #[test]
    fn answers_are_matched_by_id() {
        assert_eq!(response_for(r#"{"method":"Debugger.paused","params":{}}"#, 3), Ok(None));
        assert_eq!(response_for(r#"{"id":2,"result":{}}"#, 3), Ok(None));
        assert_eq!(response_for(r#"{"id":3,"result":{"profile":1}}"#, 3), Ok(Some(json!({"profile": 1}))));
        assert!(response_for(r#"{"id":3,"error":{"code":-32601,"message":"no"}}"#, 3).is_err());
        assert!(response_for("not json", 3).is_err());
    }
}
