//! The awsJson 1.0 protocol as HealthLake speaks it: SigV4 credential-scope checks, request and
//! response JSON shapes (members, required ones and limits as in the `healthlake-2017-07-01`
//! model), and error bodies with their status codes.
//!
//! Everything here is pure (no I/O) so malformed input can be unit tested without a server.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::store::{
    decode_token, DatastoreQuery, Job, ListQuery, DEFAULT_MAX_RESULTS, MAX_MAX_RESULTS,
};
use super::{FakeDatastore, FakeImportJob, FakeJob, FakeProgress, RecordedRequest};

/// Request bodies above this size get 413 without being read further.
pub const MAX_REQUEST_BODY_BYTES: usize = 1024 * 1024;

/// The only accepted request media type.
pub(crate) const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Fake AWS account used in ARNs and bucket names.
const ACCOUNT_ID: &str = "123456789012";

/// Every error the fake can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    Throttling,
    AccessDenied,
    ResourceNotFound,
    Validation,
    InternalServer,
    ExpiredToken,
    /// A code newer than the SDK: it has no variant for it.
    SomethingNew,
    /// Unparseable JSON or wrong member types (what AWS answers for awsJson protocol errors).
    Serialization,
    UnknownOperation,
    MissingAuthenticationToken,
    InvalidSignature,
    UnsupportedMediaType,
    RequestEntityTooLarge,
    NotFound,
    MethodNotAllowed,
}

impl ErrorCode {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::Throttling => 429,
            Self::AccessDenied | Self::MissingAuthenticationToken | Self::InvalidSignature => 403,
            Self::ResourceNotFound | Self::NotFound => 404,
            Self::Validation
            | Self::ExpiredToken
            | Self::SomethingNew
            | Self::Serialization
            | Self::UnknownOperation
            | Self::UnsupportedMediaType => 400,
            Self::InternalServer => 500,
            Self::RequestEntityTooLarge => 413,
            Self::MethodNotAllowed => 405,
        }
    }

    /// Value of the body's `__type`: modeled errors carry the service namespace, protocol-level
    /// ones the generic one, like the real endpoint. The SDK strips the namespace either way.
    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Self::Throttling => "com.amazonaws.healthlake#ThrottlingException",
            Self::AccessDenied => "com.amazonaws.healthlake#AccessDeniedException",
            Self::ResourceNotFound => "com.amazonaws.healthlake#ResourceNotFoundException",
            Self::Validation => "com.amazonaws.healthlake#ValidationException",
            Self::InternalServer => "com.amazonaws.healthlake#InternalServerException",
            Self::ExpiredToken => "com.amazon.coral.service#ExpiredTokenException",
            Self::SomethingNew => "com.amazonaws.healthlake#SomethingNewException",
            Self::Serialization => "com.amazon.coral.service#SerializationException",
            Self::UnknownOperation => "com.amazon.coral.service#UnknownOperationException",
            Self::MissingAuthenticationToken => {
                "com.amazon.coral.service#MissingAuthenticationTokenException"
            }
            Self::InvalidSignature => "com.amazon.coral.service#InvalidSignatureException",
            Self::UnsupportedMediaType => "com.amazon.coral.service#UnsupportedMediaTypeException",
            Self::RequestEntityTooLarge => {
                "com.amazon.coral.service#RequestEntityTooLargeException"
            }
            Self::NotFound => "com.amazon.coral.service#NotFoundException",
            Self::MethodNotAllowed => "com.amazon.coral.service#MethodNotAllowedException",
        }
    }
}

/// An error response: status from the code, JSON body `{"__type", "Message"}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.type_name())]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        let body = serde_json::json!({ "__type": self.code.type_name(), "Message": self.message });
        // Serialising a `Value` of strings cannot fail; fall back to a fixed body regardless.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// The credential scope of a SigV4 `Authorization` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SigningScope {
    pub(crate) access_key_id: String,
    pub(crate) date: String,
    pub(crate) region: String,
}

/// Checks the shape of a SigV4 header (not the signature itself):
/// `AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/healthlake/aws4_request,
/// SignedHeaders=..., Signature=<hex>`. `None` means the header is missing or not UTF-8-ish text.
pub(crate) fn check_authorization(header: Option<&[u8]>) -> Result<SigningScope, ApiError> {
    check_authorization_for(header, "healthlake")
}

