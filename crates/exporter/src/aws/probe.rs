//! The preflight's calls (`--check-config --probe`): one cheap request per thing a configuration
//! needs, through the daemon's own clients, so that the credentials, roles, regions, endpoints
//! and request budgets are exactly the ones polling will use. A listing asks for one item and
//! never follows `NextToken`: it proves the call is allowed and the datastore is there, nothing
//! more. Also where the preflight learns which endpoint a failed call went to, and which regions
//! to search for a datastore that is not where the configuration says.

use aws_config::SdkConfig;
use aws_types::service_config::ServiceConfigKey;

use super::classify::classify;
use super::usage::api_usage;
use super::PacedClient;
use crate::model::{JobKind, PollError};

/// The regions HealthLake runs in, from "AWS HealthLake endpoints and quotas"
/// (<https://docs.aws.amazon.com/general/latest/gr/Amazon-HealthLake.html>): where the preflight
/// looks for a datastore that its configured region does not have.
pub const HEALTHLAKE_REGIONS: [&str; 8] = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "ap-south-1",
    "ap-southeast-2",
];

/// `ListFHIRExportJobs` or `ListFHIRImportJobs` for one job of the datastore, paced by the
/// client's request budget.
pub async fn list_one_job(
    client: &PacedClient,
    kind: JobKind,
    datastore_id: &str,
) -> Result<(), PollError> {
    client.budget.acquire().await;
    let sdk = &client.sdk;
    // The two operations take the same input under other type names: one call, spelled once.
    macro_rules! first_job {
        ($request:expr) => {
            $request
                .datastore_id(datastore_id)
                .max_results(1)
                .send()
                .await
                .map(drop)
                .map_err(classify)
        };
    }
    let result = match kind {
        JobKind::Export => first_job!(sdk.list_fhir_export_jobs()),
        JobKind::Import => first_job!(sdk.list_fhir_import_jobs()),
    };
    api_usage().record(kind.operation(), &result);
    result
}

/// `ListFHIRDatastores` for one datastore, paced by the client's request budget.
pub async fn list_one_datastore(client: &PacedClient) -> Result<(), PollError> {
    client.budget.acquire().await;
    let result = client
        .sdk
        .list_fhir_datastores()
        .max_results(1)
        .send()
        .await
        .map(drop)
        .map_err(classify);
    api_usage().record("ListFHIRDatastores", &result);
    result
}

/// An AWS service the exporter calls, for naming the endpoint a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    HealthLake,
    Sqs,
    Sts,
}

impl Service {
    /// The SDK's service id, as its `AWS_ENDPOINT_URL_<ID>` variable and profile keys name it.
    fn id(self) -> &'static str {
        match self {
            Service::HealthLake => "HealthLake",
            Service::Sqs => "SQS",
            Service::Sts => "STS",
        }
    }
}

/// The endpoint a client of `service` in `region` sends to, as the SDK decides it: the
/// configured `endpoint_url`, else one set in the environment or profile
/// (`AWS_ENDPOINT_URL_HEALTHLAKE`, `AWS_ENDPOINT_URL`, …), else the service's own endpoint for
/// the region. `None` when the SDK would not resolve one either (a region it refuses).
pub async fn endpoint_of(
    service: Service,
    region: &str,
    configured: Option<&str>,
    base: &SdkConfig,
) -> Option<String> {
    if let Some(url) = configured {
        return Some(url.to_owned());
    }
    let from_environment = base.service_config().and_then(|config| {
        let key = ServiceConfigKey::builder()
            .service_id(service.id())
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .ok()?;
        config.load_config(key)
    });
    if from_environment.is_some() {
        return from_environment;
    }
    // The three SDKs' resolvers have the same shape under their own type names.
    macro_rules! default_endpoint {
        ($sdk:ident) => {{
            let params = $sdk::config::endpoint::Params::builder()
                .region(region)
                .build()
                .ok()?;
            $sdk::config::endpoint::ResolveEndpoint::resolve_endpoint(
                &$sdk::config::endpoint::DefaultResolver::new(),
                &params,
            )
            .await
        }};
    }
    let endpoint = match service {
        Service::HealthLake => default_endpoint!(aws_sdk_healthlake),
        Service::Sqs => default_endpoint!(aws_sdk_sqs),
        Service::Sts => default_endpoint!(aws_sdk_sts),
    };
    endpoint.ok().map(|e| e.url().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoints_are_named_as_the_sdk_resolves_them() {
        let base = SdkConfig::builder().build();
        let cases = [
            (
                Service::HealthLake,
                "https://healthlake.eu-west-2.amazonaws.com",
            ),
            (Service::Sqs, "https://sqs.eu-west-2.amazonaws.com"),
            (Service::Sts, "https://sts.eu-west-2.amazonaws.com"),
        ];
        for (service, expected) in cases {
            assert_eq!(
                endpoint_of(service, "eu-west-2", None, &base)
                    .await
                    .as_deref(),
                Some(expected),
                "{service:?}"
            );
        }
        assert_eq!(
            endpoint_of(Service::Sqs, "eu-west-2", Some("http://127.0.0.1:1"), &base)
                .await
                .as_deref(),
            Some("http://127.0.0.1:1")
        );
    }
}
