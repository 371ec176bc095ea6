//! The durable store, on SQLite always and on PostgreSQL when `HAMLET_TEST_DATABASE_URL` is set.

mod support;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use hamlet_server::store::{
    Backend, ChunkKind, Committer, DocumentInfo, Store, StoreError, StoredChunk, Write, Written,
};

fn chunk(document: &str, data: &[u8], heads: &[u8]) -> Write {
    Write::Chunk {
        document: document.to_owned(),
        kind: ChunkKind::Incremental,
        data: data.to_vec(),
        heads: heads.to_vec(),
    }
}

fn sync_state(document: &str, storage_id: &str, state: &[u8]) -> Write {
    Write::SyncState { document: document.to_owned(), storage_id: storage_id.to_owned(), state: state.to_vec() }
}

async fn open(db: &support::TestDb) -> Store {
    Store::open(db.url()).await.unwrap_or_else(|error| panic!("{}: open: {error}", db.name))
}

async fn commit(store: &Store, writes: &[Write]) -> Vec<Written> {
    store.commit(writes).await.unwrap_or_else(|error| panic!("{:?}: commit: {error}", store.backend()))
}

async fn append(store: &Store, document: &str, data: &[u8]) -> i64 {
    match commit(store, &[chunk(document, data, b"heads")]).await.as_slice() {
        [Written::Chunk { id }] => *id,
        other => panic!("one chunk written, got {other:?}"),
    }
}

async fn load(store: &Store, document: &str) -> Vec<StoredChunk> {
    store.load(document).await.unwrap_or_else(|error| panic!("{:?}: load: {error}", store.backend()))
}

async fn document(store: &Store, id: &str) -> Option<DocumentInfo> {
    let documents = store.documents().await.unwrap_or_else(|error| panic!("documents: {error}"));
    documents.into_iter().find(|document| document.id == id)
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds fit an i64")
}

