//! The words of every page — the dashboard and the account pages — in Vietnamese (the
//! default) and English: one table, [`Texts`], with a field per text, so a text missing in one
//! language does not compile. Messages with parameters are methods of [`Lang`] that match on
//! the language with no wildcard arm, for the same reason.
//!
//! The language is chosen by `?lang=vi|en` (which also sets a `lang` cookie), then the cookie,
//! then the browser's `Accept-Language`, then Vietnamese. Numbers follow each language's
//! conventions: `1.234` and `47,8%` in Vietnamese, `1,234` and `47.8%` in English; times are
//! shown in Vietnam's time zone (UTC+7).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Tiếng Việt.
    Vi,
    /// English.
    En,
}

impl Lang {
    /// Its code, for `lang=` and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// The words in this language.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Vi => &VI,
            Lang::En => &EN,
        }
    }

    /// The language of a code such as `vi`, `en-GB`.
    pub fn from_code(code: &str) -> Option<Lang> {
        match code.trim().to_ascii_lowercase().as_str() {
            c if c == "vi" || c.starts_with("vi-") => Some(Lang::Vi),
            c if c == "en" || c.starts_with("en-") => Some(Lang::En),
            _ => None,
        }
    }

    /// The language a request asks for (see the module docs), and whether it was asked by
    /// `?lang=` (then the response sets the cookie).
    pub fn of(parts: &Parts) -> (Lang, bool) {
        Lang::of_request(parts.uri.query(), &parts.headers)
    }

    /// [`Lang::of`] from a request's query and headers.
    pub fn of_request(query: Option<&str>, headers: &axum::http::HeaderMap) -> (Lang, bool) {
        let query = query.unwrap_or("");
        let asked = query.split('&').filter_map(|kv| kv.strip_prefix("lang=")).find_map(Lang::from_code);
        if let Some(lang) = asked {
            return (lang, true);
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix("lang="))
            .find_map(Lang::from_code);
        if let Some(lang) = cookie {
            return (lang, false);
        }
        let accept = headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or("");
        // The first language named that we speak, by quality.
        let mut best: Option<(f32, Lang)> = None;
        for item in accept.split(',') {
            let mut pieces = item.split(';');
            let Some(lang) = pieces.next().and_then(Lang::from_code) else { continue };
            let q = pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, lang));
            }
        }
        (best.map_or(Lang::Vi, |(_, l)| l), false)
    }

    /// An integer with thousands separators.
    pub fn int(self, n: u64) -> String {
        let digits = n.to_string();
        let sep = if self == Lang::Vi { '.' } else { ',' };
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(sep);
            }
            out.push(c);
        }
        out
    }

    /// A percentage with one decimal.
    pub fn percent(self, p: f64) -> String {
        let text = format!("{p:.1}%");
        if self == Lang::Vi { text.replace('.', ",") } else { text }
    }

    /// A time (unix ms) as a date and time in Vietnam (UTC+7).
    pub fn datetime(self, ms: i64) -> String {
        let local = ms / 1000 + 7 * 3600;
        let day = hamlet_sync_core::Day::from_unix_seconds(local);
        let (y, m, d) = day.ymd();
        let secs = local.rem_euclid(86_400);
        let (hh, mm) = (secs / 3600, (secs % 3600) / 60);
        match self {
            Lang::Vi => format!("{d:02}/{m:02}/{y} {hh:02}:{mm:02}"),
            Lang::En => format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02}"),
        }
    }

    /// A day (`YYYY-MM-DD`) as people write it.
    pub fn day(self, day: hamlet_sync_core::Day) -> String {
        let (y, m, d) = day.ymd();
        match self {
            Lang::Vi => format!("{d:02}/{m:02}/{y}"),
            Lang::En => format!("{y}-{m:02}-{d:02}"),
        }
    }

    /// How long ago `ms` was, from `now`.
    pub fn ago(self, ms: i64, now: i64) -> String {
        let minutes = (now - ms).max(0) / 60_000;
        let t = self.texts();
        if minutes < 60 {
            format!("{minutes} {}", t.minutes_ago)
        } else if minutes < 48 * 60 {
            format!("{} {}", minutes / 60, t.hours_ago)
        } else {
            format!("{} {}", minutes / (24 * 60), t.days_ago)
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of(parts).0)
    }
}

