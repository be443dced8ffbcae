//! The remote console: a real WebSocket client speaks RFB 3.8 to the URL that
//! `POST /servers/{id}/remote-consoles` hands out, and refused tokens are refused.

use std::collections::HashSet;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vmauto::sim::fault::FaultRule;

use super::Sim;

const S: &str = "/janus/20180725/servers";

/// How long a test waits for one answer from the console.
const WAIT: Duration = Duration::from_secs(5);

/// A minimal VNC client over a WebSocket, as noVNC is.
pub struct Vnc {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    buf: Vec<u8>,
}

/// What `ServerInit` says.
#[derive(Debug)]
pub struct Init {
    pub width: u16,
    pub height: u16,
    pub pixel_format: [u8; 16],
    pub name: String,
}

/// One rectangle of a `FramebufferUpdate` (Raw encoding), pixels as the wire carried them.
#[derive(Debug)]
pub struct Update {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
    pub pixels: Vec<u8>,
}

/// The HTTP status with which the WebSocket upgrade was refused, or the other error.
pub async fn refused(url: &str) -> u16 {
    match Vnc::connect(url).await {
        Ok(_) => panic!("the console at {url} opened"),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected failure: {e}"),
    }
}

impl Vnc {
    /// Opens the console URL (`http` → `ws`, `https` → `wss`), offering noVNC's `binary`.
    pub async fn connect(url: &str) -> Result<Self, tungstenite::Error> {
        let mut req = url.replacen("http", "ws", 1).into_client_request()?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", "binary".parse().expect("header"));
        let (ws, resp) = tokio_tungstenite::connect_async(req).await?;
        let protocol = resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        assert_eq!(protocol, Some("binary"), "the offered subprotocol is accepted");
        Ok(Self { ws, buf: Vec::new() })
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.ws.send(Message::Binary(bytes.to_vec().into())).await.expect("send");
    }

