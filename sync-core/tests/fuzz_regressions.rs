//! Replays every input kept under `fuzz/regressions/<target>/` through the same function the
//! fuzz target runs (`fuzz/src/checks.rs`, compiled here as a module), so that a normal
//! `cargo test` keeps each crasher fixed without nightly or cargo-fuzz.
//!
//! `cargo test -p hamlet-sync-core --test fuzz_regressions -- --ignored write_seeds` writes the
//! starting inputs under `fuzz/seeds/` (honest messages, bundles and documents built from the
//! fixture ledger) that `fuzz/run.sh` gives each target.

#[allow(dead_code)]
#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use hamlet_sync_core::automerge::sync::{self, SyncDoc};
use hamlet_sync_core::automerge::transaction::Transactable;
use hamlet_sync_core::automerge::{ActorId, Automerge, AutomergeError, ROOT};
use hamlet_sync_core::bundle::{Bundle, BundleDocument};
use hamlet_sync_core::wire::{self, DocMessage, Message, PeerMetadata, RemoteHeads};
use hamlet_sync_core::{DocumentId, Ledger, fixtures};

/// A fuzz target's name and the check it runs.
type Target = (&'static str, fn(&[u8]));

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Runs `check` on every file under `fuzz/regressions/<target>/`, naming the file that fails.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = fuzz_dir().join("regressions").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("a regression input reads");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "fuzz regression {} fails again", file.display());
    }
    files.len()
}

#[test]
fn wire_regressions() {
    replay("wire", checks::wire);
}

#[test]
fn sync_regressions() {
    replay("sync", checks::sync);
}

#[test]
fn bundle_regressions() {
    replay("bundle", checks::bundle);
}

#[test]
fn projection_regressions() {
    replay("projection", checks::projection);
}

/// The seeds themselves must pass their target's checks: a seed that fails is a finding.
#[test]
fn seeds_pass_their_checks() {
    let dir = fuzz_dir().join("seeds");
    let targets: [Target; 4] = [
        ("wire", checks::wire),
        ("sync", checks::sync),
        ("bundle", checks::bundle),
        ("projection", checks::projection),
    ];
    for (target, check) in targets {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else { continue };
        for entry in entries.filter_map(Result::ok) {
            check(&std::fs::read(entry.path()).expect("a seed reads"));
        }
    }
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("seed folder");
    std::fs::write(dir.join(name), bytes).expect("seed written");
}

/// One more response on top of the fixture ledger, written by another device.
fn ledger_with_more() -> Automerge {
    let fixture = checks::fixture();
    let mut doc = fixture.doc.clone();
    doc.set_actor(ActorId::from([9u8; 16].as_slice()));
    let mut ledger = Ledger::from_doc(doc).expect("the fixture is a ledger");
    let key = hamlet_sync_core::AnswerKey::for_subject(fixtures::question("tin-nhiem"), fixtures::subject("ong-an"));
    let response = hamlet_sync_core::NewResponse {
        id: "r-more".parse().expect("id"),
        collector: "collector-2".parse().expect("id"),
        answers: [(key, hamlet_sync_core::AnswerValue::Level(hamlet_sync_core::Level::TinNhiem))].into(),
    };
    ledger.record(&fixture.campaign, &response, "2025-06-03".parse().expect("day")).expect("records");
    ledger.into_doc()
}

/// Every message of a full exchange between `a` and `b`, in the order sent.
fn exchange(mut a: Automerge, mut b: Automerge) -> Vec<Vec<u8>> {
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let mut messages = Vec::new();
    for _ in 0..10 {
        let ma = a.generate_sync_message(&mut sa);
        let mb = b.generate_sync_message(&mut sb);
        if ma.is_none() && mb.is_none() {
            break;
        }
        if let Some(m) = ma {
            let bytes = m.encode();
            b.receive_sync_message(&mut sb, sync::Message::decode(&bytes).expect("decodes")).expect("applies");
            messages.push(bytes);
        }
        if let Some(m) = mb {
            let bytes = m.encode();
            a.receive_sync_message(&mut sa, sync::Message::decode(&bytes).expect("decodes")).expect("applies");
            messages.push(bytes);
        }
    }
    messages
}

