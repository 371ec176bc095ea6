//! The local store holds up: one writer at a time, and a store damaged before that rule existed
//! opens, keeps everything that loads and says what it set aside.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use hamlet_mobile::Collector;
use hamlet_mobile::CollectorError;
use hamlet_mobile::store::StoreError;

const CAMPAIGN: &str = "tin-nhiem-2025";

fn set_up(phone: &Collector) {
    phone
        .setup_without_enrollment(
            "127.0.0.1:9",
            "nguyen-van-a",
            &[(CAMPAIGN.into(), vec!["thon-dong".into(), "thon-tay".into()])],
        )
        .expect("set up");
}

#[test]
fn a_second_opener_of_a_store_is_told_it_is_in_use_and_the_first_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let first = Collector::open(&path).expect("opens");
    set_up(&first);

    let second = Collector::open(&path);
    match second {
        Err(CollectorError::Store(StoreError::InUse { .. })) => {}
        Err(e) => panic!("the wrong error: {e}"),
        Ok(_) => panic!("a second writer opened a store in use"),
    }
    let message = Collector::open(&path).map(|_| ()).expect_err("in use").to_string();
    assert!(message.contains("in use by another program"), "{message}");
    // The first opener is not disturbed.
    assert_eq!(first.counts().expect("counts").drafts, 0);
    assert!(first.enrollment().is_some());

    // Once the first is closed, the store opens again.
    drop(first);
    let again = Collector::open(&path).expect("opens once the first is closed");
    assert_eq!(again.enrollment().map(|e| e.collector), Some("nguyen-van-a".to_owned()));
}
