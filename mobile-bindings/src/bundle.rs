//! Bundles on disk: everything no server has acknowledged yet, in one file to carry to a relay
//! or an office computer; and the import of a bundle received from one. The format is
//! sync-core's [`hamlet_sync_core::bundle`] (versioned).
//!
//! A bundle is written to a temporary file beside its destination, synced to disk and renamed,
//! so a bundle that exists is whole. Importing only adds changes (a bundle imported twice, or
//! after a sync that brought the same changes, adds nothing).

use std::io::Write;
use std::path::Path;

use hamlet_sync_core::bundle::{Bundle, BundleDocument, BundleError};
use hamlet_sync_core::client;
use hamlet_sync_core::session::decode_heads;
use hamlet_sync_core::{Day, DocumentId};

use crate::collector::{Body, CollectorError, Shared, index_row};
use crate::store::DocWrite;
use crate::views::BundleReport;

/// What went wrong with a bundle file.
#[derive(Debug, thiserror::Error)]
pub enum BundleFileError {
    /// The file could not be written or read.
    #[error("bundle file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a bundle this version reads.
    #[error("bundle file {path}: {source}")]
    Format {
        /// The file.
        path: String,
        /// Why.
        source: BundleError,
    },
    /// A document in the bundle does not apply.
    #[error("bundle file {path}: document {document}: {reason}")]
    Document {
        /// The file.
        path: String,
        /// The document.
        document: String,
        /// Why.
        reason: String,
    },
}

/// Progress of an export or import: documents done out of the total.
pub type BundleProgress<'a> = &'a (dyn Fn(u32, u32) + Send + Sync);

/// Writes every change no server has acknowledged into a bundle at `path`.
pub(crate) async fn export(
    shared: &Shared,
    path: &Path,
    progress: BundleProgress<'_>,
) -> Result<BundleReport, CollectorError> {
    let shown = path.display().to_string();
    let receipts = shared.store.receipts().await?;
    let mut inner = shared.inner.lock().await;
    let ledgers = inner.ledgers_of(None, None);
    shared.ensure(&mut inner, &ledgers).await?;
    let total = inner.docs.len() as u32;
    let mut documents = Vec::new();
    let mut changes = 0u64;
    for (i, (id, doc)) in inner.docs.iter().enumerate() {
        progress(i as u32, total);
        let Body::Ledger(_) = &doc.body else { continue };
        // Acknowledged by any server: covered by the heads of any receipt.
        let acknowledged: Vec<_> = receipts
            .iter()
            .filter(|(d, _, _)| *d == doc.record.id)
            .filter_map(|(_, _, heads)| decode_heads(heads))
            .flatten()
            .collect();
        let pending = client::unacknowledged(doc.body.doc(), &acknowledged);
        if pending.is_empty() {
            continue;
        }
        // Changes not acknowledged, after those that are; a receiver without the ledger's
        // earlier history (a relay seeing it first) waits for it, reported as incomplete.
        let known: Vec<_> =
            acknowledged.iter().filter(|h| doc.body.doc().get_change_meta_by_hash(h).is_some()).copied().collect();
        changes += pending.len() as u64;
        documents.push(BundleDocument {
            id: *id,
            changes: doc.body.doc().save_after(&known),
            heads: doc.body.doc().get_heads(),
        });
    }
    let created_on: Day = inner.today();
    drop(inner);
    let bundle = Bundle { source: shared.storage_id.clone(), created_on, documents };
    let bytes = bundle.encode();
    write_atomically(path, &bytes).map_err(|source| BundleFileError::Io { path: shown.clone(), source })?;
    progress(total, total);
    Ok(BundleReport {
        path: shown,
        documents: bundle.documents.len() as u32,
        changes,
        bytes: bytes.len() as u64,
        skipped: Vec::new(),
        incomplete: Vec::new(),
        refused: Vec::new(),
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let tmp = path.with_file_name(format!(".{name}.partial"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename itself durable.
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Applies the bundle at `path` to the documents this device keeps.
pub(crate) async fn import(
    shared: &Shared,
    path: &Path,
    progress: BundleProgress<'_>,
) -> Result<BundleReport, CollectorError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| BundleFileError::Io { path: shown.clone(), source })?;
    let bundle = Bundle::decode(&bytes).map_err(|source| BundleFileError::Format { path: shown.clone(), source })?;
    let mut report = BundleReport { path: shown.clone(), bytes: bytes.len() as u64, ..BundleReport::default() };
    let total = bundle.documents.len() as u32;
    for (i, item) in bundle.documents.iter().enumerate() {
        progress(i as u32, total);
        let mut inner = shared.inner.lock().await;
        shared.ensure(&mut inner, &[item.id]).await?;
        // The server's rules, applied before anything is: a phone writes only ledgers of the
        // hamlets assigned to it now, and never a campaign document (the district's). Changes
        // the server would refuse would make it refuse the phone's own after them.
        let assigned = inner.is_assigned(&item.id);
        let Some(doc) = inner.docs.get_mut(&item.id) else {
            report.skipped.push(item.id.url());
            continue;
        };
        if !assigned || !matches!(doc.body, Body::Ledger(_)) {
            tracing::warn!(document = %item.id, "a bundle's changes to a document this phone may not write: not applied");
            report.refused.push(item.id.url());
            continue;
        }
        let applied = item.apply(doc.body.doc_mut()).map_err(|e| BundleFileError::Document {
            path: shown.clone(),
            document: item.id.url(),
            reason: e.to_string(),
        })?;
        if !applied.complete {
            report.incomplete.push(item.id.url());
        }
        report.changes += applied.added as u64;
        report.documents += 1;
        let mut write = DocWrite::default();
        match &mut doc.body {
            Body::Ledger(ledger) if applied.added > 0 => {
                for view in ledger.responses()? {
                    write.index.push(index_row(&doc.record, &view, None));
                }
            }
            Body::Campaign { doc: campaign_doc, campaign } if applied.added > 0 => {
                *campaign = hamlet_sync_core::campaign_doc::read_campaign(campaign_doc).ok().map(Box::new);
            }
            _ => {}
        }
        let id: DocumentId = item.id;
        shared.persist(&mut inner, &id, write).await?;
    }
    progress(total, total);
    Ok(report)
}
