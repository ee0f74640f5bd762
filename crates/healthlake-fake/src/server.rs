//! HTTP plumbing of the fake: accept loop, per-connection hyper tasks, routing by `X-Amz-Target`,
//! request checks in the order the real endpoint applies them, fault injection (the same for
//! every operation, so each call of the exporter can be failed in isolation), and a streaming
//! body type so oversized responses cost no memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use serde_json::Value;

use super::fault::{self, ErrorFault, Protocol, Reply, Tweaks};
use super::store::{encode_token, Job, ListQuery, Operation, Page};
use super::wire::{
    check_authorization, datastore_list_body, describe_body, from_value, import_list_body,
    is_json_content_type, list_response_body, parse_body, record_of, ApiError, DescribeRequest,
    ErrorCode, ListDatastoresRequest, ListRequest, CONTENT_TYPE as AMZ_JSON,
    MAX_REQUEST_BODY_BYTES,
};
use super::{sqs_wire, sts, FakeHealthLake, FakeImportJob, FakeJob, FakeServer};

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// Returned by the service to make hyper close the connection without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose")]
pub(crate) struct DropConnection;

pub(crate) async fn bind(fake: FakeHealthLake, addr: SocketAddr) -> std::io::Result<FakeServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, fake));
    Ok(FakeServer { addr, task })
}

/// Owns the connection tasks: when this future is dropped (server aborted), the `JoinSet` aborts
/// every connection, hung ones included.
async fn accept_loop(listener: TcpListener, fake: FakeHealthLake) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, fake.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "fake HealthLake: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, fake: FakeHealthLake) {
    // Best effort: latency matters more than throughput for small JSON answers.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| handle(fake.clone(), request));
    let mut builder = http1::Builder::new();
    // Half-close support lets raw clients (`printf ... | nc`) shut down their write side and
    // still get the answer; hyper's default would drop the request instead.
    builder.timer(TokioTimer::new()).half_close(true);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "fake HealthLake: connection ended with error");
    }
}

async fn handle(
    fake: FakeHealthLake,
    request: Request<Incoming>,
) -> Result<Response<FakeBody>, DropConnection> {
    if request.uri().path() != "/" {
        let message = format!("no route for {}", request.uri().path());
        return Ok(error_response(&ApiError::new(ErrorCode::NotFound, message)));
    }
    if request.method() != Method::POST {
        let mut response = error_response(&ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("method {} not allowed, use POST", request.method()),
        ));
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return Ok(response);
    }
    let (parts, body) = request.into_parts();
    let too_large = || {
        error_response(&ApiError::new(
            ErrorCode::RequestEntityTooLarge,
            format!("request body exceeds {MAX_REQUEST_BODY_BYTES} bytes"),
        ))
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_BODY_BYTES as u64) {
        return Ok(too_large());
    }
    let body = match Limited::new(body, MAX_REQUEST_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        // The client went away mid-body: nobody to answer.
        Err(_) => return Err(DropConnection),
    };

    let header = |name| parts.headers.get(name).map(HeaderValue::as_bytes);
    let target = header("x-amz-target")
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_default();
    if target.starts_with(sqs_wire::TARGET_PREFIX) {
        return sqs_wire::handle(&fake, &target, &parts.headers, &body).await;
    }
    // STS speaks awsQuery: no X-Amz-Target, a form-encoded body naming the action.
    if target.is_empty() && sts::is_form_content_type(header(CONTENT_TYPE.as_str())) {
        return sts::handle(&fake, &parts.headers, &body).await;
    }
    let auth = check_authorization(header(AUTHORIZATION.as_str()));
    let parsed = parse_body(&body);
    fake.lock()
        .record(record_of(&target, parsed.as_ref().ok(), auth.as_ref().ok()));

    let scope = match auth {
        Ok(scope) => scope,
        Err(error) => return Ok(error_response(&error)),
    };
    if !is_json_content_type(header(CONTENT_TYPE.as_str())) {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {AMZ_JSON}"),
        )));
    }
    let Some(operation) = Operation::from_header(&target) else {
        return Ok(error_response(&ApiError::new(
            ErrorCode::UnknownOperation,
            format!("unknown or unsupported operation {target:?}"),
        )));
    };
    let value = match parsed {
        Ok(value) => value,
        Err(error) => return Ok(error_response(&error)),
    };
    let region = scope.region.as_str();
    let result = match operation {
        Operation::ListExportJobs | Operation::ListImportJobs => {
            list_jobs(&fake, operation, value, region).await
        }
        Operation::DescribeDatastore => describe_datastore(&fake, value, region).await,
        Operation::ListDatastores => list_datastores(&fake, value, region).await,
    };
    result.or_else(Reply::into_response)
}