/// Every byte value, and more than a page, so that blobs are not mangled as text.
fn binary_blob(length: usize, seed: u8) -> Vec<u8> {
    (0..length).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[tokio::test]
async fn opening_twice_applies_migrations_once_and_keeps_the_storage_id() {
    for db in support::databases().await {
        let first = open(&db).await;
        let expected = if db.is_postgres() { Backend::Postgres } else { Backend::Sqlite };
        assert_eq!(first.backend(), expected);
        first.ping().await.unwrap_or_else(|error| panic!("{}: ping: {error}", db.name));
        let id = first.storage_id().await.expect("a storage id");
        uuid::Uuid::parse_str(&id).unwrap_or_else(|error| panic!("{}: {id:?} is not a UUID: {error}", db.name));
        assert_eq!(first.storage_id().await.expect("a storage id"), id, "{}", db.name);
        append(&first, "doc", b"kept across reopening").await;

        // A second "process" while the first is open, then a reopening after both closed.
        let second = open(&db).await;
        assert_eq!(second.storage_id().await.expect("a storage id"), id, "{}: shared database", db.name);
        second.close().await;
        first.close().await;
        let third = open(&db).await;
        assert_eq!(third.storage_id().await.expect("a storage id"), id, "{}: after reopening", db.name);
        assert_eq!(load(&third, "doc").await.len(), 1, "{}: data kept", db.name);
        third.close().await;
    }
}

#[tokio::test]
async fn chunks_load_back_in_order_per_document() {
    for db in support::databases().await {
        let store = open(&db).await;
        let big = binary_blob(300_000, 7);
        let writes = vec![
            chunk("a", b"a1", b"ha1"),
            chunk("b", b"b1", b"hb1"),
            chunk("a", &big, b"ha2"),
            Write::Chunk { document: "a".into(), kind: ChunkKind::Snapshot, data: vec![], heads: b"ha3".to_vec() },
        ];
        let written = commit(&store, &writes).await;
        let ids: Vec<i64> = written
            .iter()
            .map(|written| match written {
                Written::Chunk { id } => *id,
                other => panic!("{}: a chunk id, got {other:?}", db.name),
            })
            .collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{}: ids grow: {ids:?}", db.name);
        let a4 = append(&store, "a", b"a4").await;

        let expected = vec![
            StoredChunk { id: ids[0], kind: ChunkKind::Incremental, data: b"a1".to_vec() },
            StoredChunk { id: ids[2], kind: ChunkKind::Incremental, data: big.clone() },
            StoredChunk { id: ids[3], kind: ChunkKind::Snapshot, data: vec![] },
            StoredChunk { id: a4, kind: ChunkKind::Incremental, data: b"a4".to_vec() },
        ];
        assert_eq!(load(&store, "a").await, expected, "{}", db.name);
        assert_eq!(load(&store, "b").await.len(), 1, "{}", db.name);
        assert!(load(&store, "unknown").await.is_empty(), "{}", db.name);
        store.close().await;
    }
}

#[tokio::test]
async fn a_commit_stores_all_of_its_writes_or_none() {
    for db in support::databases().await {
        let store = open(&db).await;
        let other = append(&store, "other", b"belongs to another document").await;
        let size_before = document(&store, "other").await.expect("other is listed").size;

        // The first writes succeed inside the transaction, the last one fails: a compaction of
        // "a" that names a chunk of "other".
        let writes = vec![
            chunk("a", b"a1", b"h1"),
            sync_state("a", "peer", b"state"),
            Write::Compact {
                document: "a".into(),
                snapshot: b"snap".to_vec(),
                heads: b"h2".to_vec(),
                replaces: vec![other],
            },
        ];
        match store.commit(&writes).await {
            Err(StoreError::CompactionConflict { document, missing }) => {
                assert_eq!((document.as_str(), missing), ("a", vec![other]), "{}", db.name);
            }
            other => panic!("{}: a compaction conflict, got {other:?}", db.name),
        }
        assert!(load(&store, "a").await.is_empty(), "{}: no chunk of the failed commit", db.name);
        assert_eq!(store.load_sync_state("a", "peer").await.expect("loads"), None, "{}", db.name);
        assert_eq!(document(&store, "a").await, None, "{}: no document row", db.name);
        assert_eq!(load(&store, "other").await.len(), 1, "{}: the other document's chunk is kept", db.name);
        assert_eq!(document(&store, "other").await.expect("listed").size, size_before, "{}", db.name);

        // A write rejected before the database: nothing stored either.
        let invalid = vec![chunk("a", b"a1", b"h1"), sync_state("", "peer", b"state")];
        assert!(matches!(store.commit(&invalid).await, Err(StoreError::InvalidWrite { index: 1, .. })), "{}", db.name);
        assert!(load(&store, "a").await.is_empty(), "{}", db.name);

        // The store still works after the failures.
        append(&store, "a", b"a1").await;
        assert_eq!(load(&store, "a").await.len(), 1, "{}", db.name);
        store.close().await;
    }
}

#[tokio::test]
async fn compaction_deletes_exactly_the_chunks_it_replaces() {
    for db in support::databases().await {
        let this = open(&db).await;
        let other_process = open(&db).await;
        let c1 = append(&this, "doc", b"change 1").await;
        let c2 = append(&this, "doc", b"change 2").await;
        // Appended by another process after this one read [c1, c2] and built its snapshot.
        let c3 = append(&other_process, "doc", b"change 3 from elsewhere").await;
        let untouched = append(&this, "neighbour", b"another document").await;

        let snapshot = b"snapshot of changes 1 and 2".to_vec();
        let written = commit(
            &this,
            &[Write::Compact {
                document: "doc".into(),
                snapshot: snapshot.clone(),
                heads: b"h12".to_vec(),
                replaces: vec![c1, c2],
            }],
        )
        .await;
        let [Written::Compacted { id: snap }] = written.as_slice() else {
            panic!("{}: one compaction written, got {written:?}", db.name);
        };
        assert_eq!(
            load(&this, "doc").await,
            vec![
                StoredChunk { id: c3, kind: ChunkKind::Incremental, data: b"change 3 from elsewhere".to_vec() },
                StoredChunk { id: *snap, kind: ChunkKind::Snapshot, data: snapshot.clone() },
            ],
            "{}",
            db.name
        );
        let info = document(&other_process, "doc").await.expect("doc is listed");
        assert_eq!((info.size, info.chunks), ((23 + snapshot.len()) as i64, 2), "{}", db.name);
        assert_eq!(load(&this, "neighbour").await[0].id, untouched, "{}", db.name);

        // The other process compacts from its stale view: c1 is gone, so it fails, writing nothing.
        let stale = Write::Compact {
            document: "doc".into(),
            snapshot: b"stale".to_vec(),
            heads: b"h".to_vec(),
            replaces: vec![c1, c3],
        };
        match other_process.commit(&[stale]).await {
            Err(StoreError::CompactionConflict { missing, .. }) => assert_eq!(missing, vec![c1], "{}", db.name),
            result => panic!("{}: a compaction conflict, got {result:?}", db.name),
        }
        assert_eq!(load(&this, "doc").await.len(), 2, "{}: nothing written", db.name);

        // Duplicated ids are one id.
        let again = Write::Compact {
            document: "doc".into(),
            snapshot: b"all".to_vec(),
            heads: b"h".to_vec(),
            replaces: vec![c3, *snap, c3],
        };
        commit(&other_process, &[again]).await;
        let chunks = load(&this, "doc").await;
        assert_eq!(chunks.len(), 1, "{}", db.name);
        assert_eq!(document(&this, "doc").await.expect("listed").size, 3, "{}", db.name);
        this.close().await;
        other_process.close().await;
    }
}

/// Two server processes compacting one document at the same moment (each from the chunks it
/// read): one compaction wins, the other is refused as a conflict, and the document is left
/// with exactly one snapshot and nothing lost. (With PostgreSQL's advisory lock taken out this
/// still holds — the second compaction finds the chunks it replaces gone — but concurrent
/// appends then deadlock: `two_processes_appending_concurrently_lose_nothing`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_compacting_at_once_leave_one_snapshot() {
    for db in support::databases().await {
        let one = open(&db).await;
        let two = open(&db).await;
        let mut wins = [0, 0];
        for round in 0..20 {
            append(&one, "doc", format!("change {round}").as_bytes()).await;
            let ids: Vec<i64> = load(&one, "doc").await.iter().map(|c| c.id).collect();
            let compact = |by: &str| Write::Compact {
                document: "doc".into(),
                snapshot: format!("snapshot {round} by {by}").into_bytes(),
                heads: b"h".to_vec(),
                replaces: ids.clone(),
            };
            let (a, b) = (compact("one"), compact("two"));
            let (ra, rb) = tokio::join!(one.commit(std::slice::from_ref(&a)), two.commit(std::slice::from_ref(&b)));
            let winner = match (&ra, &rb) {
                (Ok(_), Err(StoreError::CompactionConflict { .. })) => 0,
                (Err(StoreError::CompactionConflict { .. }), Ok(_)) => 1,
                other => panic!("{} round {round}: one compaction wins, one conflicts: {other:?}", db.name),
            };
            wins[winner] += 1;
            let chunks = load(&two, "doc").await;
            let by = ["one", "two"][winner];
            assert_eq!(chunks.len(), 1, "{} round {round}: {chunks:?}", db.name);
            assert_eq!(chunks[0].data, format!("snapshot {round} by {by}").into_bytes(), "{} round {round}", db.name);
        }
        assert_eq!(wins[0] + wins[1], 20, "{}", db.name);
        one.close().await;
        two.close().await;
    }
}

