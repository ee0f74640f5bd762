//! The fake's AWS STS: `GetCallerIdentity` and `AssumeRole`, on the fake HealthLake's port. It
//! exists so the exporter's preflight (`--check-config --probe`) can name the principal it runs
//! as, and so a configuration with `role_arn` can be exercised end to end (the SDK's AssumeRole
//! credentials provider, then HealthLake calls signed with the session's keys), all through the
//! real `aws-sdk-sts` client. Point the SDK at it with `AWS_ENDPOINT_URL_STS` (or the STS
//! client's `endpoint_url`).
//!
//! STS speaks the awsQuery protocol: `POST /` with a form-encoded body
//! (`Action=GetCallerIdentity&Version=2011-06-15`), SigV4 scoped to `sts`, and XML answers
//! (`<ErrorResponse><Error><Code>…` for errors). The principal comes from the access key that
//! signed the request: a key this fake issued through `AssumeRole` is that role's session
//! (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`); any other key is the caller set with
//! [`FakeHealthLake::set_caller_arn`] (default [`DEFAULT_CALLER_ARN`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{HeaderMap, Response, StatusCode};

use super::fault::{self, ErrorFault, Protocol};
use super::server::{error_response, DropConnection, FakeBody};
use super::wire::check_authorization_for;
use super::{FakeHealthLake, Fault};

/// The principal of every key the fake did not issue, until [`FakeHealthLake::set_caller_arn`].
pub const DEFAULT_CALLER_ARN: &str = "arn:aws:iam::123456789012:user/healthlake-exporter";
/// The media type of awsQuery requests: how the server tells an STS request from the others.
pub(crate) const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
/// How long the session credentials `AssumeRole` hands out are valid (the STS default).
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS actions the fake implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StsAction {
    GetCallerIdentity,
    AssumeRole,
}

impl StsAction {
    /// Every implemented action.
    pub const ALL: [StsAction; 2] = [StsAction::GetCallerIdentity, StsAction::AssumeRole];

    /// The `Action` parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetCallerIdentity => "GetCallerIdentity",
            Self::AssumeRole => "AssumeRole",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The STS side of a [`FakeHealthLake`].
#[derive(Debug)]
pub(crate) struct StsShared {
    state: Mutex<StsState>,
}

impl Default for StsShared {
    fn default() -> Self {
        Self {
            state: Mutex::new(StsState {
                caller_arn: DEFAULT_CALLER_ARN.to_owned(),
                sessions: HashMap::new(),
                faults: HashMap::new(),
                counts: HashMap::new(),
                issued: 0,
            }),
        }
    }
}

impl StsShared {
    fn lock(&self) -> MutexGuard<'_, StsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct StsState {
    /// The principal of keys the fake did not issue.
    caller_arn: String,
    /// Access key ids issued by `AssumeRole` → the session's principal ARN.
    sessions: HashMap<String, String>,
    faults: HashMap<StsAction, Fault>,
    counts: HashMap<StsAction, usize>,
    /// Sessions issued so far (numbers the keys).
    issued: u64,
}

impl StsState {
    fn principal_of(&self, access_key_id: &str) -> String {
        self.sessions
            .get(access_key_id)
            .cloned()
            .unwrap_or_else(|| self.caller_arn.clone())
    }
}

impl FakeHealthLake {
    /// Sets the principal that `GetCallerIdentity` names (and `AssumeRole` calls act as) for
    /// requests signed with keys the fake did not issue, e.g.
    /// `arn:aws:sts::123456789012:assumed-role/app/i-0abc` for a pod's IRSA role.
    pub fn set_caller_arn(&self, arn: &str) {
        self.sts.lock().caller_arn = arn.to_owned();
    }

