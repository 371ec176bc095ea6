//! The command's words, in Vietnamese (the default) and English.

use clap::ValueEnum;

/// The language of the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Tiếng Việt.
    Vi,
    /// English.
    En,
}

/// One message; [`Lang::text`] gives its words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    Enrolled,
    Collector,
    Server,
    Campaign,
    Hamlets,
    NotDownloaded,
    State,
    Recorded,
    Submitted,
    NotSubmitted,
    DraftKept,
    Voided,
    Edited,
    EditedFlagged,
    TallyRecorded,
    NoResponses,
    RecordedToday,
    Drafts,
    Pending,
    Acknowledged,
    VoidedCount,
    Syncing,
    SyncDone,
    Sent,
    Received,
    Changes,
    Bytes,
    RoundTrips,
    Attempts,
    NewlyAcknowledged,
    Unavailable,
    Retrying,
    Exported,
    Imported,
    Skipped,
    Incomplete,
    Refused,
    FirstSyncFailed,
    Error,
    Answer,
    Required,
    Choices,
    Range,
    SkipHint,
    SubmitNow,
}

impl Lang {
    /// The words of `msg`.
    pub fn text(self, msg: Msg) -> &'static str {
        use Msg::*;
        let (vi, en) = match msg {
            Enrolled => ("Đã đăng ký thiết bị", "Device enrolled"),
            Collector => ("Người thu thập", "Collector"),
            Server => ("Máy chủ", "Server"),
            Campaign => ("Đợt lấy ý kiến", "Campaign"),
            Hamlets => ("Thôn, tổ dân phố", "Hamlets"),
            NotDownloaded => ("chưa tải về: hãy đồng bộ", "not downloaded yet: sync first"),
            State => ("Trạng thái", "State"),
            Recorded => ("Đã ghi phiếu", "Response recorded"),
            Submitted => ("Đã nộp phiếu", "Response submitted"),
            NotSubmitted => ("Chưa nộp được phiếu", "The response was not submitted"),
            DraftKept => (
                "Phiếu được giữ là phiếu nháp (đừng ghi lại, sẽ bị trùng): sửa bằng `edit`, rồi `submit`",
                "It is kept as a draft (do not record it again: that would make a duplicate); complete it with `edit`, then `submit`",
            ),
            Voided => ("Đã hủy phiếu", "Response voided"),
            Edited => ("Đã sửa phiếu", "Response edited"),
            EditedFlagged => (
                "Đã sửa phiếu đã nộp: thay đổi được lưu và đánh dấu, nhưng không được tính",
                "Edited a submitted response: the change is kept and flagged, but not counted",
            ),
            TallyRecorded => ("Đã ghi kết quả kiểm phiếu", "Meeting tally recorded"),
            NoResponses => ("Không có phiếu nào", "No responses"),
            RecordedToday => ("Ghi hôm nay", "Recorded today"),
            Drafts => ("Phiếu nháp", "Drafts"),
            Pending => ("Đã nộp, máy chủ chưa xác nhận", "Submitted, not yet acknowledged"),
            Acknowledged => ("Máy chủ đã xác nhận", "Acknowledged by the server"),
            VoidedCount => ("Đã hủy", "Voided"),
            Syncing => ("Đang đồng bộ", "Syncing"),
            SyncDone => ("Đồng bộ xong", "Sync complete"),
            Sent => ("Đã gửi", "Sent"),
            Received => ("Đã nhận", "Received"),
            Changes => ("thay đổi", "changes"),
            Bytes => ("byte", "bytes"),
            RoundTrips => ("Số lượt trao đổi", "Round trips"),
            Attempts => ("Số lần kết nối", "Connections"),
            NewlyAcknowledged => ("Phiếu vừa được xác nhận", "Newly acknowledged"),
            Unavailable => ("Máy chủ chưa có tài liệu", "Not on the server yet"),
            Retrying => ("Kết nối lỗi, thử lại sau", "Connection failed, retrying in"),
            Exported => ("Đã xuất gói dữ liệu", "Bundle exported"),
            Imported => ("Đã nhập gói dữ liệu", "Bundle imported"),
            Skipped => ("Bỏ qua (không thuộc thôn được giao)", "Skipped (not assigned here)"),
            Incomplete => (
                "Chưa đủ (thiếu dữ liệu trước đó: đồng bộ rồi nhập lại)",
                "Incomplete (earlier data missing: sync, then import again)",
            ),
            Refused => (
                "Từ chối (máy chủ sẽ không nhận các thay đổi này từ máy này)",
                "Refused (the server would not take these changes from this phone)",
            ),
            FirstSyncFailed => (
                "Đã đăng ký, nhưng lần đồng bộ đầu tiên chưa được (đồng bộ lại sau)",
                "Enrolled, but the first sync failed (sync again later)",
            ),
            Error => ("Lỗi", "Error"),
            Answer => ("Trả lời", "Answer"),
            Required => ("bắt buộc", "required"),
            Choices => ("Chọn", "Choose"),
            Range => ("Từ", "From"),
            SkipHint => ("Enter để bỏ qua", "Enter to skip"),
            SubmitNow => ("Nộp phiếu ngay? (c/k)", "Submit now? (y/n)"),
        };
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }

    /// A label in this language.
    pub fn pick<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        if self == Lang::En && !en.is_empty() { en } else { vi }
    }
}