#[tokio::test]
async fn sync_states_are_upserted_per_document_and_peer() {
    for db in support::databases().await {
        let store = open(&db).await;
        assert_eq!(store.load_sync_state("doc", "peer-1").await.expect("loads"), None, "{}", db.name);
        let written =
            commit(&store, &[sync_state("doc", "peer-1", b"first"), sync_state("doc", "peer-2", b"other peer")]).await;
        assert_eq!(written, vec![Written::SyncState, Written::SyncState], "{}", db.name);
        commit(&store, &[sync_state("doc", "peer-1", b"second, longer state"), sync_state("doc-2", "peer-1", b"x")])
            .await;

        let state = |document: &'static str, peer: &'static str| {
            let store = store.clone();
            async move { store.load_sync_state(document, peer).await.expect("loads") }
        };
        assert_eq!(state("doc", "peer-1").await, Some(b"second, longer state".to_vec()), "{}", db.name);
        assert_eq!(state("doc", "peer-2").await, Some(b"other peer".to_vec()), "{}", db.name);
        assert_eq!(state("doc-2", "peer-1").await, Some(b"x".to_vec()), "{}", db.name);
        assert_eq!(state("doc-2", "peer-2").await, None, "{}", db.name);
        // A sync state alone does not make a stored document.
        assert_eq!(document(&store, "doc").await, None, "{}", db.name);
        store.close().await;
    }
}

