//! The feedback server: a TCP port (loopback by default) speaking JSON lines. Every connected
//! client receives each published record (samples, volumes) as one line with integer-ns
//! timestamps; the stimulus computer sends trial-onset markers on the same connection and gets
//! an acknowledgement. Clients are bounded in number and in how far they may fall behind; a
//! malformed line gets an error line back and never stops the server.
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
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use super::{Sink, SinkError};
use crate::event::SessionEvent;
use crate::preprocess::trials::Marker;

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
    pub fn start(
        address: &str,
        max_clients: usize,
        backlog: usize,
    ) -> Result<FeedbackServer, FeedbackError> {
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
                let Ok((stream, peer)) = listener.accept().await else { continue };
                if clients_for_accept.load(Ordering::SeqCst) >= max_clients {
                    let mut stream = stream;
                    let line = format!("{}\n", json!({"type": "error", "message": format!("server full: {max_clients} clients already")}));
                    let _ = stream.write_all(line.as_bytes()).await;
                    continue;
                }
                clients_for_accept.fetch_add(1, Ordering::SeqCst);
                let (rx, tx, clients) = (records_for_accept.subscribe(), marker_tx.clone(), clients_for_accept.clone());
                tokio::spawn(async move {
                    serve(stream, rx, tx).await;
                    clients.fetch_sub(1, Ordering::SeqCst);
                    tracing::debug!("feedback client {peer} left");
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

async fn serve(
    stream: TcpStream,
    mut records: broadcast::Receiver<Arc<str>>,
    markers: Sender<Marker>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    loop {
        tokio::select! {
            record = records.recv() => {
                let line = match record {
                    Ok(r) => format!("{r}\n"),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        format!("{}\n", json!({"type": "error", "message": format!("too slow: {n} records dropped")}))
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if write.write_all(line.as_bytes()).await.is_err() {
                    return;
                }
            }
            line = lines.next_line() => {
                let reply = match line {
                    Ok(Some(text)) if text.trim().is_empty() => continue,
                    Ok(Some(text)) => match serde_json::from_str::<Marker>(&text) {
                        Ok(m) if m.kind == "marker" && m.onset_s.is_finite() && m.onset_s >= 0.0 && m.duration_s.is_finite() && m.duration_s >= 0.0 => {
                            let onset = m.onset_s;
                            if markers.send(m).is_err() {
                                return;
                            }
                            json!({"type": "ack", "onset_s": onset})
                        }
                        Ok(m) => json!({"type": "error", "message": format!("expected type \"marker\" with onset_s and duration_s >= 0 seconds, got type {:?}", m.kind)}),
                        Err(e) => json!({"type": "error", "message": format!("not a marker line ({e}); expected {{\"type\":\"marker\",\"onset_s\":12.0}}")}),
                    },
                    // The client closed its side, or the line was not UTF-8.
                    Ok(None) => return,
                    Err(e) => json!({"type": "error", "message": format!("unreadable input: {e}")}),
                };
                if write.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    return;
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
        let server = FeedbackServer::start("127.0.0.1:0", 2, 64).unwrap();
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
}