/// HealthLake's words for the error faults (`operation` names the call in an access denial).
impl Protocol for Operation {
    fn error(&self, fault: ErrorFault<'_>) -> Response<FakeBody> {
        let (code, message) = match fault {
            ErrorFault::Throttling => (ErrorCode::Throttling, "Rate exceeded".to_owned()),
            ErrorFault::InternalError => (
                ErrorCode::InternalServer,
                "An internal error occurred".to_owned(),
            ),
            ErrorFault::AccessDenied => (
                ErrorCode::AccessDenied,
                format!(
                    "User is not authorized to perform: healthlake:{}",
                    self.name()
                ),
            ),
            ErrorFault::AccessDeniedWith(message) => (ErrorCode::AccessDenied, message.to_owned()),
            ErrorFault::NotFound => (
                ErrorCode::ResourceNotFound,
                "Datastore does not exist".to_owned(),
            ),
            ErrorFault::Validation => (
                ErrorCode::Validation,
                "Injected validation error".to_owned(),
            ),
            ErrorFault::ExpiredToken => (
                ErrorCode::ExpiredToken,
                "The security token included in the request is expired".to_owned(),
            ),
            ErrorFault::UnknownError => (
                ErrorCode::SomethingNew,
                "An error the SDK does not know".to_owned(),
            ),
        };
        error_response(&ApiError::new(code, message))
    }

    fn malformed_body(&self) -> &'static [u8] {
        match self {
            Operation::ListExportJobs => b"{\"ExportJobPropertiesList\":[{\"JobId\":\"tru",
            Operation::ListImportJobs => b"{\"ImportJobPropertiesList\":[{\"JobId\":\"tru",
            Operation::DescribeDatastore => b"{\"DatastoreProperties\":{\"DatastoreId\":\"tru",
            Operation::ListDatastores => b"{\"DatastorePropertiesList\":[{\"DatastoreId\":\"tru",
        }
    }
}

fn not_found(datastore_id: &str) -> Reply {
    ApiError::new(
        ErrorCode::ResourceNotFound,
        format!("Datastore {datastore_id} does not exist"),
    )
    .into()
}

fn next_token(tweaks: &Tweaks, next_offset: Option<usize>) -> Option<String> {
    if tweaks.loop_token {
        Some(encode_token(0))
    } else {
        next_offset.map(encode_token)
    }
}

/// One page of `J` jobs as `query` asks, with the first job repeated at its end under
/// [`Fault::DuplicateJobs`].
fn listed<J: Job>(
    fake: &FakeHealthLake,
    datastore_id: &str,
    region: &str,
    query: &ListQuery,
    tweaks: &Tweaks,
) -> Result<Page<J>, Reply> {
    let page = fake.lock().list::<J>(datastore_id, region, query);
    let mut page = page.ok_or_else(|| not_found(datastore_id))?;
    if let (true, Some(first)) = (tweaks.duplicate, page.items.first()) {
        page.items.push(first.clone());
    }
    Ok(page)
}

/// `ListFHIRExportJobs` and `ListFHIRImportJobs`: same input shape, paging and faults.
async fn list_jobs(
    fake: &FakeHealthLake,
    operation: Operation,
    value: Value,
    region: &str,
) -> Result<Response<FakeBody>, Reply> {
    let request = ListRequest::from_value(value)?;
    let datastore_id = request.datastore_id()?;
    let fault = fake.lock().fault(operation, datastore_id);
    let tweaks = fault::apply(fault, &operation).await?;
    let query = request.query(tweaks.loop_token)?;
    let body = if operation == Operation::ListImportJobs {
        let page = listed::<FakeImportJob>(fake, datastore_id, region, &query, &tweaks)?;
        import_list_body(
            datastore_id,
            region,
            &page.items,
            next_token(&tweaks, page.next_offset),
        )?
    } else {
        let page = listed::<FakeJob>(fake, datastore_id, region, &query, &tweaks)?;
        list_response_body(
            datastore_id,
            region,
            &page.items,
            next_token(&tweaks, page.next_offset),
        )?
    };
    Ok(tweaks.respond(body))
}