/// [`check_authorization`] for another signing service (the fake's SQS checks for `sqs`).
pub(crate) fn check_authorization_for(
    header: Option<&[u8]>,
    expected_service: &str,
) -> Result<SigningScope, ApiError> {
    let Some(raw) = header else {
        return Err(ApiError::new(
            ErrorCode::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    };
    let invalid = |why: &str| {
        ApiError::new(
            ErrorCode::InvalidSignature,
            format!("Invalid Authorization header: {why}"),
        )
    };
    let text = std::str::from_utf8(raw).map_err(|_| invalid("not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    }
    let params = text
        .strip_prefix("AWS4-HMAC-SHA256")
        .filter(|rest| rest.starts_with(' '))
        .ok_or_else(|| invalid("algorithm must be AWS4-HMAC-SHA256"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',') {
        let (key, value) = part.trim().split_once('=').unwrap_or((part.trim(), ""));
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| invalid("missing Credential"))?;
    if signed_headers.is_none_or(str::is_empty) {
        return Err(invalid("missing SignedHeaders"));
    }
    if signature.is_none_or(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(invalid("missing or non-hex Signature"));
    }
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = parts.as_slice() else {
        return Err(invalid(
            "Credential must be <akid>/<date>/<region>/<service>/aws4_request",
        ));
    };
    if akid.is_empty() || !akid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid("bad access key id"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("credential date must be yyyymmdd"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid("bad region in credential scope"));
    }
    if *service != expected_service {
        return Err(invalid(&format!(
            "credential should be scoped to correct service: '{expected_service}', not '{service}'"
        )));
    }
    if *terminator != "aws4_request" {
        return Err(invalid("credential scope must end with aws4_request"));
    }
    Ok(SigningScope {
        access_key_id: (*akid).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
    })
}

/// `true` for `application/x-amz-json-1.0`, with optional parameters, any case.
pub(crate) fn is_json_content_type(header: Option<&[u8]>) -> bool {
    header
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(CONTENT_TYPE))
}

/// Longest string kept in a [`RecordedRequest`] field (the model's `NextToken` limit), so hostile
/// requests cannot make the bounded log hold gigabytes.
const MAX_RECORDED_FIELD_BYTES: usize = 8192;

fn clip(s: &str) -> String {
    let mut end = s.len().min(MAX_RECORDED_FIELD_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Builds the log entry from whatever can be extracted, even from an invalid request.
pub(crate) fn record_of(
    target: &str,
    body: Option<&Value>,
    scope: Option<&SigningScope>,
) -> RecordedRequest {
    let str_field = |k: &str| {
        body.and_then(|b| b.get(k))
            .and_then(Value::as_str)
            .map(clip)
    };
    RecordedRequest {
        target: clip(target),
        datastore_id: str_field("DatastoreId"),
        region: scope.map(|s| s.region.clone()),
        max_results: body
            .and_then(|b| b.get("MaxResults"))
            .and_then(Value::as_i64),
        next_token: str_field("NextToken"),
        submitted_after: body
            .and_then(|b| b.get("SubmittedAfter"))
            .and_then(Value::as_f64),
        job_status: str_field("JobStatus"),
    }
}

/// Parses a request body; an empty body counts as `{}` (as on the real endpoint).
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(ErrorCode::Serialization, format!("malformed JSON: {e}")))
}

/// `ListFHIRExportJobs` input as sent on the wire (unknown members are ignored).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListRequest {
    pub(crate) datastore_id: Option<String>,
    pub(crate) next_token: Option<String>,
    pub(crate) max_results: Option<i64>,
    pub(crate) job_name: Option<String>,
    pub(crate) job_status: Option<String>,
    pub(crate) submitted_before: Option<f64>,
    pub(crate) submitted_after: Option<f64>,
}

/// Any request body: must be a JSON object whose members have the model's types. Wrong member
/// types (e.g. a string `MaxResults` or ISO timestamps) are serialization errors.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::Serialization,
            "request body must be a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(ErrorCode::Serialization, format!("invalid request: {e}")))
}

/// A datastore id, checked against the model (required, 1..=32 characters).
fn check_datastore_id(id: Option<&str>) -> Result<&str, ApiError> {
    match id {
        None => Err(validation("1 validation error detected: Value null at 'datastoreId' failed to satisfy constraint: Member must not be null")),
        Some(id) if id.is_empty() || id.chars().count() > 32 => Err(validation(
            "1 validation error detected: Value at 'datastoreId' failed to satisfy constraint: Member must have length between 1 and 32",
        )),
        Some(id) => Ok(id),
    }
}

/// `MaxResults` and `NextToken` as `(page_size, offset)`. With `ignore_token` (the
/// `NextTokenLoop` fault) the token is neither checked nor used.
fn paging(
    max_results: Option<i64>,
    next_token: Option<&str>,
    ignore_token: bool,
) -> Result<(usize, usize), ApiError> {
    let page_size = match max_results {
        None => DEFAULT_MAX_RESULTS,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_MAX_RESULTS).contains(n))
            .ok_or_else(|| {
                validation(format!(
                    "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and {MAX_MAX_RESULTS}"
                ))
            })?,
    };
    let offset = match (next_token, ignore_token) {
        (Some(token), false) => {
            if token.len() > 8192 {
                return Err(validation("invalid NextToken: longer than 8192 characters"));
            }
            decode_token(token).ok_or_else(|| validation("invalid NextToken"))?
        }
        _ => 0,
    };
    Ok((page_size, offset))
}

