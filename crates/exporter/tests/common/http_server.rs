//! The exporter's HTTP server alone, over a State nobody polls, with limits chosen by the test:
//! for the tests of the endpoint's bounds (connection caps, timeouts, TLS, floods).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use healthlake_exporter::config::Config;
use healthlake_exporter::state::State;
use healthlake_exporter::web::{self, HttpContext, Limits};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

/// A running server; [`Server::shutdown`] stops it and waits for its connections to end.
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves `config_text`'s `[server]` on 127.0.0.1, with the limits `limits` sets. With
/// `send_buffer`, accepted connections get that kernel send buffer (they inherit it from the
/// listening socket), so that a client that stops reading stalls the server's writes after a
/// few hundred kilobytes instead of the several megabytes Linux grows it to on loopback.
pub async fn serve_with(
    config_text: &str,
    send_buffer: Option<u32>,
    limits: impl FnOnce(&mut Limits),
) -> Server {
    let config = Config::parse(config_text, Path::new("test.toml")).expect("valid config");
    let state = Arc::new(State::new(&config, super::now()));
    let mut chosen = Limits::new(&config.server);
    limits(&mut chosen);
    let context = HttpContext::with_limits(state, &config.server, chosen).expect("HTTP context");
    let loopback = "127.0.0.1:0".parse().unwrap();
    let listener = match send_buffer {
        None => web::bind(loopback).await.unwrap(),
        Some(size) => {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_send_buffer_size(size).unwrap();
            socket.bind(loopback).unwrap();
            socket.listen(1024).unwrap()
        }
    };
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(web::serve(listener, Arc::new(context), async {
        let _ = stopped.await;
    }));
    Server { addr, stop, task }
}

/// An `Authorization: Basic` header value.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
