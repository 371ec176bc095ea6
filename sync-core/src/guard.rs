//! What Hamlet checks in a peer's Automerge bytes before Automerge reads them.
//!
//! Automerge's decoders trust some numbers a peer writes: a sync message's Bloom filter names
//! its own probe count and bits per entry (2³² probes allocate 16 GiB when a hash is looked
//! up; zero bits per entry divide by zero), and compressed chunks are inflated without a bound.
//! Every sync message and every chunk from outside therefore passes through this module first:
//!
//! - [`sync_message`] decodes a sync message (Automerge's parser only reads what the bytes
//!   hold) and checks what the decoder leaves unchecked: each Bloom filter's parameters, the
//!   number of changes, and the size of every chunk once inflated.
//! - [`chunks`] walks concatenated storage chunks (what [`Automerge::load_incremental`] takes)
//!   with the same rules, for bundles and stored data.
//!
//! The limits are in [`Limits`]; a refusal says which limit and by how much
//! ([`GuardError`]).
//!
//! # Example
//!
//! ```
//! use hamlet_sync_core::guard::{self, GuardError, Limits};
//!
//! // A sync message whose Bloom filter claims 4,294,967,295 probes.
//! let hostile = [0x42, 0, 0, 1, 0, 8, 1, 8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
//! let refused = guard::sync_message(&hostile, &Limits::default()).unwrap_err();
//! assert!(matches!(refused, GuardError::BloomFilter { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Automerge::load_incremental`]: automerge::Automerge::load_incremental

use std::io::Read;

use automerge::sync;

/// Bounds on what a peer's bytes may make Automerge do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes the chunks of one message (or one call of [`chunks`]) may inflate to.
    pub max_inflated_bytes: usize,
    /// Most changes one sync message may carry.
    pub max_changes: usize,
    /// Most probes a Bloom filter may ask for (Automerge writes 7).
    pub max_bloom_probes: u32,
    /// Most bits per entry a Bloom filter may use (Automerge writes 10).
    pub max_bloom_bits_per_entry: u32,
}

impl Default for Limits {
    /// 64 MiB inflated (the server's default document limit), 100,000 changes, Bloom filters
    /// of up to 64 probes and 64 bits per entry — generous beside what Automerge writes.
    fn default() -> Self {
        Limits {
            max_inflated_bytes: 64 << 20,
            max_changes: 100_000,
            max_bloom_probes: 64,
            max_bloom_bits_per_entry: 64,
        }
    }
}