#[tokio::test]
async fn documents_list_heads_size_and_chunk_counts() {
    for db in support::databases().await {
        let store = open(&db).await;
        assert!(store.documents().await.expect("lists").is_empty(), "{}", db.name);
        let before = now_ms();
        commit(&store, &[chunk("b", b"12345", b"hb1"), chunk("a", b"1", b"ha1"), chunk("a", b"22", b"ha2")]).await;
        commit(&store, &[chunk("a", &binary_blob(1000, 1), b"ha3")]).await;
        let after = now_ms();

        let documents = store.documents().await.expect("lists");
        let summary: Vec<(&str, &[u8], i64, i64)> =
            documents.iter().map(|d| (d.id.as_str(), d.heads.as_slice(), d.size, d.chunks)).collect();
        assert_eq!(summary, vec![("a", &b"ha3"[..], 1003, 3), ("b", &b"hb1"[..], 5, 1)], "{}", db.name);
        for document in &documents {
            assert!((before..=after).contains(&document.updated_at), "{}: {document:?}", db.name);
        }
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_appending_concurrently_lose_nothing() {
    const TASKS: usize = 6;
    const APPENDS: usize = 12;
    for db in support::databases().await {
        let processes = [open(&db).await, open(&db).await];
        let mut tasks = Vec::new();
        for (process, store) in processes.iter().enumerate() {
            for task in 0..TASKS {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for append in 0..APPENDS {
                        let payload = format!("p{process}-t{task}-a{append}");
                        // Both documents in one transaction, in opposite orders in the two
                        // processes: PostgreSQL must not deadlock.
                        let (first, second) = if process == 0 { ("shared", "side") } else { ("side", "shared") };
                        let writes = [chunk(first, payload.as_bytes(), b"h"), chunk(second, payload.as_bytes(), b"h")];
                        store.commit(&writes).await.map_err(|error| format!("{payload}: {error}"))?;
                    }
                    Ok::<(), String>(())
                }));
            }
        }
        for task in tasks {
            task.await.expect("the task ends").unwrap_or_else(|error| panic!("{}: {error}", db.name));
        }

        let expected: BTreeSet<String> = (0..2)
            .flat_map(|p| (0..TASKS).flat_map(move |t| (0..APPENDS).map(move |a| format!("p{p}-t{t}-a{a}"))))
            .collect();
        let fresh = open(&db).await;
        for name in ["shared", "side"] {
            let chunks = load(&fresh, name).await;
            let stored: BTreeSet<String> =
                chunks.iter().map(|chunk| String::from_utf8(chunk.data.clone()).expect("utf-8")).collect();
            assert_eq!(chunks.len(), expected.len(), "{}: {name}: no duplicate, no loss", db.name);
            assert_eq!(stored, expected, "{}: {name}", db.name);
            let size: usize = expected.iter().map(String::len).sum();
            let info = document(&fresh, name).await.expect("listed");
            assert_eq!((info.size, info.chunks), (size as i64, expected.len() as i64), "{}: {name}", db.name);
        }
        for store in processes.iter().chain([&fresh]) {
            store.close().await;
        }
    }
}

#[tokio::test]
async fn the_committer_groups_concurrent_commits() {
    const CALLS: usize = 50;
    for db in support::databases().await {
        let store = open(&db).await;
        let (committer, writer) = Committer::spawn(store.clone(), 64);
        let mut calls = Vec::new();
        for call in 0..CALLS {
            let committer = committer.clone();
            calls.push(tokio::spawn(async move {
                let writes = vec![
                    chunk("doc", format!("call {call}").as_bytes(), b"h"),
                    sync_state("doc", &format!("peer {call}"), b"s"),
                ];
                committer.commit(writes).await
            }));
        }
        let mut ids = BTreeSet::new();
        for call in calls {
            match call.await.expect("the call ends") {
                Ok(written) => match written.as_slice() {
                    [Written::Chunk { id }, Written::SyncState] => {
                        assert!(ids.insert(*id), "{}: ids are unique", db.name)
                    }
                    other => panic!("{}: a chunk and a sync state, got {other:?}", db.name),
                },
                Err(error) => panic!("{}: commit: {error}", db.name),
            }
        }
        let batches = committer.batches();
        assert!(batches < CALLS as u64 / 5, "{}: {CALLS} calls took {batches} transactions", db.name);

        // A clone keeps the writer going; it ends once every clone is dropped.
        let clone = committer.clone();
        drop(committer);
        assert!(clone.commit(vec![chunk("doc", b"last", b"h-last")]).await.is_ok(), "{}", db.name);
        drop(clone);
        writer.await.expect("the writer task ends once every committer is dropped");

        let chunks = load(&store, "doc").await;
        assert_eq!(chunks.len(), CALLS + 1, "{}", db.name);
        assert_eq!(chunks.iter().map(|chunk| chunk.id).filter(|id| ids.contains(id)).count(), CALLS, "{}", db.name);
        assert_eq!(store.load_sync_state("doc", "peer 49").await.expect("loads"), Some(b"s".to_vec()), "{}", db.name);
        assert_eq!(document(&store, "doc").await.expect("listed").heads, b"h-last", "{}", db.name);
        store.close().await;
    }
}