macro_rules! texts {
    ($($name:ident: $vi:expr, $en:expr;)*) => {
        /// Every word and sentence of the pages without a parameter, in one language.
        #[derive(Debug)]
        pub struct Texts {
            $(
                #[doc = $en]
                pub $name: &'static str,
            )*
        }

        /// Tiếng Việt.
        pub static VI: Texts = Texts { $($name: $vi,)* };
        /// English.
        pub static EN: Texts = Texts { $($name: $en,)* };
    };
}

texts! {
    app: "Hamlet — Tổng hợp ý kiến", "Hamlet — District feedback";
    skip: "Bỏ qua điều hướng", "Skip navigation";
    nav_campaigns: "Đợt lấy ý kiến", "Campaigns";
    nav_overview: "Tiến độ", "Progress";
    nav_results: "Kết quả", "Results";
    nav_comments: "Ý kiến", "Comments";
    nav_review: "Cần xem xét", "To review";
    nav_devices: "Thiết bị", "Devices";
    nav_admin: "Quản trị", "Administration";
    nav_audit: "Nhật ký", "Audit log";
    nav_units: "Đơn vị hành chính", "Administrative units";
    nav_manage: "Quản lý đợt", "Manage campaigns";
    language: "Ngôn ngữ", "Language";
    campaigns_title: "Các đợt lấy ý kiến", "Campaigns";
    no_campaigns: "Chưa có đợt lấy ý kiến nào.", "No campaign yet.";
    name: "Tên", "Name";
    state: "Trạng thái", "State";
    state_draft: "Đang soạn", "Draft";
    state_open: "Đang lấy ý kiến", "Open";
    state_closed: "Đã kết thúc", "Closed";
    state_published: "Đã công bố", "Published";
    schedule: "Thời gian", "Schedule";
    updated: "Cập nhật", "Updated";
    progress_title: "Tiến độ", "Progress";
    summary: "Tổng quan", "Summary";
    commune: "Xã", "Commune";
    hamlet: "Thôn, tổ dân phố", "Hamlet or residential group";
    hamlets: "Số thôn, tổ", "Hamlets";
    expected: "Cử tri dự kiến", "Expected voters";
    recorded: "Phiếu đã ghi", "Responses recorded";
    submitted: "Đã nộp", "Submitted";
    drafts: "Nháp", "Drafts";
    voided: "Đã hủy", "Voided";
    tallies: "Biên bản kiểm phiếu", "Meeting tallies";
    ballots_returned: "Phiếu thu về (họp)", "Ballots returned (meetings)";
    participation: "Tỷ lệ tham gia", "Participation";
    to_review: "Cần xem xét", "To review";
    nothing_yet: "Chưa có dữ liệu", "Nothing yet";
    hamlets_nothing: "Thôn chưa có dữ liệu", "Hamlets with nothing yet";
    silent_devices: "Thiết bị lâu chưa đồng bộ", "Silent devices";
    attention: "Cần chú ý", "Needs attention";
    show_hamlets: "Xem các thôn", "Show hamlets";
    hide_hamlets: "Ẩn các thôn", "Hide hamlets";
    devices: "Thiết bị", "Devices";
    device: "Thiết bị", "Device";
    peer: "Mã kết nối", "Peer id";
    last_sync: "Đồng bộ lần cuối", "Last sync";
    first_seen: "Lần đầu", "First seen";
    syncs: "Số lần đồng bộ", "Syncs";
    silent: "Lâu chưa đồng bộ", "Silent";
    never: "chưa bao giờ", "never";
    minutes_ago: "phút trước", "minutes ago";
    hours_ago: "giờ trước", "hours ago";
    days_ago: "ngày trước", "days ago";
    results_title: "Kết quả theo cán bộ", "Results per cadre";
    subject: "Cán bộ", "Cadre";
    position: "Chức vụ", "Position";
    total: "Tổng số ý kiến", "Answers";
    thresholds: "Ngưỡng", "Thresholds";
    crossed: "Vượt ngưỡng", "Crossed";
    not_crossed: "Không vượt ngưỡng", "Not crossed";
    suppressed: "Ẩn (nhóm nhỏ)", "Hidden (small group)";
    details: "Chi tiết", "Details";
    by_unit: "Theo đơn vị", "By unit";
    unit: "Đơn vị", "Unit";
    level_campaign: "Toàn đợt", "Whole campaign";
    level_province: "Tỉnh", "Province";
    level_district: "Huyện", "District";
    level_commune: "Xã", "Commune";
    level_hamlet: "Thôn/Tổ", "Hamlet";
    merged_into: "sáp nhập vào", "merged into";
    chart_of: "Biểu đồ tỷ lệ các mức", "Chart of the levels";
    count: "Số", "Count";
    share: "Tỷ lệ", "Share";
    comments_title: "Ý kiến của người dân", "Residents' comments";
    search: "Tìm", "Search";
    search_label: "Tìm trong ý kiến (không phân biệt dấu)", "Search comments (accents ignored)";
    all_subjects: "Tất cả cán bộ", "All cadres";
    found: "Tìm thấy", "Found";
    comment: "Ý kiến", "Comment";
    hamlet_hidden: "(thôn ít phiếu, không nêu tên)", "(small hamlet, not named)";
    previous: "Trang trước", "Previous";
    next: "Trang sau", "Next";
    review_title: "Xung đột và phiếu cần xem xét", "Conflicts and flags to review";
    review_note: "Xung đột: cùng một nội dung được sửa trên hai thiết bị; cả hai giá trị được giữ lại. Phiếu bị đánh dấu: sửa sau khi đã nộp (không được tính), giá trị không hợp lệ, biên bản không khớp.", "Conflicts: the same field edited on two devices; both values are kept. Flags: edits after submission (not counted), values that do not fit the form, tallies that do not add up.";
    show_open: "Chưa xem xét", "Not reviewed";
    show_all: "Tất cả", "All";
    kind: "Loại", "Kind";
    conflict: "Xung đột", "Conflict";
    flag: "Đánh dấu", "Flag";
    field: "Nội dung", "Field";
    values: "Các giá trị", "Values";
    shown_value: "đang hiển thị", "shown";
    written_by: "ghi bởi thiết bị", "written by device";
    reviewed: "Đã xem xét", "Reviewed";
    reviewed_by: "bởi", "by";
    mark_reviewed: "Đánh dấu đã xem xét", "Mark as reviewed";
    review_comment: "Nhận xét", "Comment";
    nothing_to_review: "Không có gì cần xem xét.", "Nothing to review.";
    flag_edited_after_seal: "Sửa sau khi nộp (không tính)", "Edited after submission (not counted)";
    flag_seal_rewritten: "Phiếu đã nộp bị ghi đè (tính theo bản nộp đầu)", "Seal written to after submission (the first seal counts)";
    flag_foreign_write: "Thiết bị khác ghi vào phiếu (không tính)", "Written by another device (not counted)";
    flag_invalid_answer: "Câu trả lời không hợp lệ", "Invalid answer";
    flag_form_version: "Sai phiên bản mẫu phiếu (không tính)", "Other form version (not counted)";
    flag_invalid_count: "Số liệu biên bản không hợp lệ (chưa tính)", "Invalid tally count (not counted until reviewed)";
    flag_tally_inconsistent: "Biên bản không khớp hoặc vượt số cử tri (chưa tính)", "Tally does not add up or exceeds the voters (not counted until reviewed)";
    flag_outside_schedule: "Ghi hoặc nộp ngoài thời gian lấy ý kiến (không tính)", "Recorded or submitted outside the schedule (not counted)";
    flag_after_publication: "Đến sau khi công bố kết quả (không tính vào kết quả đã công bố)", "Arrived after the results were published (not counted in them)";
    flag_tally_duplicate: "Biên bản nhập trùng (chưa tính)", "Tally entered twice (not counted until reviewed)";
    flag_malformed_key: "Mã không hợp lệ", "Malformed key";
    alerts_title: "Số liệu bất thường", "Implausible numbers";
    sealed_value: "giá trị đã nộp", "submitted value";
    current_value: "giá trị hiện tại", "current value";
    response: "Phiếu", "Response";
    devices_title: "Thiết bị và lần đồng bộ cuối", "Devices and their last sync";
    no_devices: "Chưa có thiết bị nào đồng bộ.", "No device has synced yet.";
    hamlet_title: "Chi tiết thôn", "Hamlet detail";
    audit_title: "Nhật ký thao tác", "Audit log";
    at: "Thời điểm", "When";
    actor: "Người thực hiện", "Who";
    action: "Thao tác", "Action";
    target: "Đối tượng", "Target";
    detail: "Chi tiết", "Detail";
    filter: "Lọc", "Filter";
    older: "Cũ hơn", "Older";
    exports: "Tải về", "Downloads";
    export_results: "Kết quả", "Results";
    export_responses: "Phiếu (không có thông tin cá nhân)", "Responses (no identities)";
    manage_title: "Quản lý các đợt lấy ý kiến", "Manage campaigns";
    new_campaign: "Tạo đợt mới", "New campaign";
    campaign_id: "Mã đợt (chữ không dấu, số, gạch ngang)", "Campaign id (letters, digits, dashes)";
    name_vi: "Tên tiếng Việt", "Name in Vietnamese";
    name_en: "Tên tiếng Anh", "Name in English";
    opens_on: "Ngày bắt đầu", "Opens on";
    closes_on: "Ngày kết thúc", "Closes on";
    create: "Tạo", "Create";
    save: "Lưu", "Save";
    edit_campaign: "Sửa đợt", "Edit campaign";
    only_draft: "Chỉ sửa được khi đợt đang soạn.", "Only a draft can be edited.";
    subjects_import: "Danh sách cán bộ (CSV: id,name,position,commune,home_hamlet)", "Cadres (CSV: id,name,position,commune,home_hamlet)";
    hamlets_import: "Thôn trong phạm vi (CSV: hamlet,expected_voters)", "Hamlets in scope (CSV: hamlet,expected_voters)";
    units_import: "Nhập đơn vị (CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into)", "Import units (CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into)";
    csv_text: "Nội dung tệp CSV (mở tệp bằng Notepad, chọn tất cả, sao chép rồi dán vào đây)", "The CSV file's content (open it in a text editor, select all, copy and paste it here)";
    import: "Nhập", "Import";
    open_campaign: "Bắt đầu lấy ý kiến", "Open";
    close_campaign: "Kết thúc", "Close";
    publish_campaign: "Công bố kết quả", "Publish";
    confirm_hint: "Thao tác này không thể hoàn tác.", "This cannot be undone.";
    done: "Đã lưu.", "Saved.";
    error: "Lỗi", "Error";
    line: "Dòng", "Line";
    units_title: "Đơn vị hành chính", "Administrative units";
    level: "Cấp", "Level";
    parent: "Trực thuộc", "Parent";
    valid: "Hiệu lực", "Valid";
    lineage: "Sáp nhập", "Lineage";
    merged_from: "hợp nhất từ", "merged from";
    from: "từ", "from";
    until: "đến", "until";
    subjects_count: "Số cán bộ", "Cadres";
    not_found: "Không tìm thấy", "Not found";
    server_error: "Máy chủ gặp lỗi; vui lòng thử lại sau.", "The server failed; please try again later.";
    back: "Quay lại", "Back";
    yes: "Có", "Yes";
    no: "Không", "No";
    nav_people: "Người dùng", "People";
    nav_all_devices: "Thiết bị", "Devices";
    sign_in: "Đăng nhập", "Sign in";
    user_name: "Tên đăng nhập", "User name";
    password: "Mật khẩu", "Password";
    bad_credentials: "Sai tên đăng nhập hoặc mật khẩu.", "Wrong user name or password.";
    too_many_attempts: "Quá nhiều lần thử sai. Vui lòng thử lại sau.", "Too many failed attempts. Try again later.";
    sign_in_failed: "Không đăng nhập được. Vui lòng thử lại.", "Could not sign in. Please try again.";
    change_password: "Đổi mật khẩu", "Change password";
    first_sign_in: "Đây là lần đăng nhập đầu tiên: hãy đặt mật khẩu mới.", "This is your first sign-in: choose a new password.";
    current_password: "Mật khẩu hiện tại", "Current password";
    new_password: "Mật khẩu mới", "New password";
    characters_or_more: "ký tự trở lên", "characters or more";
    new_password_again: "Nhập lại mật khẩu mới", "New password again";
    passwords_differ: "Hai mật khẩu mới không khớp.", "The two new passwords differ.";
    current_password_wrong: "Mật khẩu hiện tại không đúng.", "The current password is wrong.";
    people_title: "Người dùng", "People";
    person_id: "Mã", "Id";
    full_name: "Họ tên", "Name";
    role: "Vai trò", "Role";
    assigned: "Địa bàn được giao", "Assigned hamlets";
    add_person: "Thêm người dùng", "Add a person";
    role_collector: "collector (người thu thập)", "collector";
    campaign_code: "Đợt lấy ý kiến (mã)", "Campaign (id)";
    assigned_input: "Thôn, tổ dân phố được giao (mã, cách nhau bởi dấu phẩy)", "Assigned hamlets (ids, comma-separated)";
    sign_out_everywhere: "Đăng xuất mọi nơi, thu hồi mọi token", "Sign out everywhere, revoke all tokens";
    issue_code: "Cấp mã đăng ký thiết bị", "Issue a device enrollment code";
    one_time_password: "Mật khẩu dùng một lần", "One-time password";
    for_person: "Cho", "For";
    shown_once: "Chỉ hiện một lần; phải đổi ở lần đăng nhập đầu tiên.", "Shown once; it must be changed at the first sign-in.";
    enrollment_code: "Mã đăng ký thiết bị", "Device enrollment code";
    qr_code_only: "Mã QR chỉ chứa mã; người thu thập nhập địa chỉ máy chủ. Đặt --public-url để mã QR chứa cả địa chỉ.", "The QR code holds the code only; the collector types the server address. Set --public-url to put the address in it.";
    qr_opens: "Mã QR mở", "The QR code opens";
    single_use_expires: "Dùng một lần, hết hạn lúc", "Single use; expires";
    person: "Người dùng", "Person";
    device_name: "Tên thiết bị", "Device name";
    device_time: "Giờ trên máy", "Device time";
    revoked: "Đã thu hồi", "Revoked";
    revoke: "Thu hồi", "Revoke";
}

