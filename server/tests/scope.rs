//! Who is evaluated where, as the district sets it up: the subjects file's optional columns
//! (category, post, scope; old files still import), the ballots the server computes from the
//! scopes and hands to devices in the campaign document, and the hamlets left out of a campaign
//! because nobody on its list is evaluated there — on SQLite and PostgreSQL.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod district;
mod support;

use district::{admin, harness};
use hamlet_server::district::{DistrictError, campaigns, catalog};
use hamlet_sync_core::automerge::Automerge;
use hamlet_sync_core::campaign_doc::read_campaign;
use hamlet_sync_core::{
    CAMPAIGN_VERSION, CampaignState, DocumentId, EvaluationScope, Post, SubjectCategory, SubjectId, fixtures,
};

const OLD_FILE: &str = "id,name,position,commune,home_hamlet\n\
    ong-an,Nguyễn Văn An,Chủ tịch UBND xã,xa-a,thon-tay\n";

const NEW_FILE: &str = "id,name,position,commune,home_hamlet,category,post,scope\n\
    ong-an,Nguyễn Văn An,Chủ tịch UBND xã,xa-a,thon-tay,can_bo,Chủ tịch UBND xã,commune\n\
    ba-binh,Trần Thị Bình,Bí thư Đảng ủy,xa-a,thon-dong,Cán bộ,bi_thu,\n\
    ong-cuong,Lê Văn Cường,Công chức Tư pháp - Hộ tịch,xa-a,thon-tay,cong_chuc,other,thon-dong\n";

fn ids(list: &[&str]) -> Vec<SubjectId> {
    list.iter().map(|s| fixtures::subject(s)).collect()
}

#[tokio::test]
async fn the_subjects_file_sets_category_post_and_scope_and_the_ballots_follow() {
    for db in support::databases().await {
        let h = harness(db.url()).await;
        let csv = catalog::units_csv(fixtures::unit_tree().units());
        campaigns::import_units_text(&h.district, &admin(), &csv).await.unwrap();
        let mut draft = fixtures::campaign();
        draft.schema_version = CAMPAIGN_VERSION;
        campaigns::create(&h.district, &admin(), draft.clone()).await.unwrap();
        let id = draft.id.as_str();

        // A file of the old shape still imports: every cadre evaluated at home.
        assert_eq!(campaigns::replace_subjects(&h.district, &admin(), id, OLD_FILE).await.unwrap(), 1);
        let c = h.district.catalog().require(id).await.unwrap();
        assert_eq!((c.subjects[0].category, c.subjects[0].post), (None, None), "{}", db.name);
        assert_eq!(c.subjects[0].scope, EvaluationScope::Home, "{}", db.name);
        assert_eq!(c.ballot(&fixtures::hamlet("thon-tay")), ids(&["ong-an"]), "{}", db.name);
        assert!(!c.has_hamlet(&fixtures::hamlet("thon-dong")), "{}: nobody evaluated there", db.name);

        // The new columns, by code or by their Vietnamese names.
        assert_eq!(campaigns::replace_subjects(&h.district, &admin(), id, NEW_FILE).await.unwrap(), 3);
        let c = h.district.catalog().require(id).await.unwrap();
        let s = &c.subjects;
        assert_eq!((s[0].category, s[0].post), (Some(SubjectCategory::CanBo), Some(Post::ChuTichUbnd)), "{}", db.name);
        assert_eq!((s[1].category, s[1].post), (Some(SubjectCategory::CanBo), Some(Post::BiThu)), "{}", db.name);
        assert_eq!((s[2].category, s[2].post), (Some(SubjectCategory::CongChuc), Some(Post::Other)), "{}", db.name);
        assert_eq!(s[0].scope, EvaluationScope::Commune, "{}", db.name);
        assert_eq!(s[2].scope, EvaluationScope::Hamlets(vec![fixtures::hamlet("thon-dong")]), "{}", db.name);
        assert_eq!(c.ballot(&fixtures::hamlet("thon-dong")), ids(&["ong-an", "ba-binh", "ong-cuong"]), "{}", db.name);
        assert_eq!(c.ballot(&fixtures::hamlet("thon-tay")), ids(&["ong-an", "ong-cuong"]), "{}", db.name);
        assert!(!c.has_hamlet(&fixtures::hamlet("to-1")), "{}: xa-b has no cadre on the list", db.name);

        // Opening freezes the ballots; devices read them in the campaign document.
        let open = campaigns::transition(&h.district, &admin(), id, CampaignState::Open).await.unwrap();
        let mut doc = Automerge::new();
        h.phone(1).sync_document(DocumentId::for_campaign(&open.id), &mut doc).await.unwrap();
        let read = read_campaign(&doc).unwrap();
        assert_eq!(read, open, "{}", db.name);
        assert_eq!(read.ballot(&fixtures::hamlet("thon-tay")), ids(&["ong-an", "ong-cuong"]), "{}", db.name);
    }
}

#[tokio::test]
async fn a_subjects_file_with_an_unknown_category_or_scope_is_refused_with_its_line() {
    let tree = fixtures::unit_tree();
    let check = |text: &str, fragment: &str| match catalog::subjects_from_csv(text, &tree) {
        Err(DistrictError::Invalid { message, .. }) => assert!(message.contains(fragment), "{message}"),
        other => panic!("expected a refusal naming {fragment:?}, got {other:?}"),
    };
    let header = "id,name,position,commune,home_hamlet,category,post,scope\n";
    check(&format!("{header}ong-an,An,Chủ tịch,xa-a,thon-tay,chief,,\n"), "line 2: category \"chief\"");
    check(&format!("{header}ong-an,An,Chủ tịch,xa-a,thon-tay,,king,\n"), "post \"king\"");
    check(&format!("{header}ong-an,An,Chủ tịch,xa-a,thon-tay,,,thon-xa\n"), "scope: thon-xa is not a known hamlet");
}
