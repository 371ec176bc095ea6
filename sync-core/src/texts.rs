//! Every word Hamlet shows people — the district dashboard, the account pages and the
//! collector command — in Vietnamese (the default) and English.
//!
//! One table, [`Texts`], with a field per text: a text missing in one language does not
//! compile. Messages with parameters are methods of [`Lang`] that match on the language with
//! no wildcard arm, for the same reason. Numbers follow each language's conventions (`1.234`
//! and `47,8%` in Vietnamese, `1,234` and `47.8%` in English); times are shown in Vietnam's
//! time zone (UTC+7). How a request or a command line picks its language is the business of
//! the server and the command, not of this table.
//!
//! ```
//! use hamlet_sync_core::texts::Lang;
//!
//! assert_eq!(Lang::Vi.texts().sign_in, "Đăng nhập");
//! assert_eq!(Lang::En.texts().sign_in, "Sign in");
//! assert_eq!(Lang::from_code("en-GB"), Some(Lang::En));
//! assert_eq!(Lang::Vi.int(1_234), "1.234");
//! assert_eq!(Lang::En.silent_note(7), "Devices that have not synced for more than 7 days are marked.");
//! ```

use crate::Day;

/// A language Hamlet speaks.
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

    /// One of a label's two texts (a form's, a campaign's name): the English one in English
    /// unless it is empty, else the Vietnamese one.
    pub fn pick<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        if self == Lang::En && !en.is_empty() { en } else { vi }
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
        let day = Day::from_unix_seconds(local);
        let (y, m, d) = day.ymd();
        let secs = local.rem_euclid(86_400);
        let (hh, mm) = (secs / 3600, (secs % 3600) / 60);
        match self {
            Lang::Vi => format!("{d:02}/{m:02}/{y} {hh:02}:{mm:02}"),
            Lang::En => format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02}"),
        }
    }

    /// A day (`YYYY-MM-DD`) as people write it.
    pub fn day(self, day: Day) -> String {
        let (y, m, d) = day.ymd();
        match self {
            Lang::Vi => format!("{d:02}/{m:02}/{y}"),
            Lang::En => format!("{y}-{m:02}-{d:02}"),
        }
    }

    /// How long ago `ms` was, from `now` (both unix ms, handed in: this module has no clock).
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