impl Lang {
    /// The note under the devices tables.
    pub fn silent_note(self, days: u32) -> String {
        match self {
            Lang::Vi => format!("Thiết bị không đồng bộ quá {days} ngày được đánh dấu."),
            Lang::En => format!("Devices that have not synced for more than {days} days are marked."),
        }
    }

    /// Why an open campaign's results lag: figures move in batches of `batch`; `pending`
    /// answers are not shown yet.
    pub fn results_batched(self, batch: u64, pending: u64) -> String {
        let (batch, pending) = (self.int(batch), self.int(pending));
        match self {
            Lang::Vi => format!(
                "Trong thời gian lấy ý kiến, số liệu của mỗi thôn chỉ được cập nhật khi có thêm ít nhất {batch} ý kiến kể từ lần cập nhật trước, để không thể suy ra từng ý kiến bằng cách so sánh trước và sau. Còn {pending} ý kiến chưa hiển thị; tất cả được hiển thị khi kết thúc lấy ý kiến."
            ),
            Lang::En => format!(
                "While the campaign is open, a hamlet's figures are updated only once at least {batch} more answers were counted there since the last update, so that no single answer can be read by comparing before and after. {pending} answers are not shown yet; all show once collection is closed."
            ),
        }
    }

    /// Published results are frozen; `later` responses or tallies came after.
    pub fn results_frozen(self, later: u64) -> String {
        let later = self.int(later);
        match self {
            Lang::Vi => format!(
                "Kết quả đã công bố và không thay đổi nữa. {later} phiếu hoặc biên bản đến hoặc thay đổi sau khi công bố: được lưu và đánh dấu để xem xét, không tính vào kết quả này."
            ),
            Lang::En => format!(
                "These results are published and no longer change. {later} responses or tallies arrived or changed after publication: they are kept and flagged for review, not counted here."
            ),
        }
    }

