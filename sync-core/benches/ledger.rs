//! Ledger benchmarks: recording, saving, loading and merging at the size of one busy hamlet.
//!
//! `cargo bench -p hamlet-sync-core --bench ledger`. Figures are kept in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use hamlet_sync_core::automerge::{ActorId, Automerge};
use hamlet_sync_core::{AnswerKey, AnswerValue, Campaign, Day, Ledger, Level, NewResponse, fixtures};

const SUBJECTS: usize = 20;

fn today() -> Day {
    Day::from_ymd(2025, 6, 2).unwrap_or_else(|| unreachable!())
}

/// A response of the 20-subject form: every subject rated, a comment on every fourth, and the
/// two once-per-response questions.
fn response(campaign: &Campaign, n: usize) -> NewResponse {
    let levels = [Level::TinNhiemCao, Level::TinNhiem, Level::TinNhiemThap];
    let mut answers = BTreeMap::new();
    for (i, s) in campaign.subjects.iter().enumerate() {
        let level = levels[(n + i) % 3];
        answers
            .insert(AnswerKey::for_subject(fixtures::question("tin-nhiem"), s.id.clone()), AnswerValue::Level(level));
        if i.is_multiple_of(4) {
            answers.insert(
                AnswerKey::for_subject(fixtures::question("y-kien"), s.id.clone()),
                AnswerValue::Comment(format!("Ý kiến số {n} về cán bộ {i}: cần gần dân hơn.")),
            );
        }
    }
    answers.insert(AnswerKey::once(fixtures::question("du-hop")), AnswerValue::YesNo(n.is_multiple_of(2)));
    answers.insert(AnswerKey::once(fixtures::question("so-nguoi")), AnswerValue::Number((n % 7 + 1) as i64));
    NewResponse {
        id: format!("r-{n:08}").parse().unwrap_or_else(|_| unreachable!()),
        collector: "thu-ha".parse().unwrap_or_else(|_| unreachable!()),
        answers,
    }
}

fn filled(campaign: &Campaign, actor: ActorId, range: std::ops::Range<usize>) -> Ledger {
    let mut l = Ledger::create(&campaign.id, &fixtures::hamlet("thon-dong"), actor);
    for n in range {
        l.record(campaign, &response(campaign, n), today()).unwrap_or_else(|e| panic!("{e}"));
    }
    l
}

fn benches(c: &mut Criterion) {
    let campaign = fixtures::open_campaign_with_subjects(SUBJECTS);
    let mut group = c.benchmark_group("ledger");
    group.sample_size(10).measurement_time(Duration::from_secs(10));

    group.bench_function("record 2000 responses", |b| {
        b.iter(|| black_box(filled(&campaign, ActorId::random(), 0..2000)))
    });

    let full = filled(&campaign, ActorId::random(), 0..2000);
    group.bench_function("record 1 response into a ledger of 2000", |b| {
        let mut n = 2000;
        b.iter_batched_ref(
            || full.clone(),
            |l| {
                n += 1;
                l.record(&campaign, &response(&campaign, n), today()).unwrap_or_else(|e| panic!("{e}"))
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("save a ledger of 2000", |b| b.iter(|| black_box(full.doc().save())));

    let saved = full.doc().save();
    println!("saved ledger of 2000 responses: {} bytes", saved.len());
    group.bench_function("load a ledger of 2000", |b| {
        b.iter(|| black_box(Ledger::load(&saved, ActorId::random()).unwrap_or_else(|e| panic!("{e}"))))
    });

    let devices: Vec<Vec<u8>> =
        (0..10).map(|d| filled(&campaign, ActorId::random(), d * 200..(d + 1) * 200).doc().save()).collect();
    group.bench_function("merge 10 devices x 200 responses", |b| {
        b.iter(|| {
            let mut doc = Automerge::new();
            for bytes in &devices {
                doc.load_incremental(bytes).unwrap_or_else(|e| panic!("{e}"));
            }
            black_box(doc)
        })
    });
    group.finish();
}

criterion_group!(ledger, benches);
criterion_main!(ledger);