    /// Injects (or with `None` clears) a fault for one STS action. `AccessDenied` answers 403
    /// `AccessDenied` naming the caller and the role, as STS does; `Throttling` 400 `Throttling`;
    /// `ExpiredToken` 400 `ExpiredToken`; `InternalError` 500 `InternalFailure`; `Delay`, `Hang`
    /// and `ConnectionReset` behave as for HealthLake; the others answer 400 `InvalidAction`.
    pub fn set_sts_fault_for(&self, action: StsAction, fault: Option<Fault>) {
        let mut sts = self.sts.lock();
        match fault {
            Some(fault) => sts.faults.insert(action, fault),
            None => sts.faults.remove(&action),
        };
    }

    /// Calls of one STS action received so far (faulted ones included, once signed for `sts`).
    pub fn sts_request_count(&self, action: StsAction) -> usize {
        self.sts.lock().counts.get(&action).copied().unwrap_or(0)
    }
}

/// An STS error answer (`<ErrorResponse>`).
struct StsError {
    status: u16,
    code: &'static str,
    message: String,
}

impl StsError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn response(&self) -> Response<FakeBody> {
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        let body = format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            xml_escape(&self.message),
            request_id()
        );
        xml_response(self.status, body)
    }
}

/// Answers one STS request (the body is already read and size-checked).
pub(crate) async fn handle(
    fake: &FakeHealthLake,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response<FakeBody>, DropConnection> {
    let authorization = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let scope = match check_authorization_for(authorization, "sts") {
        Ok(scope) => scope,
        Err(error) => return Ok(error_response(&error)),
    };
    let params: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let action_name = params.get("Action").map(String::as_str).unwrap_or("");
    let Some(action) = StsAction::from_name(action_name) else {
        return Ok(StsError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action_name} for version 2011-06-15"),
        )
        .response());
    };
    let (injected, caller) = {
        let mut sts = fake.sts.lock();
        *sts.counts.entry(action).or_default() += 1;
        let caller = sts.principal_of(&scope.access_key_id);
        (sts.faults.get(&action).cloned(), caller)
    };
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    let call = StsCall {
        action,
        caller: &caller,
        role_arn: &role_arn,
    };
    // The answer's tweaks (paging, padding) do not apply to STS.
    if let Err(reply) = fault::apply(injected, &call).await {
        return reply.into_response();
    }
    let answer = match action {
        StsAction::GetCallerIdentity => Ok(caller_identity(&caller)),
        StsAction::AssumeRole => assume_role(fake, &role_arn, params.get("RoleSessionName")),
    };
    Ok(match answer {
        Ok(body) => xml_response(200, body),
        Err(error) => error.response(),
    })
}

/// One STS call, as an injected fault needs it: the error faults are answered in STS's words
/// (`<ErrorResponse>`), an access denial naming the caller and the role; the faults that change
/// how a call ends (delay, hang, reset, a truncated body) are the shared ones of [`fault::apply`].
struct StsCall<'a> {
    action: StsAction,
    caller: &'a str,
    role_arn: &'a str,
}

impl Protocol for StsCall<'_> {
    fn error(&self, fault: ErrorFault<'_>) -> Response<FakeBody> {
        let error = match fault {
            ErrorFault::AccessDenied => {
                let resource = match self.action {
                    StsAction::AssumeRole => format!(" on resource: {}", self.role_arn),
                    StsAction::GetCallerIdentity => String::new(),
                };
                StsError::new(
                    403,
                    "AccessDenied",
                    format!(
                        "User: {} is not authorized to perform: sts:{}{resource}",
                        self.caller,
                        self.action.name()
                    ),
                )
            }
            ErrorFault::AccessDeniedWith(message) => StsError::new(403, "AccessDenied", message),
            ErrorFault::Throttling => StsError::new(400, "Throttling", "Rate exceeded"),
            ErrorFault::ExpiredToken => StsError::new(
                400,
                "ExpiredToken",
                "The security token included in the request is expired",
            ),
            ErrorFault::InternalError => {
                StsError::new(500, "InternalFailure", "An internal error occurred")
            }
            // STS has no such errors for these actions.
            ErrorFault::NotFound | ErrorFault::Validation | ErrorFault::UnknownError => {
                StsError::new(400, "InvalidAction", "Injected error")
            }
        };
        error.response()
    }

    fn malformed_body(&self) -> &'static [u8] {
        b"<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><Arn>arn:aws:iam::123"
    }
}