    /// What the results count, and the smallest group broken down.
    pub fn results_note(self, min_group: u64) -> String {
        match self {
            Lang::Vi => format!(
                "Số liệu gồm phiếu cá nhân đã nộp và biên bản kiểm phiếu tại hội nghị. Nhóm dưới {min_group} ý kiến không được chia theo mức để không thể suy ra ý kiến của từng người."
            ),
            Lang::En => format!(
                "Counts combine submitted individual responses and meeting tallies. Groups with fewer than {min_group} answers are not broken down, so that no answer can be traced to a person."
            ),
        }
    }

    /// A hamlet with more answers than expected voters.
    pub fn alert_over_voters(self, hamlet: &str, counted: u64, expected: u64) -> String {
        match self {
            Lang::Vi => format!("{hamlet}: {counted} phiếu và lá phiếu họp, nhiều hơn {expected} cử tri dự kiến"),
            Lang::En => {
                format!("{hamlet}: {counted} responses and meeting ballots, more than the {expected} expected voters")
            }
        }
    }

    /// A collector who recorded more responses in a day than the campaign allows.
    pub fn alert_busy_collector(self, hamlet: &str, who: &str, responses: u64, day: &str, limit: u64) -> String {
        match self {
            Lang::Vi => format!("{hamlet}: {who} ghi {responses} phiếu ngày {day} (giới hạn {limit})"),
            Lang::En => format!("{hamlet}: {who} recorded {responses} responses on {day} (limit {limit})"),
        }
    }