impl ListRequest {
    /// See [`from_value`].
    pub(crate) fn from_value(value: Value) -> Result<Self, ApiError> {
        from_value(value)
    }

    /// The datastore id, checked against the model (required, 1..=32 characters).
    pub(crate) fn datastore_id(&self) -> Result<&str, ApiError> {
        check_datastore_id(self.datastore_id.as_deref())
    }

    /// Validates paging and filter members and turns them into a store query.
    /// With `ignore_token` (the `NextTokenLoop` fault) the token is neither checked nor used.
    pub(crate) fn query(&self, ignore_token: bool) -> Result<ListQuery, ApiError> {
        let (page_size, offset) =
            paging(self.max_results, self.next_token.as_deref(), ignore_token)?;
        if let Some(name) = &self.job_name {
            if name.is_empty() || name.chars().count() > 64 {
                return Err(validation(
                    "1 validation error detected: Value at 'jobName' failed to satisfy constraint: Member must have length between 1 and 64",
                ));
            }
        }
        if self.job_status.as_deref() == Some("") {
            return Err(validation("invalid JobStatus: empty"));
        }
        Ok(ListQuery {
            page_size,
            offset,
            job_name: self.job_name.clone(),
            job_status: self.job_status.clone(),
            submitted_after: self.submitted_after,
            submitted_before: self.submitted_before,
        })
    }
}

/// `DescribeFHIRDatastore` input.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeRequest {
    pub(crate) datastore_id: Option<String>,
}

impl DescribeRequest {
    /// The datastore id, checked against the model (required, 1..=32 characters).
    pub(crate) fn datastore_id(&self) -> Result<&str, ApiError> {
        check_datastore_id(self.datastore_id.as_deref())
    }
}

/// `ListFHIRDatastores` input (no member is required).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListDatastoresRequest {
    pub(crate) filter: Option<DatastoreFilter>,
    pub(crate) next_token: Option<String>,
    pub(crate) max_results: Option<i64>,
}

/// `DatastoreFilter`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DatastoreFilter {
    pub(crate) datastore_name: Option<String>,
    pub(crate) datastore_status: Option<String>,
    pub(crate) created_before: Option<f64>,
    pub(crate) created_after: Option<f64>,
}

impl ListDatastoresRequest {
    /// Validates paging and filter members and turns them into a store query.
    pub(crate) fn query(&self, ignore_token: bool) -> Result<DatastoreQuery, ApiError> {
        let (page_size, offset) =
            paging(self.max_results, self.next_token.as_deref(), ignore_token)?;
        let filter = self.filter.as_ref();
        let name = filter.and_then(|f| f.datastore_name.clone());
        if name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.chars().count() > 256)
        {
            return Err(validation(
                "1 validation error detected: Value at 'filter.datastoreName' failed to satisfy constraint: Member must have length between 1 and 256",
            ));
        }
        let status = filter.and_then(|f| f.datastore_status.clone());
        if status.as_deref() == Some("") {
            return Err(validation("invalid DatastoreStatus: empty"));
        }
        Ok(DatastoreQuery {
            page_size,
            offset,
            name,
            status,
            created_after: filter.and_then(|f| f.created_after),
            created_before: filter.and_then(|f| f.created_before),
        })
    }
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Validation, message)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListResponse<'a> {
    export_job_properties_list: Vec<ExportJobProperties<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExportJobProperties<'a> {
    #[serde(flatten)]
    common: JobCommon<'a>,
    output_data_config: OutputDataConfig,
    data_access_role_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// What every listed job says first, export or import (the models share these members).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct JobCommon<'a> {
    job_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_name: Option<&'a str>,
    job_status: &'a str,
    submit_time: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_time: Option<f64>,
    datastore_id: &'a str,
}

impl<'a> JobCommon<'a> {
    fn of<J: Job>(job: &'a J, datastore_id: &'a str) -> Self {
        Self {
            job_id: job.id(),
            job_name: job.name(),
            job_status: job.status(),
            submit_time: job.submit_time(),
            end_time: job.end_time(),
            datastore_id,
        }
    }
}

/// `OutputDataConfig` (a union: exactly one member).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct OutputDataConfig {
    s3_configuration: S3Configuration,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct S3Configuration {
    s3_uri: String,
    kms_key_id: String,
}

/// The bucket (before `-<account>`) export jobs write to.
const EXPORT_BUCKET: &str = "healthlake-export";
/// The role export jobs run as (`DataAccessRoleArn`).
pub(crate) const EXPORT_ROLE: &str = "HealthLakeExportRole";

/// `OutputDataConfig.S3Configuration.S3Uri` of one job.
fn output_uri(bucket: &str, datastore_id: &str, job_id: &str) -> String {
    format!("s3://{bucket}-{ACCOUNT_ID}/{datastore_id}/{job_id}/")
}