/// `arn:PARTITION:SERVICE::ACCOUNT:…` → `ACCOUNT`.
fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

fn caller_identity(caller: &str) -> String {
    let user_id = match caller.split_once(":assumed-role/") {
        // AROA…:SESSION for a role session, as STS answers.
        Some((_, rest)) => format!(
            "AROAFAKE{:012X}:{}",
            super::store::fnv1a(caller.as_bytes()) & 0xffff_ffff_ffff,
            rest.split('/').nth(1).unwrap_or("")
        ),
        None => format!(
            "AIDAFAKE{:012X}",
            super::store::fnv1a(caller.as_bytes()) & 0xffff_ffff_ffff
        ),
    };
    format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
        xml_escape(caller),
        xml_escape(&user_id),
        xml_escape(account_of(caller)),
        request_id()
    )
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME` → (partition, account, name).
fn parse_role_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, "iam", "", account, resource] = parts.as_slice() else {
        return None;
    };
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    let ok = *prefix == "arn"
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty();
    ok.then_some((partition, account, name))
}

fn assume_role(
    fake: &FakeHealthLake,
    role_arn: &str,
    session_name: Option<&String>,
) -> Result<String, StsError> {
    let Some((partition, account, name)) = parse_role_arn(role_arn) else {
        return Err(StsError::new(
            400,
            "ValidationError",
            "1 validation error detected: Value at 'roleArn' failed to satisfy constraint",
        ));
    };
    let session = session_name
        .filter(|s| !s.is_empty())
        .ok_or_else(|| StsError::new(400, "MissingParameter", "RoleSessionName is required"))?;
    let principal = format!("arn:{partition}:sts::{account}:assumed-role/{name}/{session}");
    let access_key_id = {
        let mut sts = fake.sts.lock();
        sts.issued += 1;
        let key = format!("ASIAFAKE{:012}", sts.issued);
        sts.sessions.insert(key.clone(), principal.clone());
        key
    };
    let expiration = humantime::format_rfc3339_seconds(SystemTime::now() + SESSION_LIFETIME);
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{XMLNS}\"><AssumeRoleResult><AssumedRoleUser><Arn>{}</Arn><AssumedRoleId>AROAFAKE:{}</AssumedRoleId></AssumedRoleUser><Credentials><AccessKeyId>{access_key_id}</AccessKeyId><SecretAccessKey>fake-session-secret</SecretAccessKey><SessionToken>fake-session-token-{access_key_id}</SessionToken><Expiration>{expiration}</Expiration></Credentials><PackedPolicySize>0</PackedPolicySize></AssumeRoleResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></AssumeRoleResponse>",
        xml_escape(&principal),
        xml_escape(session),
        request_id()
    ))
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml_response(status: u16, body: String) -> Response<FakeBody> {
    let length = body.len();
    let mut response = Response::new(FakeBody::full(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}

fn request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// `true` for a form-encoded body (an awsQuery request), with optional parameters, any case.
pub(crate) fn is_form_content_type(header: Option<&[u8]>) -> bool {
    header
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM_CONTENT_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_parsed_like_iam_does() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::210987654321:role/path/reader"),
            Some(("aws", "210987654321", "reader"))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::1:role/x"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::210987654321:user/x"), None);
        assert_eq!(parse_role_arn("not an arn"), None);
    }

    #[test]
    fn answers_escape_what_they_repeat() {
        let body = caller_identity("arn:aws:iam::123456789012:user/a<b>&");
        assert!(body.contains("<Arn>arn:aws:iam::123456789012:user/a&lt;b&gt;&amp;</Arn>"));
        assert!(body.contains("<Account>123456789012</Account>"));
        assert!(is_form_content_type(Some(
            b"application/x-www-form-urlencoded; charset=utf-8"
        )));
        assert!(!is_form_content_type(Some(b"application/x-amz-json-1.0")));
    }
}