#[tokio::test]
async fn a_failing_request_does_not_fail_the_others_in_its_batch() {
    for db in support::databases().await {
        let store = open(&db).await;
        let (committer, writer) = Committer::spawn(store.clone(), 64);
        let mut calls = Vec::new();
        for call in 0..20 {
            let committer = committer.clone();
            let writes = if call == 7 {
                vec![
                    chunk("doc", b"from the bad request", b"h"),
                    Write::Compact {
                        document: "doc".into(),
                        snapshot: b"s".to_vec(),
                        heads: b"h".to_vec(),
                        replaces: vec![i64::MAX],
                    },
                ]
            } else {
                vec![chunk("doc", format!("good {call}").as_bytes(), b"h")]
            };
            calls.push(tokio::spawn(async move { committer.commit(writes).await }));
        }
        for (call, result) in calls.into_iter().enumerate() {
            let result = result.await.expect("the call ends");
            if call == 7 {
                assert!(matches!(result, Err(StoreError::CompactionConflict { .. })), "{}: {result:?}", db.name);
            } else {
                assert!(result.is_ok(), "{}: call {call}: {result:?}", db.name);
            }
        }
        let stored: BTreeSet<Vec<u8>> = load(&store, "doc").await.into_iter().map(|chunk| chunk.data).collect();
        let expected: BTreeSet<Vec<u8>> =
            (0..20).filter(|call| *call != 7).map(|call| format!("good {call}").into_bytes()).collect();
        assert_eq!(stored, expected, "{}: the good requests only", db.name);
        drop(committer);
        writer.await.expect("the writer task ends");
        store.close().await;
    }
}

#[tokio::test]
async fn open_explains_bad_urls() {
    let error = Store::open("mysql://u@h/db").await.expect_err("unsupported");
    assert!(matches!(error, StoreError::UnsupportedUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("sqlite:"), "{error}");

    let folder = tempfile::tempdir().expect("a temporary folder");
    let file = folder.path().join("a-file");
    std::fs::write(&file, b"not a folder").expect("writes");
    let error = Store::open(&format!("sqlite:{}/hamlet.db", file.join("sub").display())).await.expect_err("no folder");
    assert!(matches!(error, StoreError::CreateFolder { .. }), "{error:?}");

    // Nothing listens on a port the test bound and closed; the password must not show in the message.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = closed.local_addr().expect("its address").port();
    drop(closed);
    let error = Store::open(&format!("postgres://hamlet:secret@127.0.0.1:{port}/hamlet")).await.expect_err("no server");
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")) && !message.contains("secret"), "{message}");
}

#[tokio::test]
async fn sqlite_uses_a_write_ahead_log() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("nested").join("more").join("hamlet.db");
    let store = Store::open(&format!("sqlite://{}", path.display())).await.expect("opens");
    append(&store, "doc", b"data").await;
    assert!(path.exists(), "the file is created with its folders");
    let wal = path.with_file_name("hamlet.db-wal");
    assert!(wal.exists(), "journal_mode=WAL leaves {} beside the database", wal.display());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_together_agree_on_the_schema_and_the_storage_id() {
    for db in support::databases().await {
        let opened = tokio::join!(Store::open(db.url()), Store::open(db.url()), Store::open(db.url()));
        let stores =
            [opened.0, opened.1, opened.2].map(|store| store.unwrap_or_else(|error| panic!("{}: {error}", db.name)));
        let ids = tokio::join!(stores[0].storage_id(), stores[1].storage_id(), stores[2].storage_id());
        let ids = [ids.0, ids.1, ids.2].map(|id| id.unwrap_or_else(|error| panic!("{}: {error}", db.name)));
        assert!(ids.iter().all(|id| *id == ids[0]), "{}: one storage id: {ids:?}", db.name);
        for store in &stores {
            store.close().await;
        }
    }
}

#[tokio::test]
async fn an_in_memory_sqlite_store_works_for_tests() {
    let store = Store::open("sqlite::memory:").await.expect("opens");
    let (committer, writer) = Committer::spawn(store.clone(), 8);
    let first = committer.commit(vec![chunk("doc", b"one", b"h1")]);
    let second = committer.commit(vec![chunk("doc", b"two", b"h2")]);
    let (first, second) = tokio::join!(first, second);
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    assert_eq!(load(&store, "doc").await.len(), 2);
    drop(committer);
    writer.await.expect("the writer task ends");
    store.close().await;
}