/// Why a peer's bytes were refused before Automerge read them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// Not a sync message Automerge can read.
    #[error("not a sync message: {0}")]
    Decode(String),
    /// A Bloom filter with parameters no honest peer writes.
    #[error(
        "Bloom filter refused: {entries} entries, {bits_per_entry} bits per entry, {probes} probes \
         (at most {max_probes} probes and 1 to {max_bits} bits per entry)"
    )]
    BloomFilter {
        /// Entries it claims.
        entries: u32,
        /// Bits per entry it claims.
        bits_per_entry: u32,
        /// Probes it claims.
        probes: u32,
        /// The probe limit.
        max_probes: u32,
        /// The bits-per-entry limit.
        max_bits: u32,
    },
    /// More changes than a message may carry.
    #[error("{count} changes in one message; at most {max}")]
    TooManyChanges {
        /// Changes in the message.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The chunks would inflate beyond the limit.
    #[error("the changes would exceed the size limit of {max} bytes once inflated")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// A chunk whose framing is broken (bad magic bytes, a length beyond the data, an unknown type).
    #[error("malformed chunk at byte {offset}: {reason}")]
    Chunk {
        /// Where, in the bytes given.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Decodes a sync message from a peer and checks it (see the [module docs](self)).
pub fn sync_message(data: &[u8], limits: &Limits) -> Result<sync::Message, GuardError> {
    let mut message = sync::Message::decode(data).map_err(|e| GuardError::Decode(e.to_string()))?;
    // Heads, needs and last syncs are sets; Automerge's reply builder panics (`MissingOps`)
    // on a need naming one of our changes twice. Each hash is kept once, in its first place.
    if message.have.len() > limits.max_changes
        || message.heads.len() > limits.max_changes
        || message.need.len() > limits.max_changes
        || message.have.iter().any(|h| h.last_sync.len() > limits.max_changes)
    {
        return Err(GuardError::TooManyChanges {
            count: [message.heads.len(), message.need.len(), message.have.len()].into_iter().max().unwrap_or(0),
            max: limits.max_changes,
        });
    }
    dedup(&mut message.heads);
    dedup(&mut message.need);
    for have in &mut message.have {
        dedup(&mut have.last_sync);
    }
    for have in &message.have {
        check_bloom(&have.bloom.to_bytes(), limits)?;
    }
    if message.changes.len() > limits.max_changes {
        return Err(GuardError::TooManyChanges { count: message.changes.len(), max: limits.max_changes });
    }
    let mut budget = limits.max_inflated_bytes;
    for chunk in message.changes.iter() {
        walk(chunk, &mut budget, limits.max_inflated_bytes)?;
    }
    Ok(message)
}

/// Keeps the first of each hash, in order.
fn dedup(hashes: &mut Vec<automerge::ChangeHash>) {
    let mut seen = std::collections::HashSet::with_capacity(hashes.len());
    hashes.retain(|h| seen.insert(*h));
}

/// Checks concatenated storage chunks (document, change or compressed change chunks) before
/// they are loaded: framing, and the size once inflated within `max_inflated_bytes`.
pub fn chunks(data: &[u8], max_inflated_bytes: usize) -> Result<(), GuardError> {
    let mut budget = max_inflated_bytes;
    walk(data, &mut budget, max_inflated_bytes)
}

/// The parameters of an encoded Bloom filter: `(entries, bits per entry, probes)`; an empty
/// filter has none.
fn check_bloom(bytes: &[u8], limits: &Limits) -> Result<(), GuardError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut r = Reader { data: bytes, at: 0 };
    let malformed = |_| GuardError::Decode("malformed Bloom filter".into());
    let entries = r.uleb_u32().map_err(malformed)?;
    let bits_per_entry = r.uleb_u32().map_err(malformed)?;
    let probes = r.uleb_u32().map_err(malformed)?;
    // Automerge writes no parameters for an empty filter; a filter with entries must have bits
    // to probe (else a division by zero) and a probe count that does not allocate unboundedly.
    let bits = (u64::from(entries) * u64::from(bits_per_entry)).div_ceil(8);
    let ok = entries > 0
        && (1..=limits.max_bloom_bits_per_entry).contains(&bits_per_entry)
        && (1..=limits.max_bloom_probes).contains(&probes)
        && bits > 0;
    if !ok {
        return Err(GuardError::BloomFilter {
            entries,
            bits_per_entry,
            probes,
            max_probes: limits.max_bloom_probes,
            max_bits: limits.max_bloom_bits_per_entry,
        });
    }
    Ok(())
}

/// Automerge's chunk magic bytes.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED: u8 = 2;
/// The bit of a column specification that marks a DEFLATE-compressed column.
const DEFLATE_BIT: u32 = 0b1000;

/// Walks chunks one after another, charging each one's inflated size to `budget`.
fn walk(data: &[u8], budget: &mut usize, max: usize) -> Result<(), GuardError> {
    let mut r = Reader { data, at: 0 };
    while !r.done() {
        let start = r.at;
        let bad = |reason| GuardError::Chunk { offset: start, reason };
        if r.take(4).map_err(|_| bad("truncated header"))? != MAGIC {
            return Err(bad("not an Automerge chunk"));
        }
        r.take(4).map_err(|_| bad("truncated header"))?;
        let kind = r.byte().map_err(|_| bad("truncated header"))?;
        let len = r.uleb_usize().map_err(|_| bad("bad length"))?;
        let body = r.take(len).map_err(|_| bad("length beyond the data"))?;
        match kind {
            CHANGE => charge(budget, body.len(), max)?,
            COMPRESSED => {
                let inflated = inflate(body, *budget).map_err(|e| match e {
                    Inflate::TooLarge => GuardError::TooLarge { max },
                    Inflate::Corrupt => bad("compressed change does not inflate"),
                })?;
                charge(budget, inflated, max)?;
            }
            DOCUMENT => document(body, budget, max).map_err(|e| match e {
                GuardError::Chunk { reason, .. } => bad(reason),
                other => other,
            })?,
            // Bundles (type 3) and anything newer are not something Hamlet's peers send.
            _ => return Err(bad("chunk type not accepted")),
        }
    }
    Ok(())
}

/// A document chunk: actors, heads, the change and op column metadata, then the column data.
/// Compressed columns are inflated (within the budget) to learn their size.
fn document(body: &[u8], budget: &mut usize, max: usize) -> Result<(), GuardError> {
    let bad = |reason| GuardError::Chunk { offset: 0, reason };
    let mut r = Reader { data: body, at: 0 };
    let actors = r.uleb_usize().map_err(|_| bad("bad actor count"))?;
    for _ in 0..actors {
        let len = r.uleb_usize().map_err(|_| bad("bad actor"))?;
        r.take(len).map_err(|_| bad("bad actor"))?;
    }
    let heads = r.uleb_usize().map_err(|_| bad("bad head count"))?;
    r.take(heads.checked_mul(32).ok_or(bad("bad head count"))?).map_err(|_| bad("heads beyond the data"))?;
    let mut columns = Vec::new();
    for _ in 0..2 {
        let count = r.uleb_usize().map_err(|_| bad("bad column count"))?;
        for _ in 0..count {
            let spec = r.uleb_u32().map_err(|_| bad("bad column"))?;
            let len = r.uleb_usize().map_err(|_| bad("bad column"))?;
            columns.push((spec, len));
        }
    }
    for (spec, len) in columns {
        let data = r.take(len).map_err(|_| bad("column beyond the data"))?;
        if spec & DEFLATE_BIT != 0 {
            let inflated = inflate(data, *budget).map_err(|e| match e {
                Inflate::TooLarge => GuardError::TooLarge { max },
                Inflate::Corrupt => bad("compressed column does not inflate"),
            })?;
            charge(budget, inflated, max)?;
        } else {
            charge(budget, data.len(), max)?;
        }
    }
    Ok(())
}

fn charge(budget: &mut usize, bytes: usize, max: usize) -> Result<(), GuardError> {
    *budget = budget.checked_sub(bytes).ok_or(GuardError::TooLarge { max })?;
    Ok(())
}

enum Inflate {
    TooLarge,
    Corrupt,
}

/// Inflates raw DEFLATE data, giving up past `limit` bytes; returns the inflated size.
fn inflate(data: &[u8], limit: usize) -> Result<usize, Inflate> {
    let decoder = flate2::bufread::DeflateDecoder::new(data);
    let mut sink = [0u8; 16 * 1024];
    let mut total = 0usize;
    let mut limited = decoder.take(limit as u64 + 1);
    loop {
        match limited.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                if total > limit {
                    return Err(Inflate::TooLarge);
                }
            }
            Err(_) => return Err(Inflate::Corrupt),
        }
    }
    Ok(total)
}