macro_rules! texts {
    ($($name:ident: $vi:expr, $en:expr;)*) => {
        /// Every word and sentence without a parameter, of the pages and of the collector
        /// command, in one language.
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
    // The pages: the dashboard and the account pages.
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
    category: "Loại", "Category";
    post: "Chức danh", "Post";
    home_hamlet: "Nơi cư trú", "Lives in";
    evaluated_in: "Lấy ý kiến tại", "Evaluated in";
    evaluates: "Lấy ý kiến về", "Evaluates";
    scope_home: "Thôn, tổ dân phố nơi cư trú", "Their own hamlet";
    scope_commune: "Toàn xã", "The whole commune";
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
    flag_sealed_unreadable: "Phiếu niêm phong không mở được hoặc bị sửa (không tính)", "Sealed answers do not open or were altered (not counted)";
    flag_unsealed: "Câu trả lời không được niêm phong (không tính)", "Answer written unsealed (not counted)";
    flag_malformed_key: "Mã không hợp lệ", "Malformed key";
    flag_outside_ballot: "Trả lời về cán bộ không có trên phiếu của thôn này (không tính)", "An answer about a cadre not on this hamlet's ballot (not counted)";
    campaign_key_warning: "Khi mở đợt lấy ý kiến, máy chủ tạo khóa riêng của đợt: ý kiến được niêm phong trên điện thoại và chỉ khóa này mở được. Mất khóa là mất toàn bộ ý kiến của đợt: sao lưu ngay bằng lệnh hamlet-server campaign-key export và cất bản sao lưu cùng mật khẩu ở hai nơi riêng.", "Opening the campaign makes its own key: answers are sealed on the phones and only this key opens them. Losing the key loses every answer of the campaign: back it up at once with hamlet-server campaign-key export, and keep the backup and its passphrase apart.";
    campaign_key_held: "Khóa công khai của đợt:", "The campaign's public key:";
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
    subjects_import: "Danh sách cán bộ (CSV: id,name,position,commune,home_hamlet; có thể thêm category,post,scope)", "Cadres (CSV: id,name,position,commune,home_hamlet; optionally category,post,scope)";
    hamlets_import: "Thôn trong phạm vi (CSV: hamlet,expected_voters)", "Hamlets in scope (CSV: hamlet,expected_voters)";
    units_import: "Nhập đơn vị (CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into)", "Import units (CSV: id,name,level,parent,valid_from,valid_until,merged_from,merged_into)";
    csv_text: "Nội dung tệp CSV (mở tệp bằng Notepad, chọn tất cả, sao chép rồi dán vào đây)", "The CSV file's content (open it in a text editor, select all, copy and paste it here)";
    import: "Nhập", "Import";
    open_campaign: "Bắt đầu lấy ý kiến", "Open";
    close_campaign: "Kết thúc", "Close";
    publish_campaign: "Công bố kết quả", "Publish";
    confirm_hint: "Thao tác này không thể hoàn tác.", "This cannot be undone.";
    confirm_open: "Tôi hiểu: điện thoại sẽ tải đợt này về và bắt đầu ghi ý kiến; sau đó không thể sửa cán bộ, thôn và ngày nữa.", "I understand: phones download this campaign and start recording; its cadres, hamlets and dates can no longer be changed.";
    confirm_close: "Tôi hiểu: đợt kết thúc và không mở lại được; kết quả hiện mọi ý kiến đã tính.", "I understand: the campaign ends and cannot be reopened; the results show every counted answer.";
    confirm_publish: "Tôi hiểu: kết quả được chốt như hiện nay; ý kiến đến sau vẫn được giữ và đưa vào mục cần xem xét, không tính vào kết quả đã công bố.", "I understand: the results are frozen as they stand; answers that arrive later are kept and listed for review, not counted in the published results.";
    confirm_revoke: "Tôi hiểu: thiết bị này không đồng bộ được nữa; những gì nó chưa gửi vẫn nằm trên máy.", "I understand: this device can no longer sync; what it has not sent stays on it.";
    confirm_required: "Hãy đánh dấu ô xác nhận trước khi thực hiện thao tác không thể hoàn tác này.", "Tick the confirmation box first: this cannot be undone.";
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
    sign_out: "Đăng xuất", "Sign out";
    hamlets_need_campaign: "Hãy chọn đợt lấy ý kiến mà các thôn, tổ dân phố này thuộc về.", "Give the campaign these hamlets belong to.";
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

    // The commune relay's status page (`hamlet-server relay`).
    relay_title: "Trạm chuyển tiếp của xã", "Commune relay";
    relay_intro: "Máy điện thoại trong văn phòng đồng bộ với trạm này; trạm chuyển dữ liệu lên huyện khi có đường truyền.", "Phones in the office sync with this relay; it forwards to the district whenever its uplink is up.";
    relay_uplink: "Đường truyền lên huyện", "Uplink to the district";
    relay_district: "Máy chủ huyện", "District server";
    relay_up: "Đang thông", "Up";
    relay_down: "Đang mất", "Down";
    relay_last_reached: "Lần cuối tới được huyện", "Last reached the district";
    relay_last_tried: "Lần thử gần nhất", "Last tried";
    relay_last_error: "Lỗi gần nhất", "Last error";
    relay_never: "Chưa lần nào", "Never";
    relay_hamlets: "Việc mỗi thôn còn phải gửi lên huyện", "What each hamlet still has to send";
    relay_pending: "Thay đổi chưa tới huyện", "Changes not yet at the district";
    relay_all_sent: "Đã tới huyện hết", "All at the district";
    relay_nothing_yet: "Chưa có dữ liệu", "Nothing yet";
    relay_not_enrolled: "Trạm chưa được đăng ký với huyện.", "This relay is not enrolled at the district.";

    // The collector command (`hamlet-collector`).
    device_enrolled: "Đã đăng ký thiết bị", "Device enrolled";
    collector: "Người thu thập", "Collector";
    server: "Máy chủ", "Server";
    campaign: "Đợt lấy ý kiến", "Campaign";
    hamlet_list: "Thôn, tổ dân phố", "Hamlets";
    not_downloaded: "chưa tải về: hãy đồng bộ", "not downloaded yet: sync first";
    response_recorded: "Đã ghi phiếu", "Response recorded";
    response_submitted: "Đã nộp phiếu", "Response submitted";
    response_not_submitted: "Chưa nộp được phiếu", "The response was not submitted";
    kept_as_draft: "Phiếu được giữ là phiếu nháp (đừng ghi lại, sẽ bị trùng): sửa bằng `edit`, rồi `submit`", "It is kept as a draft (do not record it again: that would make a duplicate); complete it with `edit`, then `submit`";
    response_voided: "Đã hủy phiếu", "Response voided";
    response_edited: "Đã sửa phiếu", "Response edited";
    submitted_response_edited: "Đã sửa phiếu đã nộp: thay đổi được lưu và đánh dấu, nhưng không được tính", "Edited a submitted response: the change is kept and flagged, but not counted";
    tally_recorded: "Đã ghi kết quả kiểm phiếu", "Meeting tally recorded";
    no_responses: "Không có phiếu nào", "No responses";
    recorded_today: "Ghi hôm nay", "Recorded today";
    draft_responses: "Phiếu nháp", "Drafts";
    not_acknowledged: "Đã nộp, máy chủ chưa xác nhận", "Submitted, not yet acknowledged";
    acknowledged: "Máy chủ đã xác nhận", "Acknowledged by the server";
    syncing: "Đang đồng bộ", "Syncing";
    sync_done: "Đồng bộ xong", "Sync complete";
    sent: "Đã gửi", "Sent";
    received: "Đã nhận", "Received";
    changes: "thay đổi", "changes";
    bytes: "byte", "bytes";
    round_trips: "Số lượt trao đổi", "Round trips";
    connections: "Số lần kết nối", "Connections";
    newly_acknowledged: "Phiếu vừa được xác nhận", "Newly acknowledged";
    not_on_server: "Máy chủ chưa có tài liệu", "Not on the server yet";
    retrying: "Kết nối lỗi, thử lại sau", "Connection failed, retrying in";
    bundle_exported: "Đã xuất gói dữ liệu", "Bundle exported";
    bundle_imported: "Đã nhập gói dữ liệu", "Bundle imported";
    not_assigned_here: "Bỏ qua (không thuộc thôn được giao)", "Skipped (not assigned here)";
    bundle_incomplete: "Chưa đủ (thiếu dữ liệu trước đó: đồng bộ rồi nhập lại)", "Incomplete (earlier data missing: sync, then import again)";
    changes_refused: "Từ chối (máy chủ sẽ không nhận các thay đổi này từ máy này)", "Refused (the server would not take these changes from this phone)";
    first_sync_failed: "Đã đăng ký, nhưng lần đồng bộ đầu tiên chưa được (đồng bộ lại sau)", "Enrolled, but the first sync failed (sync again later)";
    answer: "Trả lời", "Answer";
    required: "bắt buộc", "required";
    choose: "Chọn", "Choose";
    range_from: "Từ", "From";
    yes_or_no: "có / không", "yes / no";
    enter_to_skip: "Enter để bỏ qua", "Enter to skip";
    submit_now: "Nộp phiếu ngay? (c/k)", "Submit now? (y/n)";
}

impl Lang {
    /// A subject's category.
    pub fn category(self, category: crate::SubjectCategory) -> &'static str {
        use crate::SubjectCategory as C;
        match (self, category) {
            (Lang::Vi, C::CanBo) => "Cán bộ",
            (Lang::En, C::CanBo) => "Cadre (elected or appointed)",
            (Lang::Vi, C::CongChuc) => "Công chức",
            (Lang::En, C::CongChuc) => "Civil servant",
            (Lang::Vi, C::KhongChuyenTrach) => "Người hoạt động không chuyên trách",
            (Lang::En, C::KhongChuyenTrach) => "Non-specialised worker",
        }
    }

    /// A subject's post.
    pub fn post(self, post: crate::Post) -> &'static str {
        use crate::Post as P;
        match (self, post) {
            (Lang::Vi, P::BiThu) => "Bí thư Đảng ủy",
            (Lang::En, P::BiThu) => "Party committee secretary",
            (Lang::Vi, P::PhoBiThu) => "Phó Bí thư Đảng ủy",
            (Lang::En, P::PhoBiThu) => "Deputy party secretary",
            (Lang::Vi, P::ChuTichHdnd) => "Chủ tịch HĐND",
            (Lang::En, P::ChuTichHdnd) => "Chair of the People's Council",
            (Lang::Vi, P::PhoChuTichHdnd) => "Phó Chủ tịch HĐND",
            (Lang::En, P::PhoChuTichHdnd) => "Vice-chair of the People's Council",
            (Lang::Vi, P::ChuTichUbnd) => "Chủ tịch UBND",
            (Lang::En, P::ChuTichUbnd) => "Chair of the People's Committee",
            (Lang::Vi, P::PhoChuTichUbnd) => "Phó Chủ tịch UBND",
            (Lang::En, P::PhoChuTichUbnd) => "Vice-chair of the People's Committee",
            (Lang::Vi, P::ChuTichMttq) => "Chủ tịch Ủy ban MTTQ",
            (Lang::En, P::ChuTichMttq) => "Chair of the Fatherland Front committee",
            (Lang::Vi, P::TruongDoanThe) => "Người đứng đầu đoàn thể",
            (Lang::En, P::TruongDoanThe) => "Head of a mass organisation",
            (Lang::Vi, P::Other) => "Chức danh khác",
            (Lang::En, P::Other) => "Another post",
        }
    }

    /// Hamlets named in an assignment that are not in the campaign's scope.
    pub fn not_campaign_hamlets(self, hamlets: &[&str], campaign: &str, known: &[&str]) -> String {
        let (hamlets, known) = (hamlets.join(", "), known.join(", "));
        match self {
            Lang::Vi => format!("Không thuộc đợt {campaign}: {hamlets}. Các thôn, tổ dân phố của đợt: {known}."),
            Lang::En => format!("Not hamlets of campaign {campaign}: {hamlets}. Its hamlets: {known}."),
        }
    }

    /// An assignment to a campaign that does not exist.
    pub fn no_such_campaign(self, campaign: &str) -> String {
        match self {
            Lang::Vi => format!("Không có đợt lấy ý kiến nào mã \"{campaign}\"."),
            Lang::En => format!("There is no campaign \"{campaign}\"."),
        }
    }

    /// A response id given by its first characters, which begin more than one id.
    pub fn ambiguous_response(self, prefix: &str, ids: &[&str]) -> String {
        let ids = ids.join(", ");
        match self {
            Lang::Vi => format!("\"{prefix}\" là phần đầu của nhiều mã phiếu ({ids}): hãy gõ thêm vài ký tự."),
            Lang::En => format!("\"{prefix}\" begins several response ids ({ids}): type a few more characters."),
        }
    }

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

    #[test]
    fn numbers_and_times_follow_the_language() {
        assert_eq!(Lang::Vi.int(1_234_567), "1.234.567");
        assert_eq!(Lang::En.int(1_234), "1,234");
        assert_eq!(Lang::Vi.int(999), "999");
        assert_eq!(Lang::Vi.percent(47.8), "47,8%");
        assert_eq!(Lang::En.percent(47.84), "47.8%");
        // 2025-06-01 17:30 UTC is 00:30 the next day in Vietnam.
        let ms = (Day::from_ymd(2025, 6, 1).expect("day").unix_seconds() + 17 * 3600 + 1800) * 1000;
        assert_eq!(Lang::Vi.datetime(ms), "02/06/2025 00:30");
        assert_eq!(Lang::En.ago(0, 3 * 86_400_000), "3 days ago");
    }

    #[test]
    fn codes_read_back_and_labels_fall_back_to_vietnamese() {
        for lang in [Lang::Vi, Lang::En] {
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
        }
        assert_eq!(Lang::from_code(" EN-us "), Some(Lang::En));
        assert_eq!(Lang::from_code("fr"), None);
        assert_eq!(Lang::En.pick("Thôn", ""), "Thôn");
        assert_eq!(Lang::En.pick("Thôn", "Hamlet"), "Hamlet");
        assert_eq!(Lang::Vi.pick("Thôn", "Hamlet"), "Thôn");
    }
}
