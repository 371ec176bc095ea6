//! Enrollment over HTTP: a one-time code (shown as a QR code at the district office) for a
//! device token and the collector's assignments.
//!
//! The contract: `POST /api/enroll` with `{"code", "actor_ids": [hex], "device_name"}` answers
//! `200 {"token", "collector", "campaigns": [{"campaign", "document", "hamlets": [...]}]}`, or
//! 400 / 401 / 410 with `{"code", "message"}` for a bad, unknown or used code.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::address::ServerAddress;
use crate::transport::{self, CertificateError, ConnectError, Trust};

/// The largest answer read, in bytes: an enrollment is small.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What the device sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnrollRequest {
    /// The one-time code.
    pub code: String,
    /// The actor ids (hex) the device writes with, so the server can check its changes.
    pub actor_ids: Vec<String>,
    /// A name for the device, shown to district staff.
    pub device_name: String,
}

/// One campaign in the answer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EnrolledCampaign {
    /// Campaign id.
    pub campaign: String,
    /// The campaign document's URL or id (derived from the campaign id when absent).
    #[serde(default)]
    pub document: Option<String>,
    /// The hamlets assigned.
    pub hamlets: Vec<String>,
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EnrollResponse {
    /// The device token, sent with every sync.
    pub token: String,
    /// The collector's person id.
    pub collector: String,
    /// The assignments.
    pub campaigns: Vec<EnrolledCampaign>,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// Why enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    /// The server could not be reached.
    #[error("cannot reach {server}: {reason}")]
    Network {
        /// The server.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The server's certificate is not the one to trust: nothing was sent (the code is still
    /// unused).
    #[error("{server}: {error}; nothing was sent")]
    Certificate {
        /// The server.
        server: String,
        /// What was wrong with it.
        error: CertificateError,
    },
    /// No answer in time.
    #[error("{server} did not answer within {seconds} s")]
    Timeout {
        /// The server.
        server: String,
        /// The time allowed.
        seconds: u64,
    },
    /// The server refused the code.
    #[error("the server refused the code ({status} {code}): {message}")]
    Refused {
        /// HTTP status: 400 malformed, 401 unknown, 410 expired or used.
        status: u16,
        /// The server's error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// An answer that does not follow the contract.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
}

/// Posts the request and reads the answer.
pub async fn enroll(
    server: &ServerAddress,
    trust: &Trust,
    request: &EnrollRequest,
    timeout: Duration,
) -> Result<EnrollResponse, EnrollError> {
    let shown = server.to_string();
    let seconds = timeout.as_secs();
    match tokio::time::timeout(timeout, post(server, trust, request)).await {
        Ok(result) => result,
        Err(_) => Err(EnrollError::Timeout { server: shown, seconds }),
    }
}

async fn post(server: &ServerAddress, trust: &Trust, request: &EnrollRequest) -> Result<EnrollResponse, EnrollError> {
    let network = |reason: String| EnrollError::Network { server: server.to_string(), reason };
    let body = serde_json::to_vec(request).map_err(|e| EnrollError::BadResponse(e.to_string()))?;
    let stream = transport::connect(server, trust).await.map_err(|e| match e {
        ConnectError::Network(reason) => network(reason),
        ConnectError::Certificate(error) => EnrollError::Certificate { server: server.to_string(), error },
    })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| network(e.to_string()))?;
    // The connection task drives the socket; it ends with the request.
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "enrollment connection ended");
        }
    });
    let http_request = hyper::Request::post("/api/enroll")
        .header(header::HOST, server.authority())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EnrollError::BadResponse(e.to_string()))?;
    let response = sender.send_request(http_request).await.map_err(|e| network(e.to_string()))?;
    let status = response.status().as_u16();
    let mut bytes = Vec::new();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| network(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            bytes.extend_from_slice(data);
            if bytes.len() > MAX_RESPONSE_BYTES {
                return Err(EnrollError::BadResponse("answer too large".into()));
            }
        }
    }
    if status == 200 {
        let answer: EnrollResponse =
            serde_json::from_slice(&bytes).map_err(|e| EnrollError::BadResponse(e.to_string()))?;
        if answer.token.is_empty() || answer.collector.is_empty() {
            return Err(EnrollError::BadResponse("empty token or collector".into()));
        }
        return Ok(answer);
    }
    match serde_json::from_slice::<Refusal>(&bytes) {
        Ok(r) if (400..500).contains(&status) => Err(EnrollError::Refused { status, code: r.code, message: r.message }),
        _ => Err(EnrollError::BadResponse(format!("HTTP {status}"))),
    }
}