/// Reads LEB128 numbers and byte runs, never past the end.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn byte(&mut self) -> Result<u8, ()> {
        let b = *self.data.get(self.at).ok_or(())?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        let end = self.at.checked_add(n).ok_or(())?;
        let slice = self.data.get(self.at..end).ok_or(())?;
        self.at = end;
        Ok(slice)
    }

    fn uleb_u64(&mut self) -> Result<u64, ()> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(());
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(())
    }

    fn uleb_u32(&mut self) -> Result<u32, ()> {
        u32::try_from(self.uleb_u64()?).map_err(|_| ())
    }

    fn uleb_usize(&mut self) -> Result<usize, ()> {
        usize::try_from(self.uleb_u64()?).map_err(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    fn check(data: &[u8]) -> Result<sync::Message, GuardError> {
        sync_message(data, &Limits::default())
    }

    #[test]
    fn the_bloom_filter_that_allocated_16_gib_is_refused() {
        let hostile = [0x42, 0, 0, 1, 0, 8, 1, 8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0];
        assert!(matches!(check(&hostile), Err(GuardError::BloomFilter { probes: u32::MAX, .. })));
    }

    #[test]
    fn the_bloom_filter_that_divided_by_zero_is_refused() {
        let hostile = [0x42, 0, 0, 1, 0, 3, 1, 0, 7, 0];
        assert!(matches!(check(&hostile), Err(GuardError::BloomFilter { bits_per_entry: 0, .. })));
    }

    #[test]
    fn the_need_with_a_known_hash_twice_is_read_once() {
        // A peer claiming heads we lack and needing one of our changes twice made Automerge
        // panic (`MissingOps` in its change collector) when it generated the reply to a real
        // ledger (`fuzz/regressions/sync/server-generate-missing-ops` replays that one).
        let mut ours = AutoCommit::new();
        ours.put(ROOT, "k", "v").expect("put");
        let head = ours.get_heads()[0];
        let other = automerge::ChangeHash([9; 32]);
        let mut hostile = sync::Message::decode(
            &AutoCommit::new().sync().generate_sync_message(&mut sync::State::new()).expect("a message").encode(),
        )
        .expect("decodes");
        hostile.heads = vec![other, other];
        let mut need = vec![head, other, head, head];
        need.sort();
        hostile.need = need.clone();
        need.dedup();
        let message = check(&hostile.encode()).expect("passes, its lists read as sets");
        assert_eq!(message.need, need, "each hash once");
        assert_eq!(message.heads, vec![other]);
        let mut state = sync::State::new();
        ours.sync().receive_sync_message(&mut state, message).expect("applies");
        assert!(ours.sync().generate_sync_message(&mut state).is_some(), "the reply is generated");
    }

    #[test]
    fn honest_messages_pass() {
        let mut a = AutoCommit::new();
        for i in 0..50 {
            a.put(ROOT, format!("k{i}"), "x".repeat(400)).expect("put");
            a.commit();
        }
        let mut b = AutoCommit::new();
        b.put(ROOT, "other", 1).expect("put");
        b.commit();
        let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
        let mut rounds = 0;
        loop {
            rounds += 1;
            assert!(rounds < 20, "sync did not end");
            let ma = a.sync().generate_sync_message(&mut sa);
            let mb = b.sync().generate_sync_message(&mut sb);
            if ma.is_none() && mb.is_none() {
                break;
            }
            if let Some(m) = ma {
                let m = check(&m.encode()).expect("honest message");
                b.sync().receive_sync_message(&mut sb, m).expect("receive");
            }
            if let Some(m) = mb {
                let m = check(&m.encode()).expect("honest message");
                a.sync().receive_sync_message(&mut sa, m).expect("receive");
            }
        }
        assert_eq!(a.get_heads(), b.get_heads());
        // Whole saved documents (compressed columns) pass too.
        chunks(&a.save(), 64 << 20).expect("a saved document");
        chunks(&a.save_nocompress(), 64 << 20).expect("an uncompressed document");
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    }

    fn leb(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([0; 4]);
        out.push(kind);
        leb(body.len() as u64, &mut out);
        out.extend(body);
        out
    }

    #[test]
    fn a_compressed_change_is_inflated_only_up_to_the_limit() {
        // 64 MiB of zeros compress to about 64 KB.
        let bomb = chunk(COMPRESSED, &deflate(&vec![0u8; 64 << 20]));
        assert!(bomb.len() < 100_000);
        assert_eq!(chunks(&bomb, 1 << 20), Err(GuardError::TooLarge { max: 1 << 20 }));
        // In a sync message: heads, need, have (none), then one change.
        let mut message = vec![0x42, 0, 0, 0, 1];
        leb(bomb.len() as u64, &mut message);
        message.extend(&bomb);
        let limits = Limits { max_inflated_bytes: 1 << 20, ..Limits::default() };
        assert_eq!(sync_message(&message, &limits).expect_err("a bomb"), GuardError::TooLarge { max: 1 << 20 });
    }

    #[test]
    fn a_document_with_a_compressed_column_bomb_is_refused() {
        let column = deflate(&vec![0u8; 8 << 20]);
        let mut body = vec![0, 0]; // no actors, no heads
        body.push(1); // one change column
        leb(u64::from(DEFLATE_BIT | 1), &mut body);
        leb(column.len() as u64, &mut body);
        body.push(0); // no op columns
        body.extend(&column);
        assert_eq!(chunks(&chunk(DOCUMENT, &body), 1 << 20), Err(GuardError::TooLarge { max: 1 << 20 }));
    }

    #[test]
    fn broken_framing_is_refused_with_its_offset() {
        let good = chunk(CHANGE, b"abc");
        let mut two = good.clone();
        two.extend(b"\x85\x6f");
        assert!(matches!(chunks(&two, 1 << 20), Err(GuardError::Chunk { offset, .. }) if offset == good.len()));
        let mut long = good.clone();
        long[9] = 0x7f; // a length beyond the data
        assert!(matches!(chunks(&long, 1 << 20), Err(GuardError::Chunk { offset: 0, .. })));
        assert!(matches!(chunks(&chunk(3, b"bundle"), 1 << 20), Err(GuardError::Chunk { .. })));
        assert!(chunks(&good, 2).is_err(), "three bytes do not fit a budget of two");
    }
}
