//! Where and as whom a datastore is reached (region, endpoint, role), and the checks of those
//! settings: the AWS client module owns its settings; the config module reads them from the file.

/// Where and as whom a datastore is reached. Datastores with equal targets share one SDK client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AwsTarget {
    /// `None`: the SDK's region chain (AWS_REGION, profile, IMDS) decides.
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub role_arn: Option<String>,
}

/// An AWS region name (`us-east-1`). The checks below never repeat the value in their message:
/// the config module adds the file, line and key, which say where it is.
pub(crate) fn check_region(region: &str) -> Result<(), String> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("is not an AWS region name (lowercase letters, digits and dashes); write it like \"us-east-1\"".to_owned())
    }
}

/// Whether a URL has a user-info part (`user:password@` before the host).
pub(crate) fn has_user_info(url: &str) -> bool {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

/// An `http://` or `https://` URL with a host, no user-info and no query string.
pub(crate) fn check_endpoint_url(url: &str) -> Result<(), String> {
    let hint =
        "write it like \"https://healthlake.us-east-1.amazonaws.com\" or \"http://127.0.0.1:4566\"";
    // A user-info part (`user:password@`) is never accepted: the SDK signs requests with AWS
    // credentials, so one there is a secret pasted by mistake.
    if has_user_info(url) {
        return Err(format!(
            "must not contain a user name or password (`user:password@`); AWS credentials come from the SDK's chain; {hint}"
        ));
    }
    let uri: hyper::Uri = url.parse().map_err(|_| format!("is not a URL; {hint}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("must start with http:// or https://; {hint}")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("has no host; {hint}"));
    }
    if uri.query().is_some() {
        return Err(format!("must not have a query string; {hint}"));
    }
    Ok(())
}

/// An IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub(crate) fn check_role_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && matches!(
            parts[1],
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b"
        )
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && !name.ends_with('/'));
    if ok {
        Ok(())
    } else {
        Err("is not an IAM role ARN (arn:PARTITION:iam::<12-digit account>:role/<name>); write it like \"arn:aws:iam::123456789012:role/healthlake-exporter\"".to_owned())
    }
}
