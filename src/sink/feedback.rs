//! The feedback server: a TCP port (loopback by default) speaking JSON lines. Every connected
//! client receives each published record (samples, volumes) as one line with integer-ns
//! timestamps; the stimulus computer sends trial-onset markers on the same connection and gets
//! an acknowledgement. Clients are bounded in number and in how far they may fall behind; a
//! malformed line gets an error line back and never stops the server.
//!
//! Off loopback the link is guarded (`FeedbackLimits`): with a token, a client's first line must
//! be `{"type":"hello","token":"..."}` (nothing is sent to it before); a line longer than
//! `max_line_bytes` or more than `max_lines_per_second` closes the connection with an error line
//! naming the limit; a marker's `stimulus` must be a name inside the stimuli folder. Every
//! connection and refusal is logged with the peer's address.
//!
//! Marker line: `{"type":"marker","onset_s":12.0,"duration_s":3.0,"trial_type":"live","stimulus":"a.png"}`
//! (onset in seconds from the run's first volume; duration, trial_type and stimulus optional).
//!
//! `FeedbackSink` is the server as a session sink: it publishes the events meant for clients
//! (`SessionEvent::for_feedback_clients`). The markers go to the trials stage, not through here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};

use super::{Sink, SinkError};
use crate::config::FeedbackConfig;
use crate::event::SessionEvent;
use crate::preprocess::trials::{unsafe_stimulus_name, Marker};

/// What each client may do.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackLimits {
    pub max_clients: usize,
    /// Records a client may fall behind before it loses the oldest.
    pub backlog: usize,
    pub token: Option<String>,
    pub max_line_bytes: usize,
    pub max_lines_per_second: u32,
}

impl From<&FeedbackConfig> for FeedbackLimits {
    fn from(f: &FeedbackConfig) -> Self {
        FeedbackLimits {
            max_clients: f.max_clients,
            backlog: f.backlog,
            token: f.token.clone(),
            max_line_bytes: f.max_line_bytes,
            max_lines_per_second: f.max_lines_per_second,
        }
    }
}