/// Where an export job writes, as its listing says (for messages that name it).
pub(crate) fn export_output_uri(datastore_id: &str, job_id: &str) -> String {
    output_uri(EXPORT_BUCKET, datastore_id, job_id)
}

impl OutputDataConfig {
    fn new(bucket: &str, datastore_id: &str, job_id: &str, region: &str) -> Self {
        Self {
            s3_configuration: S3Configuration {
                s3_uri: output_uri(bucket, datastore_id, job_id),
                kms_key_id: format!(
                    "arn:aws:kms:{region}:{ACCOUNT_ID}:key/0f3d8c2e-7b1a-4c5d-9e6f-1a2b3c4d5e6f"
                ),
            },
        }
    }
}

/// The ARN of the account's IAM role `name`.
pub(crate) fn role_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT_ID}:role/{name}")
}

fn serialize<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| {
        ApiError::new(
            ErrorCode::InternalServer,
            format!("serialisation failed: {e}"),
        )
    })
}

/// Serialises one page. Timestamps are epoch-second JSON numbers, as the SDK expects.
pub(crate) fn list_response_body(
    datastore_id: &str,
    region: &str,
    jobs: &[FakeJob],
    next_token: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    serialize(&ListResponse {
        export_job_properties_list: jobs
            .iter()
            .map(|job| ExportJobProperties {
                common: JobCommon::of(job, datastore_id),
                output_data_config: OutputDataConfig::new(
                    EXPORT_BUCKET,
                    datastore_id,
                    &job.id,
                    region,
                ),
                data_access_role_arn: role_arn(EXPORT_ROLE),
                message: job.message.as_deref(),
            })
            .collect(),
        next_token,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImportListResponse<'a> {
    import_job_properties_list: Vec<ImportJobProperties<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImportJobProperties<'a> {
    #[serde(flatten)]
    common: JobCommon<'a>,
    input_data_config: InputDataConfig,
    job_output_data_config: OutputDataConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_progress_report: Option<JobProgressReport>,
    data_access_role_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    validation_level: Option<&'a str>,
}

/// `InputDataConfig` (a union: exactly one member).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InputDataConfig {
    s3_uri: String,
}

/// `JobProgressReport`; names spelled out because the model's `InMB` is not PascalCase of
/// anything serde could derive.
#[derive(Serialize)]
struct JobProgressReport {
    #[serde(rename = "TotalNumberOfScannedFiles")]
    scanned_files: i64,
    #[serde(rename = "TotalSizeOfScannedFilesInMB")]
    scanned_size_mb: f64,
    #[serde(rename = "TotalNumberOfImportedFiles")]
    imported_files: i64,
    #[serde(rename = "TotalNumberOfResourcesScanned")]
    resources_scanned: i64,
    #[serde(rename = "TotalNumberOfResourcesImported")]
    resources_imported: i64,
    #[serde(rename = "TotalNumberOfResourcesWithCustomerError")]
    resources_with_customer_error: i64,
    #[serde(rename = "TotalNumberOfFilesReadWithCustomerError")]
    files_read_with_customer_error: i64,
    #[serde(rename = "TotalNumberOfScannedNonFhirFiles")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_non_fhir_files: Option<i64>,
    #[serde(rename = "TotalSizeOfScannedNonFhirFilesInMB")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scanned_non_fhir_size_mb: Option<f64>,
    #[serde(rename = "TotalNumberOfImportedNonFhirFiles")]
    #[serde(skip_serializing_if = "Option::is_none")]
    imported_non_fhir_files: Option<i64>,
    #[serde(rename = "TotalNumberOfNonFhirResourcesScanned")]
    #[serde(skip_serializing_if = "Option::is_none")]
    non_fhir_resources_scanned: Option<i64>,
    #[serde(rename = "TotalNumberOfNonFhirResourcesImported")]
    #[serde(skip_serializing_if = "Option::is_none")]
    non_fhir_resources_imported: Option<i64>,
    #[serde(rename = "TotalNumberOfNonFhirResourcesWithCustomerError")]
    #[serde(skip_serializing_if = "Option::is_none")]
    non_fhir_resources_with_customer_error: Option<i64>,
    #[serde(rename = "TotalNumberOfNonFhirFilesReadWithCustomerError")]
    #[serde(skip_serializing_if = "Option::is_none")]
    non_fhir_files_read_with_customer_error: Option<i64>,
    #[serde(rename = "Throughput")]
    throughput: f64,
    #[serde(rename = "TotalFilesConverted")]
    #[serde(skip_serializing_if = "Option::is_none")]
    files_converted: Option<i64>,
    #[serde(rename = "TotalResourcesGenerated")]
    #[serde(skip_serializing_if = "Option::is_none")]
    resources_generated: Option<i64>,
}

impl From<&FakeProgress> for JobProgressReport {
    fn from(p: &FakeProgress) -> Self {
        Self {
            scanned_files: p.total_number_of_scanned_files,
            scanned_size_mb: p.total_size_of_scanned_files_in_mb,
            imported_files: p.total_number_of_imported_files,
            resources_scanned: p.total_number_of_resources_scanned,
            resources_imported: p.total_number_of_resources_imported,
            resources_with_customer_error: p.total_number_of_resources_with_customer_error,
            files_read_with_customer_error: p.total_number_of_files_read_with_customer_error,
            scanned_non_fhir_files: p.total_number_of_scanned_non_fhir_files,
            scanned_non_fhir_size_mb: p.total_size_of_scanned_non_fhir_files_in_mb,
            imported_non_fhir_files: p.total_number_of_imported_non_fhir_files,
            non_fhir_resources_scanned: p.total_number_of_non_fhir_resources_scanned,
            non_fhir_resources_imported: p.total_number_of_non_fhir_resources_imported,
            non_fhir_resources_with_customer_error: p
                .total_number_of_non_fhir_resources_with_customer_error,
            non_fhir_files_read_with_customer_error: p
                .total_number_of_non_fhir_files_read_with_customer_error,
            throughput: p.throughput,
            files_converted: p.total_files_converted,
            resources_generated: p.total_resources_generated,
        }
    }
}

/// Serialises one page of `ListFHIRImportJobs`.
pub(crate) fn import_list_body(
    datastore_id: &str,
    region: &str,
    jobs: &[FakeImportJob],
    next_token: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    serialize(&ImportListResponse {
        import_job_properties_list: jobs
            .iter()
            .map(|job| ImportJobProperties {
                common: JobCommon::of(job, datastore_id),
                input_data_config: InputDataConfig {
                    s3_uri: job.input_s3_uri.clone().unwrap_or_else(|| {
                        format!(
                            "s3://healthlake-import-{ACCOUNT_ID}/{datastore_id}/{}/",
                            job.id
                        )
                    }),
                },
                job_output_data_config: OutputDataConfig::new(
                    "healthlake-import-errors",
                    datastore_id,
                    &job.id,
                    region,
                ),
                job_progress_report: job.progress.as_ref().map(JobProgressReport::from),
                data_access_role_arn: role_arn("HealthLakeImportRole"),
                message: job.message.as_deref(),
                validation_level: job.validation_level.as_deref(),
            })
            .collect(),
        next_token,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeResponse<'a> {
    datastore_properties: DatastoreProperties<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatastoreListResponse<'a> {
    datastore_properties_list: Vec<DatastoreProperties<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatastoreProperties<'a> {
    datastore_id: &'a str,
    datastore_arn: String,
    datastore_name: &'a str,
    datastore_status: &'a str,
    created_at: f64,
    datastore_type_version: &'a str,
    datastore_endpoint: String,
    sse_configuration: Value,
    identity_provider_configuration: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_cause: Option<ErrorCause<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorCause<'a> {
    error_message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_category: Option<&'a str>,
}

impl<'a> DatastoreProperties<'a> {
    /// ARN and endpoint use the datastore's own region if it has one, else the request's.
    fn new(datastore_id: &'a str, ds: &'a FakeDatastore, request_region: &'a str) -> Self {
        let region = ds.region.as_deref().unwrap_or(request_region);
        Self {
            datastore_id,
            datastore_arn: format!(
                "arn:aws:healthlake:{region}:{ACCOUNT_ID}:datastore/fhir/{datastore_id}"
            ),
            datastore_name: &ds.name,
            datastore_status: &ds.status,
            created_at: ds.created_at,
            datastore_type_version: &ds.type_version,
            datastore_endpoint: format!(
                "https://healthlake.{region}.amazonaws.com/datastore/{datastore_id}/r4/"
            ),
            sse_configuration: serde_json::json!({
                "KmsEncryptionConfig": { "CmkType": "AWS_OWNED_KMS_KEY" }
            }),
            identity_provider_configuration: serde_json::json!({
                "AuthorizationStrategy": "AWS_AUTH",
                "FineGrainedAuthorizationEnabled": false
            }),
            error_cause: ds.error_message.as_deref().map(|message| ErrorCause {
                error_message: message,
                error_category: ds.error_category.as_deref(),
            }),
        }
    }
}

/// Serialises a `DescribeFHIRDatastore` answer.
pub(crate) fn describe_body(
    datastore_id: &str,
    datastore: &FakeDatastore,
    region: &str,
) -> Result<Vec<u8>, ApiError> {
    serialize(&DescribeResponse {
        datastore_properties: DatastoreProperties::new(datastore_id, datastore, region),
    })
}

/// Serialises one page of `ListFHIRDatastores`.
pub(crate) fn datastore_list_body(
    region: &str,
    datastores: &[(String, FakeDatastore)],
    next_token: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    serialize(&DatastoreListResponse {
        datastore_properties_list: datastores
            .iter()
            .map(|(id, ds)| DatastoreProperties::new(id, ds, region))
            .collect(),
        next_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240115/us-west-2/healthlake/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0123456789abcdef";

    #[test]
    fn accepts_sdk_style_authorization() {
        let scope = check_authorization(Some(GOOD.as_bytes())).unwrap();
        assert_eq!(scope.region, "us-west-2");
        assert_eq!(scope.access_key_id, "AKIDEXAMPLE");
        assert_eq!(scope.date, "20240115");
    }

    #[test]
    fn rejects_missing_and_malformed_authorization() {
        let code = |h: Option<&[u8]>| check_authorization(h).unwrap_err().code;
        assert_eq!(code(None), ErrorCode::MissingAuthenticationToken);
        assert_eq!(code(Some(b"   ")), ErrorCode::MissingAuthenticationToken);
        for bad in [
            GOOD.replace("/healthlake/", "/s3/"),
            GOOD.replace("aws4_request", "aws5_request"),
            GOOD.replace("20240115", "2024-01-15"),
            GOOD.replace("us-west-2", ""),
            GOOD.replace("us-west-2", "US WEST"),
            GOOD.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
            GOOD.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256"),
            GOOD.replace("AKIDEXAMPLE", ""),
            GOOD.replace("Signature=0123456789abcdef", "Signature=xyz"),
            GOOD.replace(", Signature=0123456789abcdef", ""),
            GOOD.replace(
                "SignedHeaders=content-type;host;x-amz-date;x-amz-target, ",
                "",
            ),
            GOOD.replace("/aws4_request", ""),
            GOOD.replace("/aws4_request", "/aws4_request/extra"),
            "Bearer abc".to_owned(),
            "AWS4-HMAC-SHA256 ".to_owned(),
        ] {
            assert_eq!(
                code(Some(bad.as_bytes())),
                ErrorCode::InvalidSignature,
                "{bad}"
            );
        }
        assert_eq!(code(Some(&[0xff, 0xfe])), ErrorCode::InvalidSignature);
    }

    #[test]
    fn content_type_check() {
        assert!(is_json_content_type(Some(b"application/x-amz-json-1.0")));
        assert!(is_json_content_type(Some(
            b"Application/X-Amz-Json-1.0; charset=utf-8"
        )));
        assert!(!is_json_content_type(Some(b"application/x-amz-json-1.1")));
        assert!(!is_json_content_type(Some(b"application/json")));
        assert!(!is_json_content_type(Some(&[0xff])));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn body_parsing() {
        assert_eq!(parse_body(b"").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_body(b"{\"DatastoreId\":").unwrap_err().code,
            ErrorCode::Serialization
        );
        assert_eq!(
            parse_body(&[0xff, 0x00]).unwrap_err().code,
            ErrorCode::Serialization
        );
        let bad_types = [
            r#"[]"#,
            r#""x""#,
            r#"{"MaxResults":"10"}"#,
            r#"{"MaxResults":1.5}"#,
            r#"{"SubmittedAfter":"2024-01-15T10:30:00Z"}"#,
            r#"{"DatastoreId":5}"#,
        ];
        for body in bad_types {
            let value = parse_body(body.as_bytes()).unwrap();
            assert_eq!(
                ListRequest::from_value(value).unwrap_err().code,
                ErrorCode::Serialization,
                "{body}"
            );
        }
    }

    fn req(json: &str) -> ListRequest {
        ListRequest::from_value(parse_body(json.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn validation_rules() {
        let code = |json: &str| req(json).query(false).unwrap_err().code;
        assert_eq!(code(r#"{"MaxResults":0}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"MaxResults":501}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"MaxResults":-1}"#), ErrorCode::Validation);
        assert_eq!(
            code(r#"{"MaxResults":9223372036854775807}"#),
            ErrorCode::Validation
        );
        assert_eq!(code(r#"{"NextToken":"garbage"}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"JobName":""}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"JobStatus":""}"#), ErrorCode::Validation);
        assert_eq!(
            req("{}").query(false).unwrap().page_size,
            DEFAULT_MAX_RESULTS
        );
        assert_eq!(
            req(r#"{"MaxResults":500}"#).query(false).unwrap().page_size,
            500
        );
        assert_eq!(
            req(r#"{"NextToken":"garbage"}"#)
                .query(true)
                .unwrap()
                .offset,
            0
        );
        assert_eq!(
            req("{}").datastore_id().unwrap_err().code,
            ErrorCode::Validation
        );
        assert_eq!(
            req(r#"{"DatastoreId":""}"#)
                .datastore_id()
                .unwrap_err()
                .code,
            ErrorCode::Validation
        );
        let long = format!(r#"{{"DatastoreId":"{}"}}"#, "a".repeat(33));
        assert_eq!(
            req(&long).datastore_id().unwrap_err().code,
            ErrorCode::Validation
        );
        assert_eq!(
            req(r#"{"DatastoreId":"abc"}"#).datastore_id().unwrap(),
            "abc"
        );
    }

    #[test]
    fn response_uses_epoch_numbers_and_omits_absent_members() {
        let jobs = [
            FakeJob::new("j1", "COMPLETED", 1_705_314_600.5).ended(1_705_318_200.25),
            FakeJob::new("j2", "IN_PROGRESS", 1_705_314_601.0).named("n"),
        ];
        let body = list_response_body("ds", "us-west-2", &jobs, None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v.get("NextToken").is_none());
        let list = v["ExportJobPropertiesList"].as_array().unwrap();
        assert_eq!(list[0]["SubmitTime"].as_f64(), Some(1_705_314_600.5));
        assert_eq!(list[0]["EndTime"].as_f64(), Some(1_705_318_200.25));
        assert!(list[0].get("JobName").is_none());
        assert!(list[1].get("EndTime").is_none());
        assert!(list[1]["OutputDataConfig"]["S3Configuration"]["S3Uri"].is_string());
        assert!(list[1]["OutputDataConfig"]["S3Configuration"]["KmsKeyId"].is_string());
        let with_token = list_response_body("ds", "r", &[], Some("t".into())).unwrap();
        let v: Value = serde_json::from_slice(&with_token).unwrap();
        assert_eq!(v["NextToken"], "t");
    }

    /// `Message` travels verbatim, as HealthLake sends it: JSON-escaped, never cut or cleaned
    /// (what the exporter makes of a hostile one is the exporter's business).
    #[test]
    fn jobs_carry_their_message_verbatim() {
        let hostile = format!(
            "Export failed:\nsecond line\x1b[31m{}",
            "m".repeat(5 * 1024)
        );
        let exports = [
            FakeJob::new("e1", "FAILED", 1.0)
                .ended(2.0)
                .with_message(hostile.as_str()),
            FakeJob::new("e2", "COMPLETED", 1.0).ended(2.0),
        ];
        let body = list_response_body("ds", "us-east-1", &exports, None).unwrap();
        assert!(
            !body.contains(&b'\n') && !body.contains(&0x1b),
            "escaped JSON"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        let list = &v["ExportJobPropertiesList"];
        assert_eq!(list[0]["Message"], hostile.as_str());
        assert!(list[1].get("Message").is_none());
        let imports = [FakeImportJob::new("i1", "FAILED", 1.0)
            .ended(2.0)
            .with_message(hostile.as_str())];
        let body = import_list_body("ds", "us-east-1", &imports, None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["ImportJobPropertiesList"][0]["Message"], hostile.as_str());
    }

    #[test]
    fn error_body_shape() {
        let e = ApiError::new(ErrorCode::Throttling, "slow down");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["__type"], "com.amazonaws.healthlake#ThrottlingException");
        assert_eq!(v["Message"], "slow down");
        assert_eq!(e.code.status(), 429);
    }

    #[test]
    fn record_is_best_effort() {
        let body =
            serde_json::json!({"DatastoreId": "ds", "MaxResults": "x", "SubmittedAfter": 5.5});
        let r = record_of("HealthLake.X", Some(&body), None);
        assert_eq!(r.datastore_id.as_deref(), Some("ds"));
        assert_eq!(r.max_results, None);
        assert_eq!(r.submitted_after, Some(5.5));
        assert_eq!(r.region, None);
        let long = serde_json::json!({ "DatastoreId": "é".repeat(10_000) });
        let r = record_of(&"t".repeat(20_000), Some(&long), None);
        assert!(r.target.len() <= MAX_RECORDED_FIELD_BYTES);
        assert!(r
            .datastore_id
            .is_some_and(|d| d.len() <= MAX_RECORDED_FIELD_BYTES && d.starts_with('é')));
    }

    #[test]
    fn import_body_uses_model_member_names() {
        let progress = FakeProgress {
            total_number_of_scanned_files: 7,
            total_size_of_scanned_files_in_mb: 1.5,
            throughput: 2.25,
            total_files_converted: Some(3),
            ..FakeProgress::default()
        };
        let jobs = [
            FakeImportJob::new("i1", "IN_PROGRESS", 10.5).with_progress(progress),
            FakeImportJob::new("i2", "SUBMITTED", 11.0).with_input("s3://bucket/in/"),
        ];
        let body = import_list_body("ds", "eu-west-1", &jobs, None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let list = v["ImportJobPropertiesList"].as_array().unwrap();
        let report = &list[0]["JobProgressReport"];
        assert_eq!(report["TotalNumberOfScannedFiles"], 7);
        assert_eq!(report["TotalSizeOfScannedFilesInMB"], 1.5);
        assert_eq!(report["Throughput"], 2.25);
        assert_eq!(report["TotalFilesConverted"], 3);
        assert_eq!(report["TotalNumberOfResourcesWithCustomerError"], 0);
        assert!(report.get("TotalSizeOfScannedNonFhirFilesInMB").is_none());
        assert_eq!(list[0]["SubmitTime"].as_f64(), Some(10.5));
        assert_eq!(
            list[0]["InputDataConfig"]["S3Uri"],
            "s3://healthlake-import-123456789012/ds/i1/"
        );
        assert!(
            list[0]["JobOutputDataConfig"]["S3Configuration"]["KmsKeyId"]
                .as_str()
                .is_some_and(|k| k.starts_with("arn:aws:kms:eu-west-1:"))
        );
        assert!(list[1].get("JobProgressReport").is_none());
        assert!(list[1].get("ValidationLevel").is_none());
        assert_eq!(list[1]["InputDataConfig"]["S3Uri"], "s3://bucket/in/");
    }

    #[test]
    fn datastore_body_has_every_required_member() {
        let ds = FakeDatastore::new("name").with_error("boom", "RETRYABLE_ERROR");
        let v: Value =
            serde_json::from_slice(&describe_body("abc", &ds, "us-west-2").unwrap()).unwrap();
        let p = &v["DatastoreProperties"];
        for member in [
            "DatastoreId",
            "DatastoreArn",
            "DatastoreStatus",
            "DatastoreTypeVersion",
            "DatastoreEndpoint",
        ] {
            assert!(p[member].is_string(), "{member}");
        }
        assert_eq!(
            p["DatastoreArn"],
            "arn:aws:healthlake:us-west-2:123456789012:datastore/fhir/abc"
        );
        assert_eq!(
            p["DatastoreEndpoint"],
            "https://healthlake.us-west-2.amazonaws.com/datastore/abc/r4/"
        );
        assert!(p["CreatedAt"].is_f64());
        assert_eq!(p["ErrorCause"]["ErrorCategory"], "RETRYABLE_ERROR");
        let pinned = FakeDatastore::new("n").in_region("ap-south-1");
        let body = datastore_list_body("us-west-2", &[("x".into(), pinned)], Some("t".into()));
        let v: Value = serde_json::from_slice(&body.unwrap()).unwrap();
        let p = &v["DatastorePropertiesList"][0];
        assert!(p["DatastoreArn"]
            .as_str()
            .is_some_and(|a| a.contains(":ap-south-1:")));
        assert!(p.get("ErrorCause").is_none());
        assert_eq!(v["NextToken"], "t");
    }

    #[test]
    fn list_datastores_validation() {
        let parse = |json: &str| -> Result<ListDatastoresRequest, ApiError> {
            from_value(parse_body(json.as_bytes()).unwrap())
        };
        let code = |json: &str| parse(json).unwrap().query(false).unwrap_err().code;
        assert_eq!(code(r#"{"MaxResults":0}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"MaxResults":501}"#), ErrorCode::Validation);
        assert_eq!(code(r#"{"NextToken":"x"}"#), ErrorCode::Validation);
        assert_eq!(
            code(r#"{"Filter":{"DatastoreName":""}}"#),
            ErrorCode::Validation
        );
        let long = format!(r#"{{"Filter":{{"DatastoreName":"{}"}}}}"#, "é".repeat(257));
        assert_eq!(code(&long), ErrorCode::Validation);
        assert_eq!(
            code(r#"{"Filter":{"DatastoreStatus":""}}"#),
            ErrorCode::Validation
        );
        for bad in [
            r#"{"Filter":"ACTIVE"}"#,
            r#"{"Filter":{"CreatedAfter":"2024-01-01T00:00:00Z"}}"#,
            r#"{"MaxResults":"5"}"#,
        ] {
            assert_eq!(parse(bad).unwrap_err().code, ErrorCode::Serialization);
        }
        let q = parse(r#"{"Filter":{"DatastoreName":"n","DatastoreStatus":"ACTIVE","CreatedAfter":1,"CreatedBefore":2.5},"MaxResults":500}"#)
            .unwrap()
            .query(false)
            .unwrap();
        assert_eq!(q.page_size, 500);
        assert_eq!(q.name.as_deref(), Some("n"));
        assert_eq!(q.status.as_deref(), Some("ACTIVE"));
        assert_eq!((q.created_after, q.created_before), (Some(1.0), Some(2.5)));
        assert_eq!(
            parse("{}").unwrap().query(false).unwrap().page_size,
            DEFAULT_MAX_RESULTS
        );
        let describe: DescribeRequest = from_value(parse_body(b"{}").unwrap()).unwrap();
        assert_eq!(
            describe.datastore_id().unwrap_err().code,
            ErrorCode::Validation
        );
    }
}