async fn describe_datastore(
    fake: &FakeHealthLake,
    value: Value,
    region: &str,
) -> Result<Response<FakeBody>, Reply> {
    let request: DescribeRequest = from_value(value)?;
    let datastore_id = request.datastore_id()?;
    let fault = fake
        .lock()
        .fault(Operation::DescribeDatastore, datastore_id);
    let tweaks = fault::apply(fault, &Operation::DescribeDatastore).await?;
    let datastore = fake.lock().describe(datastore_id, region);
    let datastore = datastore.ok_or_else(|| not_found(datastore_id))?;
    let body = describe_body(datastore_id, &datastore, region)?;
    Ok(tweaks.respond(body))
}

async fn list_datastores(
    fake: &FakeHealthLake,
    value: Value,
    region: &str,
) -> Result<Response<FakeBody>, Reply> {
    let request: ListDatastoresRequest = from_value(value)?;
    let fault = fake.lock().fault(Operation::ListDatastores, "");
    let tweaks = fault::apply(fault, &Operation::ListDatastores).await?;
    let query = request.query(tweaks.loop_token)?;
    let page = fake.lock().list_datastores(region, &query);
    let body = datastore_list_body(region, &page.items, next_token(&tweaks, page.next_offset))?;
    Ok(tweaks.respond(body))
}

pub(crate) fn error_response(error: &ApiError) -> Response<FakeBody> {
    let status =
        StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, FakeBody::full(error.body().into()))
}

pub(crate) fn json_response(status: StatusCode, body: FakeBody) -> Response<FakeBody> {
    let length = body.len();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(AMZ_JSON));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(id) = HeaderValue::from_str(&random_uuid()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

/// A random id in UUID layout, as the real service sends in `x-amzn-RequestId` and EventBridge
/// gives each event.
pub(crate) fn random_uuid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Padding source: chunks are slices of this static buffer, so padding allocates nothing.
static PADDING: [u8; 16 * 1024] = [b'x'; 16 * 1024];

/// Response body: a head, optionally followed by streamed padding and a tail.
#[derive(Debug)]
pub(crate) struct FakeBody {
    head: Option<Bytes>,
    padding: usize,
    tail: Option<Bytes>,
    remaining: u64,
}

impl FakeBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        let remaining = bytes.len() as u64;
        Self {
            head: Some(bytes),
            padding: 0,
            tail: None,
            remaining,
        }
    }

    /// `json` (an object) grown to exactly `size` bytes with an extra `"Padding":"xxx…"` member;
    /// unchanged if it is already at least that large.
    pub(crate) fn padded(mut json: Vec<u8>, size: usize) -> Self {
        const OPEN: &[u8] = b",\"Padding\":\"";
        const CLOSE: &[u8] = b"\"}";
        let overhead = OPEN.len() + CLOSE.len() - 1; // the object's `}` is replaced
        if json.last() != Some(&b'}') || size < json.len() + overhead {
            return Self::full(json.into());
        }
        let padding = size - json.len() - overhead;
        json.pop();
        json.extend_from_slice(OPEN);
        Self {
            head: Some(json.into()),
            padding,
            tail: Some(Bytes::from_static(CLOSE)),
            remaining: size as u64,
        }
    }

    fn len(&self) -> u64 {
        self.remaining
    }
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let chunk = if let Some(head) = this.head.take() {
            head
        } else if this.padding > 0 {
            let n = this.padding.min(PADDING.len());
            this.padding -= n;
            Bytes::from_static(&PADDING[..n])
        } else if let Some(tail) = this.tail.take() {
            tail
        } else {
            return Poll::Ready(None);
        };
        this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut body: FakeBody) -> Vec<u8> {
        let mut out = Vec::new();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    #[test]
    fn padded_body_is_exact_size_and_valid_json() {
        let json = br#"{"ExportJobPropertiesList":[]}"#.to_vec();
        for size in [json.len() + 13, 100, 16 * 1024 + 7, 100_000] {
            let body = FakeBody::padded(json.clone(), size);
            assert_eq!(body.len(), size as u64);
            let bytes = drain(body);
            assert_eq!(bytes.len(), size);
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert!(v["ExportJobPropertiesList"].is_array());
        }
    }

    #[test]
    fn padded_body_too_small_is_sent_unpadded() {
        let json = br#"{"ExportJobPropertiesList":[]}"#.to_vec();
        for size in [0, 10, json.len(), json.len() + 12] {
            assert_eq!(drain(FakeBody::padded(json.clone(), size)), json);
        }
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
