//! The queue of frames waiting to be sent on one connection, bounded in frames and bytes.
//!
//! Document tasks never wait for a slow reader: they push and move on. A connection whose
//! queue would pass its bound is not given more memory: the push fails and the hub closes the
//! connection (the client reconnects and syncs from where its last acknowledged state was). A
//! close is kept apart from the frames so that a full queue cannot hold it back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

/// What a connection task is asked to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    /// Send this encoded message.
    Frame(Vec<u8>),
    /// Send `error` (an encoded `error` message), if any, then close the connection with
    /// `reason`; without an `error` the connection just ends.
    Close {
        /// The encoded `error` message.
        error: Option<Vec<u8>>,
        /// The close reason.
        reason: String,
    },
}

#[derive(Debug)]
struct Shared {
    bytes: AtomicUsize,
    max_bytes: usize,
    close: Mutex<Option<(Option<Vec<u8>>, String)>>,
    notify: Notify,
}

/// The sending side, held by the hub for one connection.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
}

/// The receiving side, held by the connection.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
}

/// A queue of at most `frames` frames and `bytes` bytes.
pub fn outbox(frames: usize, bytes: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(frames.max(1));
    let shared = Arc::new(Shared {
        bytes: AtomicUsize::new(0),
        max_bytes: bytes,
        close: Mutex::new(None),
        notify: Notify::new(),
    });
    (Outbox { tx, shared: shared.clone() }, Inbox { rx, shared })
}

impl Outbox {
    /// Queues a frame. Returns `false` when the queue is full (the caller closes the
    /// connection) or the connection is gone.
    pub fn push(&self, frame: Vec<u8>) -> bool {
        let len = frame.len();
        let queued = self.shared.bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.shared.max_bytes {
            self.shared.bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(_) => {
                self.shared.bytes.fetch_sub(len, Ordering::AcqRel);
                false
            }
        }
    }

    /// Asks the connection to send `error` (if any) and close with `reason`; the first close
    /// asked for is kept.
    pub fn close(&self, error: Option<Vec<u8>>, reason: &str) {
        let mut close = self.shared.close.lock().unwrap_or_else(|p| p.into_inner());
        if close.is_none() {
            *close = Some((error, reason.to_owned()));
        }
        drop(close);
        self.shared.notify.notify_one();
    }

    /// Whether this outbox and `other` feed the same connection.
    pub fn same(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Inbox {
    fn take_close(&self) -> Option<Outbound> {
        let close = self.shared.close.lock().unwrap_or_else(|p| p.into_inner()).take();
        close.map(|(error, reason)| Outbound::Close { error, reason })
    }

    fn taken(&self, frame: Vec<u8>) -> Outbound {
        self.shared.bytes.fetch_sub(frame.len(), Ordering::AcqRel);
        Outbound::Frame(frame)
    }

    /// The next thing to do: a close request first, else the next frame. `None` once every
    /// sender is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            if let Some(close) = self.take_close() {
                return Some(close);
            }
            tokio::select! {
                biased;
                () = self.shared.notify.notified() => continue,
                frame = self.rx.recv() => return frame.map(|f| self.taken(f)),
            }
        }
    }

    /// Like [`recv`](Self::recv), without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        if let Some(close) = self.take_close() {
            return Some(close);
        }
        self.rx.try_recv().ok().map(|f| self.taken(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_keeps_no_more_and_a_close_comes_before_the_frames() {
        let (out, mut inbox) = outbox(2, 100);
        assert!(out.push(vec![1; 10]));
        assert!(out.push(vec![2; 10]));
        assert!(!out.push(vec![3; 10]), "a third frame is over the frame bound");
        out.close(Some(vec![9]), "full");
        out.close(None, "a second close is not kept");
        assert_eq!(inbox.recv().await, Some(Outbound::Close { error: Some(vec![9]), reason: "full".into() }));
        assert_eq!(inbox.recv().await, Some(Outbound::Frame(vec![1; 10])));
        assert_eq!(inbox.recv().await, Some(Outbound::Frame(vec![2; 10])));
        assert_eq!(inbox.try_recv(), None);
    }

    #[tokio::test]
    async fn bytes_are_bounded_and_given_back_as_frames_leave() {
        let (out, mut inbox) = outbox(100, 25);
        assert!(out.push(vec![0; 20]));
        assert!(!out.push(vec![0; 10]), "30 bytes are over 25");
        assert_eq!(inbox.try_recv(), Some(Outbound::Frame(vec![0; 20])));
        assert!(out.push(vec![0; 25]), "the queue is empty again");
    }
}