impl FeedbackLimits {
    /// Loopback-test limits: `max_clients`, `backlog`, no token, 4 KiB lines, 50 lines/s.
    pub fn open(max_clients: usize, backlog: usize) -> FeedbackLimits {
        FeedbackLimits {
            max_clients,
            backlog,
            token: None,
            max_line_bytes: 4096,
            max_lines_per_second: 50,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("feedback.address {address}: cannot listen: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("feedback server: cannot start its runtime: {0}")]
    Runtime(std::io::Error),
}

pub struct FeedbackServer {
    address: SocketAddr,
    records: broadcast::Sender<Arc<str>>,
    markers: Receiver<Marker>,
    clients: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl FeedbackServer {
    /// Listens on `address` (e.g. "127.0.0.1:5600"; port 0 picks a free one). At most
    /// `max_clients` at once; a client more than `backlog` records behind loses the oldest ones
    /// and is told how many.
    pub fn start(address: &str, limits: FeedbackLimits) -> Result<FeedbackServer, FeedbackError> {
        let (max_clients, backlog) = (limits.max_clients, limits.backlog);
        let limits = Arc::new(limits);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("feedback")
            .enable_all()
            .build()
            .map_err(FeedbackError::Runtime)?;
        let listener = runtime
            .block_on(TcpListener::bind(address))
            .map_err(|source| FeedbackError::Bind {
                address: address.to_string(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| FeedbackError::Bind {
                address: address.to_string(),
                source,
            })?;
        let (records, _) = broadcast::channel(backlog.max(1));
        let (marker_tx, markers) = unbounded();
        let clients = Arc::new(AtomicUsize::new(0));
        let (records_for_accept, clients_for_accept) = (records.clone(), clients.clone());
        runtime.spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                if clients_for_accept.load(Ordering::SeqCst) >= max_clients {
                    let mut stream = stream;
                    let message = format!("server full: feedback.max_clients is {max_clients}");
                    tracing::warn!("feedback client {peer} refused: {message}");
                    let _ = stream.write_all(error_line(&message).as_bytes()).await;
                    continue;
                }
                tracing::info!("feedback client {peer} connected");
                clients_for_accept.fetch_add(1, Ordering::SeqCst);
                let (records, tx, clients, limits) = (
                    records_for_accept.clone(),
                    marker_tx.clone(),
                    clients_for_accept.clone(),
                    limits.clone(),
                );
                tokio::spawn(async move {
                    match serve(stream, &records, tx, &limits).await {
                        Ok(()) => tracing::info!("feedback client {peer} left"),
                        Err(why) => tracing::warn!("feedback client {peer} closed: {why}"),
                    }
                    clients.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(FeedbackServer {
            address: local,
            records,
            markers,
            clients,
            _runtime: runtime,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// Sends one record to every client (dropped when nobody listens).
    pub fn publish(&self, record: &serde_json::Value) {
        let _ = self.records.send(Arc::from(record.to_string()));
    }

    /// Markers received from clients, in arrival order.
    pub fn markers(&self) -> &Receiver<Marker> {
        &self.markers
    }
}

/// The server as a sink of the session's events.
pub struct FeedbackSink {
    server: FeedbackServer,
}

impl FeedbackSink {
    pub fn new(server: FeedbackServer) -> FeedbackSink {
        FeedbackSink { server }
    }
}

impl Sink for FeedbackSink {
    fn name(&self) -> &str {
        "feedback"
    }

    fn event(&mut self, event: &SessionEvent) -> Result<(), SinkError> {
        if event.for_feedback_clients() {
            self.server.publish(&event.record());
        }
        Ok(())
    }

    /// Gives the clients up to a second to receive the last records before the server closes.
    fn finish(&mut self) -> Result<(), SinkError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while !self.server.records.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if self.server.clients() > 0 {
            // Received is not yet written to the socket.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(())
    }
}

fn error_line(message: &str) -> String {
    format!("{}\n", json!({"type": "error", "message": message}))
}

/// Why a client's input ended its connection.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    TooLong(usize),
    TooFast(u32),
    Unreadable(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooLong(n) => {
                write!(f, "a line longer than feedback.max_line_bytes ({n} bytes)")
            }
            Refusal::TooFast(n) => write!(
                f,
                "more than feedback.max_lines_per_second ({n} lines per second)"
            ),
            Refusal::Unreadable(e) => write!(f, "unreadable input: {e}"),
        }
    }
}

/// One line of at most `max` bytes, without its newline; None at the end of input.
async fn bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<String>, Refusal> {
    let mut line = Vec::new();
    loop {
        let available = reader
            .fill_buf()
            .await
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
        if available.is_empty() {
            if line.is_empty() {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(k) => (k, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(Refusal::TooLong(max));
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take + usize::from(done));
        if done {
            break;
        }
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| Refusal::Unreadable("a line that is not UTF-8".into()))
}

/// Reads the client's lines on its own task (so a slow reader never holds up records), within
/// the length and rate limits; the last item is the refusal, if any.
fn spawn_reader(
    read: tokio::net::tcp::OwnedReadHalf,
    limits: &FeedbackLimits,
) -> mpsc::Receiver<Result<String, Refusal>> {
    let (tx, rx) = mpsc::channel(16);
    let (max_bytes, rate) = (limits.max_line_bytes, limits.max_lines_per_second);
    tokio::spawn(async move {
        let mut reader = BufReader::new(read);
        // A token bucket: `rate` lines at once, refilled at `rate` per second.
        let mut tokens = f64::from(rate);
        let mut last = std::time::Instant::now();
        loop {
            let line = match bounded_line(&mut reader, max_bytes).await {
                Ok(Some(line)) => line,
                Ok(None) => return,
                Err(refusal) => {
                    let _ = tx.send(Err(refusal)).await;
                    return;
                }
            };
            let now = std::time::Instant::now();
            tokens = (tokens + now.duration_since(last).as_secs_f64() * f64::from(rate))
                .min(f64::from(rate));
            last = now;
            if tokens < 1.0 {
                let _ = tx.send(Err(Refusal::TooFast(rate))).await;
                return;
            }
            tokens -= 1.0;
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Equal tokens, compared in time independent of where they differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The reply to one line from a client: an ack for a valid marker (sent on to the trials), an
/// error line otherwise.
pub fn reply_to(text: &str, markers: &Sender<Marker>) -> Option<serde_json::Value> {
    Some(match serde_json::from_str::<Marker>(text) {
        Ok(m)
            if m.kind == "marker"
                && m.onset_s.is_finite()
                && m.onset_s >= 0.0
                && m.duration_s.is_finite()
                && m.duration_s >= 0.0 =>
        {
            if let Some(why) = m.stimulus.as_deref().and_then(unsafe_stimulus_name) {
                return Some(json!({"type": "error", "message": why}));
            }
            let onset = m.onset_s;
            markers.send(m).ok()?;
            json!({"type": "ack", "onset_s": onset})
        }
        Ok(m) => {
            json!({"type": "error", "message": format!("expected type \"marker\" with onset_s and duration_s >= 0 seconds, got type {:?}", m.kind)})
        }
        Err(e) => {
            json!({"type": "error", "message": format!("not a marker line ({e}); expected {{\"type\":\"marker\",\"onset_s\":12.0}}")})
        }
    })
}

/// One client, until it leaves (Ok) or is refused (Err, the reason it was told).
async fn serve(
    stream: TcpStream,
    records: &broadcast::Sender<Arc<str>>,
    markers: Sender<Marker>,
    limits: &FeedbackLimits,
) -> Result<(), String> {
    let (read, mut write) = stream.into_split();
    let mut lines = spawn_reader(read, limits);
    if let Some(token) = &limits.token {
        // Nothing is sent before the client has shown the token.
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), lines.recv()).await;
        let shown = match &first {
            Ok(Some(Ok(line))) => serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(|v| v["type"] == "hello")
                .and_then(|v| v["token"].as_str().map(|t| same_token(t, token))),
            _ => None,
        };
        let refusal = match shown {
            Some(true) => None,
            Some(false) => Some("wrong token".to_string()),
            None => Some(
                "expected {\"type\":\"hello\",\"token\":\"...\"} as the first line within 10 s"
                    .to_string(),
            ),
        };
        if let Some(message) = refusal {
            let _ = write.write_all(error_line(&message).as_bytes()).await;
            return Err(message);
        }
    }
    // Subscribed before the welcome, so every record after it reaches the client.
    let mut records = records.subscribe();
    if limits.token.is_some() {
        let welcome = format!("{}\n", json!({"type": "welcome"}));
        write
            .write_all(welcome.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    loop {
        tokio::select! {
            record = records.recv() => {
                let line = match record {
                    Ok(r) => format!("{r}\n"),
                    Err(broadcast::error::RecvError::Lagged(n)) => error_line(&format!("too slow: {n} records dropped")),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                };
                if write.write_all(line.as_bytes()).await.is_err() {
                    return Ok(());
                }
            }
            line = lines.recv() => {
                let reply = match line {
                    Some(Ok(text)) if text.trim().is_empty() => continue,
                    Some(Ok(text)) => match reply_to(&text, &markers) {
                        Some(reply) => reply,
                        None => return Ok(()),
                    },
                    Some(Err(refusal)) => {
                        let message = refusal.to_string();
                        let _ = write.write_all(error_line(&message).as_bytes()).await;
                        return Err(message);
                    }
                    // The client closed its side.
                    None => return Ok(()),
                };
                if write.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader as StdBufReader, Write};
    use std::net::TcpStream as StdTcpStream;
    use std::time::Duration;

    fn connect(addr: SocketAddr) -> (StdBufReader<StdTcpStream>, StdTcpStream) {
        let stream = StdTcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (StdBufReader::new(stream.try_clone().unwrap()), stream)
    }

    fn read_json(reader: &mut StdBufReader<StdTcpStream>) -> serde_json::Value {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn clients_get_records_markers_are_acknowledged_and_garbage_gets_an_error() {
        let server = FeedbackServer::start("127.0.0.1:0", FeedbackLimits::open(2, 64)).unwrap();
        let (mut reader, mut writer) = connect(server.address());
        let start = std::time::Instant::now();
        while server.clients() < 1 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        server.publish(
            &json!({"type": "sample", "trial": 3, "sample_ns": 1_700_000_000_123_456_789u64}),
        );
        let got = read_json(&mut reader);
        assert_eq!(got["trial"], 3);
        assert_eq!(
            got["sample_ns"].as_u64(),
            Some(1_700_000_000_123_456_789),
            "ns timestamps stay integers"
        );

        writer
            .write_all(b"{\"type\":\"marker\",\"onset_s\":12.5,\"stimulus\":\"a.png\"}\n")
            .unwrap();
        assert_eq!(read_json(&mut reader)["type"], "ack");
        let marker = server
            .markers()
            .recv_timeout(Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            (
                marker.onset_s,
                marker.duration_s,
                marker.stimulus.as_deref()
            ),
            (12.5, 3.0, Some("a.png"))
        );

        writer
            .write_all(b"hello\n{\"type\":\"marker\",\"onset_s\":-1}\n")
            .unwrap();
        let e1 = read_json(&mut reader);
        let e2 = read_json(&mut reader);
        assert_eq!(
            (e1["type"].as_str(), e2["type"].as_str()),
            (Some("error"), Some("error"))
        );
        assert!(e1["message"]
            .as_str()
            .unwrap()
            .contains("not a marker line"));

        // Still serving after garbage; a third client is over the limit of two.
        let (_r2, _w2) = connect(server.address());
        let (mut r3, _w3) = connect(server.address());
        assert!(read_json(&mut r3)["message"]
            .as_str()
            .unwrap()
            .contains("server full"));
        server.publish(&json!({"type": "volume", "index": 9}));
        assert_eq!(read_json(&mut reader)["index"], 9);
    }

    /// The connection's end: nothing more to read.
    fn closed(reader: &mut StdBufReader<StdTcpStream>) -> bool {
        let mut rest = String::new();
        matches!(reader.read_line(&mut rest), Ok(0))
    }

    const TOKEN: &str = "0123456789abcdef-secret";

    #[test]
    fn with_a_token_only_a_client_that_shows_it_gets_records() {
        let mut limits = FeedbackLimits::open(4, 64);
        limits.token = Some(TOKEN.into());
        let server = FeedbackServer::start("127.0.0.1:0", limits).unwrap();

        // No hello: an error naming what is expected, then the close; no record reaches it.
        let (mut r1, mut w1) = connect(server.address());
        w1.write_all(b"{\"type\":\"marker\",\"onset_s\":1}\n")
            .unwrap();
        let e = read_json(&mut r1);
        assert!(e["message"].as_str().unwrap().contains("\"hello\""), "{e}");
        assert!(closed(&mut r1));
        assert!(server.markers().try_recv().is_err(), "a marker got through");

        // A wrong token of the same length.
        let (mut r2, mut w2) = connect(server.address());
        let wrong = format!(
            "{{\"type\":\"hello\",\"token\":\"{}\"}}\n",
            TOKEN.replace('0', "1")
        );
        w2.write_all(wrong.as_bytes()).unwrap();
        assert_eq!(read_json(&mut r2)["message"], "wrong token");
        assert!(closed(&mut r2));

        // The right token: welcomed, then records and markers as usual.
        let (mut r3, mut w3) = connect(server.address());
        let hello = format!("{{\"type\":\"hello\",\"token\":\"{TOKEN}\"}}\n");
        w3.write_all(hello.as_bytes()).unwrap();
        assert_eq!(read_json(&mut r3)["type"], "welcome");
        server.publish(&json!({"type": "volume", "index": 4}));
        assert_eq!(read_json(&mut r3)["index"], 4);
        w3.write_all(b"{\"type\":\"marker\",\"onset_s\":2.0}\n")
            .unwrap();
        assert_eq!(read_json(&mut r3)["type"], "ack");
    }

    #[test]
    fn long_lines_fast_senders_and_paths_outside_the_stimuli_are_refused() {
        let server = FeedbackServer::start("127.0.0.1:0", FeedbackLimits::open(4, 64)).unwrap();

        // A marker naming a file outside the stimuli folder: an error, no marker; still served.
        let (mut r, mut w) = connect(server.address());
        for stimulus in ["/etc/passwd", "../../secret.png", "a/../../b.png"] {
            let line =
                format!("{{\"type\":\"marker\",\"onset_s\":1,\"stimulus\":\"{stimulus}\"}}\n");
            w.write_all(line.as_bytes()).unwrap();
            let e = read_json(&mut r);
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("inside decode.stimuli"),
                "{e}"
            );
        }
        assert!(server.markers().try_recv().is_err());
        w.write_all(b"{\"type\":\"marker\",\"onset_s\":1,\"stimulus\":\"set/a.png\"}\n")
            .unwrap();
        assert_eq!(read_json(&mut r)["type"], "ack");

        // A line over 4096 bytes (no newline yet): told the limit, closed.
        let (mut r, mut w) = connect(server.address());
        w.write_all(&vec![b'x'; 5000]).unwrap();
        let e = read_json(&mut r);
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("max_line_bytes (4096 bytes)"),
            "{e}"
        );
        assert!(closed(&mut r));

        // 200 lines at once against 50 per second: acks for the burst, then the refusal.
        let (mut r, mut w) = connect(server.address());
        let burst = "{\"type\":\"marker\",\"onset_s\":1}\n".repeat(200);
        w.write_all(burst.as_bytes()).unwrap();
        let mut acks = 0;
        let last = loop {
            let v = read_json(&mut r);
            if v["type"] == "ack" {
                acks += 1;
            } else {
                break v;
            }
        };
        assert!((50..=60).contains(&acks), "{acks} acks before the refusal");
        assert!(
            last["message"]
                .as_str()
                .unwrap()
                .contains("max_lines_per_second (50"),
            "{last}"
        );
        assert!(closed(&mut r));

        // The server goes on: a new client gets the next record.
        let (mut r, mut w) = connect(server.address());
        // Its ack shows it is served (and subscribed) before the record goes out.
        w.write_all(b"{\"type\":\"marker\",\"onset_s\":3}\n")
            .unwrap();
        assert_eq!(read_json(&mut r)["type"], "ack");
        server.publish(&json!({"type": "volume", "index": 7}));
        assert_eq!(read_json(&mut r)["index"], 7);
    }
}
