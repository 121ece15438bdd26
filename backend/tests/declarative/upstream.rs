//! A loopback upstream for declarative channels: answers by exact path (query included), else
//! by longest path prefix; records every request (head and body).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One canned answer: status line, extra headers, body.
#[derive(Clone)]
pub struct Answer {
    pub status: &'static str,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

pub fn ok(body: String) -> Answer {
    Answer {
        status: "200 OK",
        headers: Vec::new(),
        body,
    }
}

impl Answer {
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub base: String,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// (head, body) of every request, in arrival order.
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Upstream::default()
        };
        let u = up.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let u = u.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    u.seen.lock().unwrap().push((head, body));
                    let answer = u.answer(&path);
                    let mut out = format!(
                        "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for (k, v) in &answer.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    out.push_str(&answer.body);
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        up
    }

    /// Answers requests for `path` (exact, or as a prefix) with `answer`.
    pub fn route(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.into(), answer);
    }

    fn answer(&self, path: &str) -> Answer {
        let answers = self.answers.lock().unwrap();
        if let Some(a) = answers.get(path) {
            return a.clone();
        }
        answers
            .iter()
            .filter(|(p, _)| path.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, a)| a.clone())
            .unwrap_or(Answer {
                status: "404 Not Found",
                headers: Vec::new(),
                body: "{}".into(),
            })
    }

    /// Request lines (`GET /path HTTP/1.1`), in order.
    pub fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(h, _)| h.lines().next().unwrap_or("").to_string())
            .collect()
    }

    /// (head, body) of the `i`-th request.
    pub fn request(&self, i: usize) -> (String, String) {
        self.seen.lock().unwrap()[i].clone()
    }
}