    /// Exactly `n` bytes of the stream, whatever the frames; `None` when the server closed.
    async fn try_read(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("the console answers in time");
            match msg {
                Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return None,
                other => panic!("unexpected WebSocket message {other:?}"),
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    pub async fn read(&mut self, n: usize) -> Vec<u8> {
        self.try_read(n).await.expect("the console closed")
    }

    /// Version, security None, SecurityResult, ClientInit, ServerInit.
    pub async fn handshake(&mut self) -> Init {
        assert_eq!(self.read(12).await, b"RFB 003.008\n");
        self.send(b"RFB 003.008\n").await;
        assert_eq!(self.read(2).await, vec![1, 1], "one security type: None");
        self.send(&[1]).await;
        assert_eq!(self.read(4).await, vec![0, 0, 0, 0], "SecurityResult OK");
        self.send(&[1]).await;
        let init = self.read(24).await;
        let len = u32::from_be_bytes(init[20..24].try_into().expect("4 bytes")) as usize;
        let name = String::from_utf8(self.read(len).await).expect("UTF-8 name");
        Init {
            width: u16::from_be_bytes([init[0], init[1]]),
            height: u16::from_be_bytes([init[2], init[3]]),
            pixel_format: init[4..20].try_into().expect("16 bytes"),
            name,
        }
    }

    /// noVNC's pixel format (32 bpp little-endian, red at shift 0, blue at 16) and encodings.
    pub async fn set_novnc_format(&mut self) {
        let mut msg = vec![0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0];
        // SetEncodings: Raw, CopyRect, DesktopSize (pseudo, -223).
        msg.extend([2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1]);
        msg.extend((-223i32).to_be_bytes());
        self.send(&msg).await;
    }

    pub async fn request(&mut self, incremental: bool, width: u16, height: u16) {
        let mut msg = vec![3, u8::from(incremental), 0, 0, 0, 0];
        msg.extend(width.to_be_bytes());
        msg.extend(height.to_be_bytes());
        self.send(&msg).await;
    }

    /// One `FramebufferUpdate` of 4-byte pixels; `None` when the server closed instead.
    pub async fn update(&mut self) -> Option<Vec<Update>> {
        let head = self.try_read(4).await?;
        assert_eq!(head[0], 0, "FramebufferUpdate");
        let mut rects = Vec::new();
        for _ in 0..u16::from_be_bytes([head[2], head[3]]) {
            let r = self.read(12).await;
            let at = |i: usize| u16::from_be_bytes([r[i], r[i + 1]]);
            assert_eq!(&r[8..12], &[0, 0, 0, 0], "Raw encoding");
            let (x, y, w, h) = (at(0), at(2), at(4), at(6));
            let pixels = self.read(usize::from(w) * usize::from(h) * 4).await;
            rects.push(Update { x, y, w, h, pixels });
        }
        Some(rects)
    }
}

async fn console_url(sim: &Sim, id: &str) -> String {
    let body = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
    let c = sim.data(Method::POST, &format!("{S}/{id}/remote-consoles"), Some(body)).await;
    c["url"].as_str().expect("url").to_string()
}

#[actix_web::test]
async fn the_console_speaks_rfb_and_shows_the_vm() {
    let sim = Sim::start().await;
    let id = sim.running_vm("console-vm").await;
    // Once vmtools reports the IP the screen holds still but for the cursor.
    sim.server_until(&id, "an IP", |s| s["ips"][0].is_string()).await;
    let url = console_url(&sim, &id).await;
    assert!(url.starts_with(&format!("{}/console/novnc/?server_id={id}&token=", sim.base)), "{url}");

    let mut vnc = Vnc::connect(&url).await.expect("the console opens");
    let init = vnc.handshake().await;
    assert_eq!((init.width, init.height, init.name.as_str()), (640, 400, "console-vm"));
    // 32 bpp, depth 24, little-endian true colour, 255 per channel.
    assert_eq!(&init.pixel_format[..10], &[32, 24, 0, 1, 0, 255, 0, 255, 0, 255]);

    vnc.set_novnc_format().await;
    vnc.request(false, 640, 400).await;
    let full = vnc.update().await.expect("an update");
    assert_eq!(full.len(), 1);
    let r = &full[0];
    assert_eq!((r.x, r.y, r.w, r.h), (0, 0, 640, 400));
    let colours: HashSet<&[u8]> = r.pixels.chunks(4).collect();
    assert!(colours.len() >= 3, "a screen with text on it, not one colour: {} colours", colours.len());
    // The title bar (0x1d4e89) in noVNC's byte order: red first.
    assert_eq!(&r.pixels[..4], &[0x1d, 0x4e, 0x89, 0]);

    // Keys, pointer and clipboard are read and ignored; the cursor blink is the next change.
    vnc.send(&[4, 1, 0, 0, 0, 0, 0xff, 0x0d, 5, 1, 0, 5, 0, 5, 6, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c']).await;
    vnc.request(true, 640, 400).await;
    let blink = vnc.update().await.expect("the cursor blinks");
    let area: usize = blink.iter().map(|r| usize::from(r.w) * usize::from(r.h)).sum();
    assert!(area > 0 && area <= 16 * 16, "only the cursor changes: {blink:?}");

    // Powered off: the whole screen changes.
    let t = sim.data(Method::POST, &format!("{S}/{id}/stop"), Some(json!({"force": 1}))).await;
    sim.finish(t["task_id"].as_str().expect("task")).await;
    let mut changed = 0;
    for _ in 0..10 {
        vnc.request(true, 640, 400).await;
        let rects = vnc.update().await.expect("an update");
        changed = rects.iter().map(|r| usize::from(r.w) * usize::from(r.h)).sum();
        if changed > 100_000 {
            break;
        }
    }
    assert!(changed > 100_000, "the powered-off screen replaces the login prompt");

    // Deleted for good: the session ends.
    let d = sim.data(Method::DELETE, &format!("{S}/{id}"), Some(json!({"force": 1}))).await;
    sim.finish(d["task_id"].as_str().expect("task")).await;
    vnc.request(true, 640, 400).await;
    let mut closed = false;
    for _ in 0..5 {
        if vnc.update().await.is_none() {
            closed = true;
            break;
        }
    }
    assert!(closed, "the console closes once its server is gone");
    assert_eq!(refused(&url).await, 404, "a deleted server's console cannot be opened");
    sim.stop().await;
}

#[actix_web::test]
async fn unknown_expired_and_misused_tokens_are_refused() {
    let sim = Sim::start().await;
    let id = sim.running_vm("console-refused").await;
    let other = sim.running_vm("console-other").await;
    let url = console_url(&sim, &id).await;
    let token = url.split("token=").nth(1).expect("token").to_string();
    let base = format!("{}/console/novnc/", sim.base);

    assert_eq!(refused(&format!("{base}?server_id={id}&token=0123456789abcdef")).await, 403);
    assert_eq!(refused(&format!("{base}?server_id={other}&token={token}")).await, 403, "bound to its server");
    assert_eq!(refused(&format!("{}/console/xvpvnc/?server_id={id}&token={token}", sim.base)).await, 403);
    assert_eq!(refused(&format!("{base}?server_id={id}")).await, 403);
    assert_eq!(refused(&format!("{}/console/other/?server_id={id}&token={token}", sim.base)).await, 404);

    // Without a WebSocket upgrade the URL only says how to open it.
    let plain = sim.http.get(&url).send().await.expect("plain GET");
    assert_eq!(plain.status().as_u16(), 426);

    // A fault rule refuses consoles like any other endpoint.
    sim.server.add_fault(FaultRule::parse("GET /console/* error_rate=1 status=503 times=1").expect("rule"));
    assert_eq!(refused(&url).await, 503);
    // A token opens sessions until it expires, more than once.
    for _ in 0..2 {
        let mut vnc = Vnc::connect(&url).await.expect("the console opens");
        assert_eq!(vnc.handshake().await.name, "console-refused");
    }

    // Tokens live `console_ttl_secs`.
    let (status, knobs) = sim.control(Method::PUT, "/_sim/config", Some(json!({"console_ttl_secs": 1}))).await;
    assert_eq!((status, knobs["console_ttl_secs"].as_u64()), (200, Some(1)));
    let short = console_url(&sim, &id).await;
    Vnc::connect(&short).await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(refused(&short).await, 403);

    // A console of a stopped VM opens on the powered-off screen.
    let t = sim.data(Method::POST, &format!("{S}/{other}/stop"), Some(json!({"force": 1}))).await;
    sim.finish(t["task_id"].as_str().expect("task")).await;
    let mut vnc = Vnc::connect(&console_url(&sim, &other).await).await.expect("opens");
    vnc.handshake().await;
    vnc.request(false, 640, 400).await;
    let screen = vnc.update().await.expect("an update");
    // The powered-off background (0x202428) in the server's own format (xRGB, little-endian).
    assert!(screen[0].pixels.chunks(4).any(|p| p == [0x28, 0x24, 0x20, 0]), "powered-off screen");
    // With nothing changing, an incremental request waits instead of answering empty.
    vnc.request(true, 640, 400).await;
    let quiet = tokio::time::timeout(Duration::from_millis(1500), vnc.update()).await;
    assert!(quiet.is_err(), "no update while nothing changes");

    // Expiring tokens (login tokens too, so this comes last) closes the door.
    let (status, expired) = sim.control(Method::POST, "/_sim/tokens/expire", None).await;
    assert!(status == 200 && expired["consoles"].as_u64().is_some_and(|n| n >= 1), "{expired}");
    assert_eq!(refused(&url).await, 403);
    sim.stop().await;
}