#[test]
#[ignore = "writes fuzz/seeds/; run by hand when the formats change"]
fn write_seeds() {
    let fixture = checks::fixture();
    let more = ledger_with_more();
    // sync: a phone holding one more response, a phone holding nothing, the fixture itself.
    let mut n = 0;
    for (a, b) in [
        (more.clone(), fixture.doc.clone()),
        (Automerge::new(), fixture.doc.clone()),
        (fixture.doc.clone(), Automerge::new()),
    ] {
        for (i, message) in exchange(a, b).into_iter().enumerate() {
            let mut seed = vec![u8::from(i == 0)];
            seed.extend(&message);
            write("sync", &format!("exchange-{n:02}"), &seed);
            n += 1;
        }
    }
    // wire: one of each message, a sync one carrying a real sync message.
    let id = fixture.id.to_string();
    let data = exchange(more.clone(), fixture.doc.clone()).into_iter().next().expect("a first message");
    let doc_message =
        DocMessage { sender_id: "phone".into(), target_id: "server".into(), document_id: id.clone(), data };
    let messages = [
        Message::Join {
            sender_id: "phone".into(),
            peer_metadata: Some(PeerMetadata { storage_id: Some("phone-store".into()), is_ephemeral: false }),
            supported_protocol_versions: Some(vec!["1".into()]),
        },
        Message::Peer {
            sender_id: "server".into(),
            target_id: "phone".into(),
            peer_metadata: PeerMetadata { storage_id: Some("server-store".into()), is_ephemeral: false },
            selected_protocol_version: "1".into(),
        },
        Message::Leave { sender_id: "phone".into() },
        Message::Error { sender_id: Some("phone".into()), target_id: None, message: "oops".into() },
        Message::Request(doc_message.clone()),
        Message::Sync(doc_message),
        Message::DocUnavailable { sender_id: "phone".into(), target_id: "server".into(), document_id: id.clone() },
        Message::Ephemeral {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: id.clone(),
            session_id: "s-1".into(),
            count: 3,
            data: b"presence".to_vec(),
        },
        Message::RemoteSubscriptionChange {
            sender_id: "phone".into(),
            target_id: "server".into(),
            add: vec!["store-a".into()],
            remove: vec!["store-b".into()],
        },
        Message::RemoteHeadsChanged {
            sender_id: "phone".into(),
            target_id: "server".into(),
            document_id: id,
            new_heads: vec![RemoteHeads {
                storage_id: "store-a".into(),
                heads: fixture.doc.get_heads().iter().map(|h| h.to_string()).collect(),
                timestamp: 1_748_822_400_000,
            }],
        },
    ];
    for (i, message) in messages.iter().enumerate() {
        write("wire", &format!("{i:02}-{}", message.kind()), &wire::encode(message));
    }
    // bundle: the changes after the skeleton, and a whole saved ledger beside a small document.
    let skeleton = Ledger::skeleton(&fixture.campaign.id, &fixtures::hamlet("thon-dong"));
    let mut small = Automerge::new();
    small.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "k", "v")).map_err(|f| f.error).expect("writes");
    let bundles = [
        vec![BundleDocument {
            id: fixture.id,
            changes: more.save_after(&skeleton.get_heads()),
            heads: more.get_heads(),
        }],
        vec![
            BundleDocument { id: fixture.id, changes: more.save(), heads: more.get_heads() },
            BundleDocument { id: DocumentId::from_bytes([1; 16]), changes: small.save(), heads: small.get_heads() },
        ],
    ];
    for (i, documents) in bundles.into_iter().enumerate() {
        let bundle = Bundle { source: "phone-store".into(), created_on: "2025-06-03".parse().expect("day"), documents };
        write("bundle", &format!("bundle-{i}"), &bundle.encode());
    }
    // projection: the ledger saved whole (compressed and not) and as incremental changes.
    write("projection", "saved", &more.save());
    write("projection", "saved-uncompressed", &more.save_nocompress());
    write("projection", "after-fixture", &more.save_after(&fixture.doc.get_heads()));
    write("projection", "skeleton", &skeleton.save());
    // csv: the three imports, as staff upload them.
    write(
        "csv",
        "units",
        "\u{feff}id,name,level,parent,valid_from,valid_until,merged_from,merged_into\r\n\
         tinh,Tỉnh Mẫu,province,,2020-01-01,,,\r\n\
         huyen,Huyện Mẫu,district,tinh,2020-01-01,,,\r\n\
         xa-a,\"Xã An Phú, mới\",commune,huyen,2020-01-01,,,\r\n\
         thon-dong,Thôn Đông,hamlet,xa-a,2020-01-01,2025-12-31,thon-cu;thon-moi,\r\n"
            .as_bytes(),
    );
    write(
        "csv",
        "subjects",
        "id;name;position;commune;home_hamlet\r\nong-an;Nguyễn Văn An;Chủ tịch UBND xã;xa-a;thon-dong\r\n".as_bytes(),
    );
    write("csv", "hamlets", b"hamlet,expected_voters\nthon-dong,320\nthon-tay,275\n");
}
