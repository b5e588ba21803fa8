//! A fake Resend on loopback: accepts `POST /emails`, keeps the code of each
//! message by recipient, answers 200. Small and O(1) per message, because a
//! benchmark sends tens of thousands of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct FakeMail {
    port: u16,
    codes: Arc<Mutex<HashMap<String, String>>>,
    arrived: Arc<Notify>,
}

impl FakeMail {
    pub async fn start() -> FakeMail {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake mail");
        let mail = FakeMail {
            port: listener.local_addr().unwrap().port(),
            codes: Default::default(),
            arrived: Arc::new(Notify::new()),
        };
        let server = mail.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { continue };
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.serve(socket).await;
                });
            }
        });
        mail
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// One connection, many requests (keep-alive).
    async fn serve(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut content_length = 0usize;
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            loop {
                line.clear();
                reader.read_line(&mut line).await?;
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        content_length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; content_length];
            reader.read_exact(&mut body).await?;
            self.record(&body);
            let answer = r#"{"id":"bench"}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                answer.len()
            );
            write.write_all(head.as_bytes()).await?;
            write.write_all(answer.as_bytes()).await?;
        }
    }

    fn record(&self, body: &[u8]) {
        let Ok(mail) = serde_json::from_slice::<serde_json::Value>(body) else { return };
        let (Some(to), Some(text)) = (mail["to"][0].as_str(), mail["text"].as_str()) else { return };
        let Some(code) = text.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6) else { return };
        self.codes.lock().unwrap().insert(to.to_string(), code.to_string());
        self.arrived.notify_waiters();
    }

    /// The code sent to `email`, waiting up to `timeout` for it to arrive
    /// (a login code is sent after the answer).
    pub async fn code_for(&self, email: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.arrived.notified();
            if let Some(code) = self.codes.lock().unwrap().remove(email) {
                return Some(code);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}
