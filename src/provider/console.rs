//! Opening a remote console SCP handed out ([`ConsoleUrl`]): a WebSocket to the URL, over
//! TLS with the same trust as every other SCP connection (`provider.sangfor.ca_file`,
//! `verify_tls`). The socket carries VNC (RFB) in binary frames; vmauto relays it to the
//! customer's browser, so neither SCP's address nor its console token reaches the customer.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{ConsoleUrl, ProviderError, ProviderResult};

/// A byte stream a console socket runs over (TCP, or TLS over TCP).
pub trait ConsoleIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ConsoleIo for T {}

/// An open console: WebSocket frames to and from SCP's VNC endpoint.
pub type ConsoleSocket = tokio_tungstenite::WebSocketStream<Box<dyn ConsoleIo>>;

fn failed(url: &ConsoleUrl, what: impl std::fmt::Display) -> ProviderError {
    ProviderError::Connection(format!("console {}: {what}", url.redacted()))
}

/// Opens `url` (`https://` as `wss://`, `http://` as `ws://`), offering the `binary`
/// subprotocol as noVNC does, within `timeout`.
pub async fn connect(
    url: &ConsoleUrl,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> ProviderResult<ConsoleSocket> {
    let mut parsed = url::Url::parse(url.expose()).map_err(|e| failed(url, format!("not a URL ({e})")))?;
    let secure = match parsed.scheme() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        other => return Err(failed(url, format!("unsupported scheme {other:?}"))),
    };
    let _ = parsed.set_scheme(if secure { "wss" } else { "ws" });
    let host = parsed.host_str().ok_or_else(|| failed(url, "no host"))?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(if secure { 443 } else { 80 });
    let mut request = parsed.as_str().into_client_request().map_err(|e| failed(url, e))?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
    let open = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| failed(url, e))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn ConsoleIo> = if secure {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| failed(url, e))?;
            let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(|e| failed(url, e))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (socket, _) = tokio_tungstenite::client_async(request, io).await.map_err(|e| failed(url, e))?;
        Ok(socket)
    };
    tokio::time::timeout(timeout, open).await.map_err(|_| failed(url, "timed out"))?
}
