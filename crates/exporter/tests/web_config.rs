//! exporter-toolkit's web config file (`--web.config.file`) end to end, with the examples of
//! exporter-toolkit's own documentation and test data (`tests/fixtures/exporter-toolkit`, see its
//! README for their origin): HTTPS with the docs' sample and its users, a client CA, response
//! headers, reloads that change the file, and every refusal (both set, each unsupported key).
//! Loopback only; certificates are made at test time with rcgen.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{ca, leaf, tls_client as client, Ca};
use common::*;
use healthlake_exporter::config::ConfigFiles;
use healthlake_exporter::{Exporter, Overrides};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_healthlake-exporter");
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/exporter-toolkit"
);
/// The users of exporter-toolkit's docs/web-config.yml.
const ALICE: &str = "$2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze";
const BOB: &str = "$2y$10$hLqFl9jSjoAAy95Z/zw8Ye8wkdMBM8c5Bn1ptYqP/AXyV0.oy0S8m";

// ---- certificates and files ----

fn temp_dir(name: &str) -> TestDir {
    TestDir::new(&format!("web-config-{name}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
}

/// The TOML file: the fake's endpoint, one datastore, reloads over HTTP on; `server` is appended
/// to `[server]`.
fn toml_text(endpoint: &str, server: &str) -> String {
    format!(
        "[server]\nlisten_address = \"127.0.0.1:0\"\nenable_reload = true\n{server}\n[polling]\ninterval = \"1s\"\ntimeout = \"5s\"\n[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n[[datastores]]\nid = \"ds1\"\n"
    )
}

/// A directory with a server certificate (`server.crt`, `server.key`, signed by the returned CA
/// for `localhost`) and the TOML file.
fn server_files(name: &str, endpoint: &str) -> (TestDir, Ca) {
    let dir = temp_dir(name);
    let server_ca = ca("server-ca");
    let server = leaf(&server_ca, "server", 1, true);
    write(&dir.join("server.crt"), &server.cert_pem);
    write(&dir.join("server.key"), &server.key_pem);
    write(&dir.join("config.toml"), &toml_text(endpoint, ""));
    (dir, server_ca)
}

async fn start(dir: &Path) -> Exporter {
    let files = ConfigFiles {
        config: dir.join("config.toml"),
        web_config: Some(dir.join("web.yml")),
    };
    Exporter::start_from_files(files, Overrides::default(), test_options())
        .await
        .expect("the exporter starts with the web config file")
}

// ---- a TLS client ----

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// One HTTPS request: (status, lowercase head, body), or why there was none.
async fn https(
    exporter: &Exporter,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    let tcp = TcpStream::connect(exporter.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some((user, password)) = credentials {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .map_err(|_| "no response within 10 s".to_owned())?;
    if let (Err(e), true) = (read, response.is_empty()) {
        return Err(format!("read: {e}"));
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {head:?}"))?;
    Ok((status, head.to_lowercase(), body.to_owned()))
}

async fn reload_over_http(
    exporter: &Exporter,
    config: Arc<rustls::ClientConfig>,
    credentials: (&str, &str),
) -> (u16, String) {
    let (status, _, body) = https(exporter, config, "POST", "/-/reload", Some(credentials))
        .await
        .expect("an answer to POST /-/reload");
    (status, body)
}

// ---- the docs' sample: HTTPS and its users, changed by reloads ----

/// exporter-toolkit's docs/web-config.yml as written (TLS from `server.crt`/`server.key` beside
/// it, users alice and bob): HTTPS with the certificate the relative paths name, basic auth on
/// every route but the probes; then reloads (SIGHUP's path, and `POST /-/reload`) that change
/// the file add a user and headers, and remove the user again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_sample_serves_https_to_its_users_and_reloads_change_them() {
    let (_fake, fake_server) = start_fake().await;
    let (dir, server_ca) = server_files("docs-sample", &fake_server.endpoint_url());
    write(&dir.join("web.yml"), &fixture("web-config.yml"));
    let exporter = start(&dir).await;
    let tls = client(&server_ca, None, BOTH);

    let (status, head, body) = https(&exporter, tls.clone(), "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "ok\n"),
        "probes need no credentials"
    );
    assert!(!head.contains("x-content-type-options"), "{head}");
    for credentials in [
        None,
        Some(("alice", "not-her-password")),
        Some(("carol", "x")),
    ] {
        let (status, head, _) = https(&exporter, tls.clone(), "GET", "/metrics", credentials)
            .await
            .unwrap();
        assert_eq!(status, 401, "{credentials:?}");
        assert!(
            head.contains("www-authenticate: basic realm=\"healthlake-exporter\""),
            "{head}"
        );
    }

    // A reload that adds carol and a header (the path SIGHUP takes).
    let carol = bcrypt::hash("carol-password", 10).unwrap();
    write(
        &dir.join("web.yml"),
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: {ALICE}\n  bob: {BOB}\n  carol: {carol}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n"),
    );
    exporter
        .reload_handle()
        .reload()
        .await
        .expect("the reload is applied");
    let carol_login = Some(("carol", "carol-password"));
    let (status, head, body) = https(&exporter, tls.clone(), "GET", "/metrics", carol_login)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("healthlake_exporter_build_info{"), "{body}");
    assert!(
        head.contains("\r\nx-content-type-options: nosniff"),
        "{head}"
    );

    // POST /-/reload (with carol's credentials, still valid) to a file without carol.
    write(
        &dir.join("web.yml"),
        &format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: {ALICE}\n  bob: {BOB}\nhttp_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n"),
    );
    let (status, body) =
        reload_over_http(&exporter, tls.clone(), ("carol", "carol-password")).await;
    assert_eq!((status, body.as_str()), (200, "configuration reloaded\n"));
    let (status, head, _) = https(&exporter, tls.clone(), "GET", "/metrics", carol_login)
        .await
        .unwrap();
    assert_eq!(status, 401, "a removed user loses access at once");
    assert!(head.contains("\r\nx-frame-options: sameorigin"), "{head}");
    assert!(
        !head.contains("x-content-type-options"),
        "the removed header is gone: {head}"
    );

    exporter.shutdown().await;
}

// ---- a client CA ----

/// `RequireAndVerifyClientCert` with `client_ca_file`: every route but the probes needs a
/// certificate from that CA (403 without one; another CA's fails the handshake), and
/// `min_version: TLS13` refuses a TLS 1.2 client. A reload to `VerifyClientCertIfGiven` lets
/// clients without a certificate in, still verifying any certificate presented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_requires_verified_certificates_except_on_probes() {
    let (_fake, fake_server) = start_fake().await;
    let (dir, server_ca) = server_files("client-ca", &fake_server.endpoint_url());
    let clients_ca = ca("clients-ca");
    write(&dir.join("clients-ca.crt"), &clients_ca.cert.pem());
    let web = |auth: &str, extra: &str| {
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: clients-ca.crt\n  client_auth_type: {auth}\n{extra}")
    };
    write(
        &dir.join("web.yml"),
        &web("RequireAndVerifyClientCert", "  min_version: TLS13\n"),
    );
    let exporter = start(&dir).await;
    let trusted = leaf(&clients_ca, "trusted client", 2, false);
    let stranger = leaf(&ca("another-ca"), "stranger", 3, false);
    let anonymous = client(&server_ca, None, BOTH);

    let (status, _, _) = https(&exporter, anonymous.clone(), "GET", "/healthz", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "kubelet probes carry no certificate");
    let (status, _, _) = https(&exporter, anonymous.clone(), "GET", "/readyz", None)
        .await
        .unwrap();
    assert_ne!(status, 403);
    let (status, _, body) = https(&exporter, anonymous.clone(), "GET", "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("present a TLS client certificate"), "{body}");
    let with_cert = client(&server_ca, Some(&trusted), BOTH);
    let (status, _, body) = https(&exporter, with_cert.clone(), "GET", "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let from_stranger = client(&server_ca, Some(&stranger), BOTH);
    assert!(
        https(&exporter, from_stranger.clone(), "GET", "/metrics", None)
            .await
            .is_err()
    );
    let tls12 = client(&server_ca, Some(&trusted), &[&rustls::version::TLS12]);
    let refused = https(&exporter, tls12.clone(), "GET", "/healthz", None).await;
    assert!(
        refused.is_err(),
        "min_version TLS13 refuses TLS 1.2: {refused:?}"
    );

    write(&dir.join("web.yml"), &web("VerifyClientCertIfGiven", ""));
    exporter
        .reload_handle()
        .reload()
        .await
        .expect("the reload is applied");
    let (status, _, _) = https(&exporter, anonymous.clone(), "GET", "/metrics", None)
        .await
        .unwrap();
    assert_eq!(
        status, 200,
        "VerifyClientCertIfGiven lets a client without a certificate in"
    );
    assert!(
        https(&exporter, from_stranger, "GET", "/metrics", None)
            .await
            .is_err(),
        "a presented certificate is still verified"
    );
    let (status, _, _) = https(&exporter, tls12, "GET", "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "TLS 1.2 again, without min_version");

    // New paths that cannot be used refuse the reload, named as the web config file names them.
    write(
        &dir.join("web.yml"),
        "tls_server_config:\n  cert_file: renewed.crt\n  key_file: server.key\n",
    );
    let message = exporter
        .reload_handle()
        .reload()
        .await
        .unwrap_err()
        .to_string();
    let expected = format!(
        "{}: tls_server_config.cert_file: cannot read {}",
        dir.join("web.yml").display(),
        dir.join("renewed.crt").display()
    );
    assert!(message.starts_with(&expected), "{message}");
    let (status, _, _) = https(&exporter, anonymous, "GET", "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "the running configuration stays");

    exporter.shutdown().await;
}

// ---- headers ----

/// exporter-toolkit's test file with all five headers: each is on every response (metrics,
/// probes, errors), with the value written; without the file, none is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_on_every_response() {
    let (_fake, fake_server) = start_fake().await;
    let (dir, _) = server_files("headers", &fake_server.endpoint_url());
    write(
        &dir.join("web.yml"),
        &fixture("web_config_headers.good.yml"),
    );
    let exporter = start(&dir).await;
    let expected = [
        "x-frame-options: deny",
        "strict-transport-security: max-age=31536000; includesubdomains",
        "x-content-type-options: nosniff",
        "x-xss-protection: 1",
        "content-security-policy: default-src 'self' *.test.example.net",
    ];
    for (path, code) in [
        ("/metrics", 200),
        ("/healthz", 200),
        ("/", 200),
        ("/nope", 404),
    ] {
        let (status, head, _) = http_request(exporter.local_addr(), "GET", path, &[]).await;
        assert_eq!(status, code, "{path}");
        for line in expected {
            assert!(
                head.contains(&format!("\r\n{line}\r\n")) || head.ends_with(&format!("\r\n{line}")),
                "{path}: {line} missing in\n{head}"
            );
        }
    }
    exporter.shutdown().await;

    let plain = start_exporter(&toml_text(&fake_server.endpoint_url(), "")).await;
    let (_, head, _) = http_request(plain.local_addr(), "GET", "/metrics", &[]).await;
    assert!(!head.contains("x-frame-options"), "{head}");
    plain.shutdown().await;
}

// ---- refusals ----

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    // Killed (and the test failed) if it has not ended within a minute.
    let output = common::process::run_to_end(
        Command::new(BIN)
            .args(args)
            .env_remove("HEALTHLAKE_EXPORTER_CONFIG")
            .env_remove("HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE")
            .env_remove("HEALTHLAKE_EXPORTER_LISTEN_ADDRESS")
            .envs(env.iter().copied()),
        Duration::from_secs(60),
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// TLS and users are configured in one place: `[server.tls]` or `[server.basic_auth]` in the
/// TOML file with `--web.config.file` is refused at start, by `--check-config` (exit 2), and on a
/// reload (the running configuration stays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_both_is_refused_at_start_and_on_reload() {
    let (_fake, fake_server) = start_fake().await;
    let endpoint = fake_server.endpoint_url();
    let (dir, _) = server_files("both", &endpoint);
    let toml = dir.join("config.toml");
    let web = dir.join("web.yml");
    write(&web, &format!("basic_auth_users:\n  alice: {ALICE}\n"));
    let with_users = toml_text(
        &endpoint,
        &format!("[server.basic_auth]\nusers = {{ bob = \"{BOB}\" }}\n"),
    );
    write(&toml, &with_users);
    let expected = format!(
        "{}: [server.basic_auth] is set, and so is --web.config.file {}: TLS and basic auth are configured in one place",
        toml.display(),
        web.display()
    );
    let files = ConfigFiles {
        config: toml.clone(),
        web_config: Some(web.clone()),
    };
    let message = files.load().unwrap_err().to_string();
    assert!(message.starts_with(&expected), "{message}");
    assert!(
        message.contains("remove [server.tls] and [server.basic_auth]"),
        "{message}"
    );
    let (code, _, stderr) = check_config(
        &[
            "--check-config",
            "--config",
            toml.to_str().unwrap(),
            "--web.config.file",
            web.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {expected}")),
        "{stderr}"
    );

    // Started with the web config file alone, then [server.tls] appears in the TOML file.
    write(&toml, &toml_text(&endpoint, ""));
    let exporter = start(&dir).await;
    write(
        &toml,
        &toml_text(
            &endpoint,
            "[server.tls]\ncert_file = \"server.crt\"\nkey_file = \"server.key\"\n",
        ),
    );
    let message = exporter
        .reload_handle()
        .reload()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("[server.tls] is set, and so is --web.config.file"),
        "{message}"
    );
    let (status, _, _) = http_request(exporter.local_addr(), "GET", "/metrics", &[]).await;
    assert_eq!(
        status, 401,
        "the running configuration (plain HTTP, alice) stays"
    );
    exporter.shutdown().await;
}

/// Each key exporter-toolkit has but this exporter cannot honour as Go does is refused by
/// `--check-config` (exit 2), naming the file, the line and the key; the web config file comes
/// from `--web.config.file` or `HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE`.
#[test]
fn each_unsupported_key_is_refused_by_name() {
    let dir = temp_dir("unsupported");
    let toml = dir.join("config.toml");
    write(&toml, &toml_text("http://127.0.0.1:9", ""));
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let ca = "  client_ca_file: ca.crt\n";
    let cases = [
        (format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), "4:18", "tls_server_config.cipher_suites: not supported"),
        (format!("{tls}  curve_preferences: [X25519]\n"), "4:22", "tls_server_config.curve_preferences: not supported"),
        (format!("{tls}  client_allowed_sans: [scraper.example]\n"), "4:24", "tls_server_config.client_allowed_sans: not supported"),
        (format!("{tls}  cert: inline-pem\n"), "4:9", "tls_server_config.cert: inline PEM is not supported"),
        (format!("{tls}  key: inline-pem\n"), "4:8", "tls_server_config.key: inline PEM is not supported"),
        (format!("{tls}  client_ca: inline-pem\n"), "4:14", "tls_server_config.client_ca: inline PEM is not supported"),
        (format!("{tls}  min_version: TLS10\n"), "4:16", "tls_server_config.min_version: TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
        (format!("{tls}  max_version: TLS11\n"), "4:16", "tls_server_config.max_version: TLS 1.0 and 1.1 are deprecated (RFC 8996)"),
        (format!("{tls}{ca}  client_auth_type: RequestClientCert\n"), "5:21", "tls_server_config.client_auth_type: RequestClientCert accepts a client certificate without verifying it"),
        (format!("{tls}{ca}  client_auth_type: RequireAnyClientCert\n"), "5:21", "tls_server_config.client_auth_type: RequireAnyClientCert accepts a client certificate without verifying it"),
        ("http_server_config:\n  http2: true\n".to_owned(), "2:10", "http_server_config.http2: not supported: this exporter serves HTTP/1.1 only"),
        ("rate_limit:\n  interval: 1s\n  burst: 10\n".to_owned(), "2:3", "rate_limit: not supported"),
        ("basic_auth_users:\n  alice: hunter2\n".to_owned(), "2:10", "basic_auth_users.alice: is not a bcrypt hash"),
        ("tls_server_config:\n  certfile: server.crt\n".to_owned(), "2:3", "`tls_server_config.certfile` is not a key of exporter-toolkit's web config file"),
    ];
    for (index, (text, position, key)) in cases.iter().enumerate() {
        let web = dir.join(format!("web-{index}.yml"));
        write(&web, text);
        let toml_arg = toml.to_str().unwrap();
        let (code, stdout, stderr) = if index % 2 == 0 {
            check_config(
                &[
                    "--check-config",
                    "--config",
                    toml_arg,
                    "--web.config.file",
                    web.to_str().unwrap(),
                ],
                &[],
            )
        } else {
            check_config(
                &["--check-config", "--config", toml_arg],
                &[("HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE", web.to_str().unwrap())],
            )
        };
        assert_eq!(code, 2, "{text:?}\nstdout: {stdout}\nstderr: {stderr}");
        let expected = format!("error: {}:{position}: {key}", web.display());
        assert!(
            stderr.starts_with(&expected),
            "{text:?}\nexpected: {expected}\ngot: {stderr}"
        );
        assert!(
            !stderr.contains("inline-pem") && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

/// Every key of the format as exporter-toolkit's docs/web-configuration.md lists it is known:
/// set (with the documented default where there is one), it is accepted, or refused by name with
/// a reason, never as an unknown key.
#[test]
fn every_documented_key_is_known() {
    let dir = temp_dir("documented");
    let toml = dir.join("config.toml");
    write(&toml, &toml_text("http://127.0.0.1:9", ""));
    let schema = fixture("web-configuration-schema.txt");
    let keys = documented_keys(&schema);
    assert_eq!(keys.len(), 22, "{keys:?}");
    for (path, value) in keys {
        let text = yaml_setting(&path, &value);
        let web = dir.join("web.yml");
        write(&web, &text);
        let files = ConfigFiles {
            config: toml.clone(),
            web_config: Some(web),
        };
        if let Err(error) = files.load() {
            let message = error.to_string();
            let named = path.join(".");
            let section = &path[0];
            assert!(!message.contains("is not a key"), "{text:?}: {message}");
            assert!(
                message.contains(&format!(": {named}:"))
                    || message.contains(&format!(": {section}."))
                    || message.contains(&format!(": {section}:")),
                "{text:?}: {message}"
            );
        }
    }
}

/// (key path, value) for each key the schema shows (`tls_server_config.cert_file`, ...), by its
/// indentation; the value is the documented default where there is one, a list for a list key,
/// `{}` for the users, else `x`.
fn documented_keys(schema: &str) -> Vec<(Vec<String>, String)> {
    let mut keys = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    for line in schema.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let Some((name, rest)) = trimmed.trim_start_matches("[ ").split_once(':') else {
            continue;
        };
        let is_key = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if trimmed.starts_with('#') || !is_key {
            continue;
        }
        parents.retain(|(depth, _)| *depth < indent);
        let mut path: Vec<String> = parents.iter().map(|(_, p)| p.clone()).collect();
        path.push(name.to_owned());
        let rest = rest.trim();
        let value = match rest.split_once("default = ") {
            Some((_, default)) => default.trim_end_matches(" ]").trim_matches('"').to_owned(),
            None if parents.is_empty() && name == "basic_auth_users" => "{}".to_owned(),
            None if !rest.is_empty() => "x".to_owned(),
            // A section, a list or the headers: its keys or items follow.
            None if path.len() == 2 && name != "headers" => "[x]".to_owned(),
            None => {
                parents.push((indent, name.to_owned()));
                continue;
            }
        };
        keys.push((path, value));
    }
    keys
}

fn yaml_setting(path: &[String], value: &str) -> String {
    let mut text = String::new();
    for (depth, key) in path.iter().enumerate() {
        text.push_str(&"  ".repeat(depth));
        text.push_str(key);
        text.push(':');
        if depth + 1 == path.len() {
            text.push_str(&format!(" {value}"));
        }
        text.push('\n');
    }
    text
}

// ---- the flags ----

/// `--web.listen-address` is `--listen-address` under exporter-toolkit's name; `--check-config`
/// reads the docs' sample (TLS, two users) from `--web.config.file` and says so.
#[test]
fn the_flags_every_exporter_has() {
    let dir = temp_dir("flags");
    let toml = dir.join("config.toml");
    write(&toml, &toml_text("http://127.0.0.1:9", ""));
    let server_ca = ca("server-ca");
    let server = leaf(&server_ca, "server", 1, true);
    write(&dir.join("server.crt"), &server.cert_pem);
    write(&dir.join("server.key"), &server.key_pem);
    let web = dir.join("web-config.yml");
    write(&web, &fixture("web-config.yml"));
    let (toml_arg, web_arg) = (toml.to_str().unwrap(), web.to_str().unwrap());

    let (code, stdout, stderr) = check_config(
        &[
            "--check-config",
            "--config",
            toml_arg,
            "--web.config.file",
            web_arg,
            "--web.listen-address",
            "127.0.0.1:9999",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!("{toml_arg} and {web_arg} are valid\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains("listen_address   127.0.0.1:9999"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "tls on ({}), basic_auth 2 user(s)",
            dir.join("server.crt").display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "web config       {web_arg}: tls, basic_auth and 0 response header(s) from it"
        )),
        "{stdout}"
    );

    let (code, _, stderr) = check_config(
        &[
            "--check-config",
            "--config",
            toml_arg,
            "--web.listen-address",
            "localhost",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("is not an IP address and port"), "{stderr}");
    let (code, stdout, _) = check_config(&["--help"], &[]);
    assert_eq!(code, 0);
    for flag in [
        "--listen-address",
        "web.listen-address",
        "--web.config.file <PATH>",
        "HEALTHLAKE_EXPORTER_WEB_CONFIG_FILE",
    ] {
        assert!(stdout.contains(flag), "{flag} in --help:\n{stdout}");
    }
}
