//! Wire-level tests of the fake STS: the real `aws-sdk-sts` client (and aws-config's AssumeRole
//! credentials provider) over loopback HTTP, on the fake HealthLake's port.

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Builder, Region};
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::Client;
use healthlake_fake::{FakeHealthLake, FakeServer, Fault, StsAction, DEFAULT_CALLER_ARN};

mod common;

async fn start() -> (FakeHealthLake, FakeServer) {
    common::serve(FakeHealthLake::new()).await
}

fn builder(server: &FakeServer) -> Builder {
    common::sts_config(server, "eu-west-1").retry_config(RetryConfig::disabled())
}

#[tokio::test]
async fn get_caller_identity_names_the_configured_principal() {
    let (fake, server) = start().await;
    let sts = Client::from_conf(builder(&server).build());
    let me = sts.get_caller_identity().send().await.expect("identity");
    assert_eq!(me.arn(), Some(DEFAULT_CALLER_ARN));
    assert_eq!(me.account(), Some("123456789012"));
    assert!(me.user_id().is_some_and(|id| id.starts_with("AIDA")));

    let pod_role = "arn:aws:sts::210987654321:assumed-role/app/i-0abc";
    fake.set_caller_arn(pod_role);
    let me = sts.get_caller_identity().send().await.expect("identity");
    assert_eq!(me.arn(), Some(pod_role));
    assert_eq!(me.account(), Some("210987654321"));
    assert_eq!(fake.sts_request_count(StsAction::GetCallerIdentity), 2);
}

/// aws-config's AssumeRole provider gets session keys from the fake; the fake then names the
/// role's session as the principal of requests signed with them.
#[tokio::test]
async fn assumed_role_sessions_are_their_own_principal() {
    let (fake, server) = start().await;
    let base = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(common::keys())
        .load()
        .await;
    let role = "arn:aws:iam::210987654321:role/team/reader";
    let provider = aws_config::sts::AssumeRoleProvider::builder(role)
        .session_name("preflight")
        .configure(&base)
        .build()
        .await;
    let sts = Client::from_conf(builder(&server).credentials_provider(provider).build());
    let me = sts.get_caller_identity().send().await.expect("identity");
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::210987654321:assumed-role/reader/preflight")
    );
    assert_eq!(me.account(), Some("210987654321"));
    assert_eq!(fake.sts_request_count(StsAction::AssumeRole), 1);
}

#[tokio::test]
async fn faults_answer_as_sts_does() {
    let (fake, server) = start().await;
    let sts = Client::from_conf(builder(&server).build());
    fake.set_sts_fault_for(StsAction::AssumeRole, Some(Fault::AccessDenied));
    let error = sts
        .assume_role()
        .role_arn("arn:aws:iam::210987654321:role/reader")
        .role_session_name("s")
        .send()
        .await
        .expect_err("denied");
    assert_eq!(error.code(), Some("AccessDenied"));
    assert_eq!(
        error.message(),
        Some(&*format!("User: {DEFAULT_CALLER_ARN} is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::210987654321:role/reader"))
    );
    // Other actions are unaffected; clearing the fault lets AssumeRole through.
    assert!(sts.get_caller_identity().send().await.is_ok());
    fake.set_sts_fault_for(StsAction::AssumeRole, None);
    let session = sts
        .assume_role()
        .role_arn("arn:aws:iam::210987654321:role/reader")
        .role_session_name("s")
        .send()
        .await
        .expect("assumed");
    let credentials = session.credentials().expect("credentials");
    assert!(credentials.access_key_id().starts_with("ASIA"));

    fake.set_sts_fault_for(StsAction::GetCallerIdentity, Some(Fault::ExpiredToken));
    let error = sts.get_caller_identity().send().await.expect_err("expired");
    assert_eq!(error.code(), Some("ExpiredToken"));
    let error = sts
        .assume_role()
        .role_arn("arn:aws:iam::1:role/x")
        .role_session_name("s")
        .send()
        .await
        .expect_err("a bad ARN");
    assert_eq!(error.code(), Some("ValidationError"));
}
