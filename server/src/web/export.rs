//! Exports over HTTP: the district's export, streamed as the response body.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hamlet_sync_core::Campaign;

use crate::audit::Actor;
use crate::district::export::{self, Kind};
use crate::district::{District, DistrictError};

/// The response streaming the export `kind` of `campaign` for `actor`. Since the status line
/// is sent before the first row, a failure half-way ends the body with an error, which aborts
/// the connection: the client never mistakes a truncated file for a whole one.
pub async fn response(
    district: &District,
    campaign: Arc<Campaign>,
    kind: Kind,
    actor: &Actor,
) -> Result<Response, DistrictError> {
    let export = export::start(district, campaign, kind, actor).await?;
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    let stream = futures_util::stream::unfold(export.chunks, |mut rx| async move {
        rx.recv().await.map(|item| (item.map(Bytes::from), rx))
    });
    let headers = [(header::CONTENT_TYPE, export.content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)];
    Ok((headers, Body::from_stream(stream)).into_response())
}