    /// A device's clock `days` off the server's: ahead when `ahead`, else behind.
    pub fn clock_off(self, days: i64, ahead: bool) -> String {
        match (self, ahead) {
            (Lang::Vi, true) => format!("đồng hồ nhanh hơn máy chủ {days} ngày"),
            (Lang::Vi, false) => format!("đồng hồ chậm hơn máy chủ {days} ngày"),
            (Lang::En, ahead) => {
                let unit = if days == 1 { "day" } else { "days" };
                let side = if ahead { "ahead of" } else { "behind" };
                format!("clock {days} {unit} {side} the server")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn lang(uri: &str, headers: &[(&str, &str)]) -> (Lang, bool) {
        let mut request = Request::builder().uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (parts, ()) = request.body(()).expect("request").into_parts();
        Lang::of(&parts)
    }

    #[test]
    fn the_language_comes_from_the_query_the_cookie_then_the_browser() {
        assert_eq!(lang("/", &[]), (Lang::Vi, false));
        assert_eq!(lang("/?lang=en", &[("cookie", "lang=vi")]), (Lang::En, true));
        assert_eq!(lang("/", &[("cookie", "a=b; lang=en")]), (Lang::En, false));
        assert_eq!(lang("/", &[("accept-language", "fr-FR, en-US;q=0.8, vi;q=0.9")]), (Lang::Vi, false));
        assert_eq!(lang("/", &[("accept-language", "en-GB,en;q=0.9")]), (Lang::En, false));
    }

    #[test]
    fn numbers_and_times_follow_the_language() {
        assert_eq!(Lang::Vi.int(1_234_567), "1.234.567");
        assert_eq!(Lang::En.int(1_234), "1,234");
        assert_eq!(Lang::Vi.int(999), "999");
        assert_eq!(Lang::Vi.percent(47.8), "47,8%");
        assert_eq!(Lang::En.percent(47.84), "47.8%");
        // 2025-06-01 17:30 UTC is 00:30 the next day in Vietnam.
        let ms = (hamlet_sync_core::Day::from_ymd(2025, 6, 1).expect("day").unix_seconds() + 17 * 3600 + 1800) * 1000;
        assert_eq!(Lang::Vi.datetime(ms), "02/06/2025 00:30");
        assert_eq!(Lang::En.ago(0, 3 * 86_400_000), "3 days ago");
    }
}
