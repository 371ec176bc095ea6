//! Counters for `GET /metrics`, in the Prometheus text format. A handful of atomics: no metrics
//! crate is needed for this few.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the commit latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Why a message or connection was refused, for the `hamlet_errors_total` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a protocol message, or one the protocol refuses.
    Protocol,
    /// Over the message size limit.
    MessageTooLarge,
    /// Over the document size limit.
    DocumentTooLarge,
    /// Invalid Automerge data.
    InvalidSync,
    /// The database failed.
    Storage,
    /// Changes or documents the connection may not touch.
    Forbidden,
    /// A device over its message rate, its connection count or its share of a document.
    RateLimited,
    /// A connection that did not read what the server sent, or a document too busy to queue more.
    Overloaded,
    /// A panic caught while handling a message.
    Panic,
}

const KINDS: [(ErrorKind, &str); 9] = [
    (ErrorKind::Protocol, "protocol"),
    (ErrorKind::MessageTooLarge, "message_too_large"),
    (ErrorKind::DocumentTooLarge, "document_too_large"),
    (ErrorKind::InvalidSync, "invalid_sync"),
    (ErrorKind::Storage, "storage"),
    (ErrorKind::Forbidden, "forbidden"),
    (ErrorKind::RateLimited, "rate_limited"),
    (ErrorKind::Overloaded, "overloaded"),
    (ErrorKind::Panic, "panic"),
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_total: AtomicU64,
    connections_open: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    documents_loaded: AtomicU64,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    commit_buckets: [AtomicU64; BUCKETS.len()],
    errors: [AtomicU64; KINDS.len()],
}

impl Metrics {
    /// A connection opened.
    pub fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
    }

    /// A connection closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// A message came in.
    pub fn message_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Relaxed);
    }

    /// A message went out.
    pub fn message_out(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Relaxed);
    }

    /// A document was loaded from storage.
    pub fn document_loaded(&self) {
        self.documents_loaded.fetch_add(1, Relaxed);
    }

    /// A transaction committed after `took`.
    pub fn committed(&self, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.commit_micros.fetch_add(took.as_micros() as u64, Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.commit_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Relaxed);
            }
        }
    }

    /// Something was refused or failed.
    pub fn error(&self, kind: ErrorKind) {
        if let Some(i) = KINDS.iter().position(|(k, _)| *k == kind) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// The count of errors of `kind` so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        KINDS.iter().position(|(k, _)| *k == kind).map_or(0, |i| self.errors[i].load(Relaxed))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        counter(
            "hamlet_connections_total",
            "WebSocket connections accepted.",
            "counter",
            self.connections_total.load(Relaxed),
        );
        counter(
            "hamlet_connections_open",
            "WebSocket connections open now.",
            "gauge",
            self.connections_open.load(Relaxed),
        );
        counter("hamlet_messages_in_total", "Protocol messages received.", "counter", self.messages_in.load(Relaxed));
        counter("hamlet_messages_out_total", "Protocol messages sent.", "counter", self.messages_out.load(Relaxed));
        counter(
            "hamlet_bytes_in_total",
            "Bytes of protocol messages received.",
            "counter",
            self.bytes_in.load(Relaxed),
        );
        counter("hamlet_bytes_out_total", "Bytes of protocol messages sent.", "counter", self.bytes_out.load(Relaxed));
        counter(
            "hamlet_documents_loaded_total",
            "Documents loaded from storage.",
            "counter",
            self.documents_loaded.load(Relaxed),
        );
        let _ = writeln!(out, "# HELP hamlet_errors_total Messages or connections refused, by reason.");
        let _ = writeln!(out, "# TYPE hamlet_errors_total counter");
        for ((_, label), count) in KINDS.iter().zip(&self.errors) {
            let _ = writeln!(out, "hamlet_errors_total{{kind=\"{label}\"}} {}", count.load(Relaxed));
        }
        let _ =
            writeln!(out, "# HELP hamlet_commit_seconds Latency of database transactions holding received changes.");
        let _ = writeln!(out, "# TYPE hamlet_commit_seconds histogram");
        for (bound, count) in BUCKETS.iter().zip(&self.commit_buckets) {
            let _ = writeln!(out, "hamlet_commit_seconds_bucket{{le=\"{bound}\"}} {}", count.load(Relaxed));
        }
        let commits = self.commits.load(Relaxed);
        let _ = writeln!(out, "hamlet_commit_seconds_bucket{{le=\"+Inf\"}} {commits}");
        let _ = writeln!(out, "hamlet_commit_seconds_sum {}", self.commit_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "hamlet_commit_seconds_count {commits}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.connection_opened();
        m.message_in(10);
        m.committed(Duration::from_millis(3));
        m.error(ErrorKind::Protocol);
        let text = m.render();
        assert!(text.contains("hamlet_connections_open 1\n"), "{text}");
        assert!(text.contains("hamlet_bytes_in_total 10\n"));
        assert!(text.contains("hamlet_commit_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("hamlet_commit_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("hamlet_commit_seconds_count 1\n"));
        assert!(text.contains("hamlet_errors_total{kind=\"protocol\"} 1\n"));
        assert_eq!(m.errors(ErrorKind::Protocol), 1);
    }
}
