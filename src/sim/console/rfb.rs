//! The server side of RFB 3.8 (RFC 6143) without I/O: bytes from the client go in, bytes for
//! the client and the client's update requests come out.
//!
//! The handshake offers only security type None (1). Clients that answer with version 3.3 or
//! 3.7 get those versions' slightly different security handshakes. After `ServerInit` the
//! client's messages are parsed by their exact lengths: `SetPixelFormat` is honoured for
//! true-colour formats of 8, 16 or 32 bits per pixel, `FramebufferUpdateRequest` is handed to
//! the caller, and `SetEncodings`, `KeyEvent`, `PointerEvent` and `ClientCutText` are read and
//! ignored (updates are always Raw, which every client supports).

use super::screen::{Frame, Rect};

/// The version the server announces.
pub const VERSION: &[u8; 12] = b"RFB 003.008\n";
/// Security type None.
const SECURITY_NONE: u8 = 1;
/// Largest `ClientCutText` accepted; a bigger one ends the session.
const MAX_CUT_TEXT: usize = 1 << 20;

/// How pixels are laid out on the wire (RFC 6143 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// What `ServerInit` announces: 32 bits per pixel, depth 24, little-endian true colour.
    pub const SERVER: Self = Self {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = u8::from(self.big_endian);
        b[3] = u8::from(self.true_colour);
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Reads the 16 bytes of a pixel format.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        Self {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        }
    }

    /// Whether the server can send pixels in this format; why not otherwise.
    pub fn check(&self) -> Result<(), String> {
        if !self.true_colour {
            return Err("colour-map pixel formats are not supported".into());
        }
        if ![8, 16, 32].contains(&self.bits_per_pixel) {
            return Err(format!("{} bits per pixel is not supported", self.bits_per_pixel));
        }
        for (max, shift) in
            [(self.red_max, self.red_shift), (self.green_max, self.green_shift), (self.blue_max, self.blue_shift)]
        {
            let bits = 16 - max.leading_zeros();
            if max == 0 || u32::from(shift) + bits > u32::from(self.bits_per_pixel) {
                return Err(format!("colour max {max} at shift {shift} does not fit {} bits", self.bits_per_pixel));
            }
        }
        Ok(())
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Appends one `0xRRGGBB` colour in this format. The format must have passed [`check`].
    ///
    /// [`check`]: PixelFormat::check
    pub fn put(&self, rgb: u32, out: &mut Vec<u8>) {
        let channel = |value: u32, max: u16, shift: u8| (((value & 0xff) * u32::from(max) + 127) / 255) << shift;
        let v = channel(rgb >> 16, self.red_max, self.red_shift)
            | channel(rgb >> 8, self.green_max, self.green_shift)
            | channel(rgb, self.blue_max, self.blue_shift);
        let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(le[0]),
            (16, false) => out.extend_from_slice(&le[..2]),
            (16, true) => out.extend_from_slice(&be[2..]),
            (_, false) => out.extend_from_slice(&le),
            (_, true) => out.extend_from_slice(&be),
        }
    }
}

/// A `FramebufferUpdateRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateRequest {
    pub incremental: bool,
    pub area: Rect,
}

/// What the session must do after a [`Rfb::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Bytes for the client (handshake answers).
    Send(Vec<u8>),
    /// The client asks for an update.
    Update(UpdateRequest),
    /// The pixel format changed: whatever the client has must be sent again when asked.
    Refresh,
    /// End the session, for this reason (after sending what came before).
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Version,
    Security { minor: u8 },
    ClientInit,
    Running,
    Closed,
}

/// One client's protocol state.
#[derive(Debug)]
pub struct Rfb {
    phase: Phase,
    buf: Vec<u8>,
    format: PixelFormat,
    width: u16,
    height: u16,
    name: String,
}

impl Rfb {
    /// A session for a `width`×`height` screen called `name`; send [`VERSION`] first.
    pub fn new(width: u16, height: u16, name: &str) -> Self {
        Self { phase: Phase::Version, buf: Vec::new(), format: PixelFormat::SERVER, width, height, name: name.into() }
    }

    /// The pixel format updates are sent in.
    pub fn format(&self) -> PixelFormat {
        self.format
    }

    /// Takes bytes from the client and answers what they complete.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Out> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        self.buf.extend_from_slice(input);
        while let Some((used, answers)) = self.step() {
            self.buf.drain(..used);
            let closing = answers.iter().any(|o| matches!(o, Out::Close(_)));
            out.extend(answers);
            if closing {
                self.phase = Phase::Closed;
                self.buf.clear();
                break;
            }
        }
        out
    }

    /// One complete client message at the front of the buffer: how many bytes it took and
    /// what it asks for. `None` while it is incomplete.
    fn step(&mut self) -> Option<(usize, Vec<Out>)> {
        let b = &self.buf;
        match self.phase {
            Phase::Closed => None,
            Phase::Version => {
                let version: [u8; 12] = b.get(..12)?.try_into().ok()?;
                Some((12, self.version(&version)))
            }
            Phase::Security { minor } => {
                let choice = *b.first()?;
                if choice != SECURITY_NONE {
                    let mut failed = 1u32.to_be_bytes().to_vec();
                    if minor >= 8 {
                        let reason = b"only security type None is offered";
                        failed.extend_from_slice(&u32::try_from(reason.len()).unwrap_or(0).to_be_bytes());
                        failed.extend_from_slice(reason);
                    }
                    let refused = Out::Close(format!("the client chose security type {choice}"));
                    return Some((1, vec![Out::Send(failed), refused]));
                }
                self.phase = Phase::ClientInit;
                // 3.7 sends no SecurityResult for None; 3.8 does.
                let ok = (minor >= 8).then(|| Out::Send(0u32.to_be_bytes().to_vec()));
                Some((1, ok.into_iter().collect()))
            }
            Phase::ClientInit => {
                b.first()?;
                self.phase = Phase::Running;
                Some((1, vec![Out::Send(self.server_init())]))
            }
            Phase::Running => self.message().map(|(used, o)| (used, o.into_iter().collect())),
        }
    }

    /// Answers the client's `ProtocolVersion`.
    fn version(&mut self, v: &[u8; 12]) -> Vec<Out> {
        let parsed = (v.starts_with(b"RFB ") && v[7] == b'.' && v[11] == b'\n')
            .then(|| {
                let major: u16 = std::str::from_utf8(&v[4..7]).ok()?.parse().ok()?;
                let minor: u16 = std::str::from_utf8(&v[8..11]).ok()?.parse().ok()?;
                Some((major, minor))
            })
            .flatten();
        let minor = match parsed {
            Some((3, m)) if m >= 8 => 8,
            Some((3, 7)) => 7,
            // RFC 6143 §7.1.1: other 3.x versions are treated as 3.3.
            Some((3, _)) => 3,
            _ => {
                let text = String::from_utf8_lossy(v);
                return vec![Out::Close(format!("unsupported protocol version {:?}", text.trim()))];
            }
        };
        if minor == 3 {
            // 3.3: the server names the security type.
            self.phase = Phase::ClientInit;
            return vec![Out::Send(u32::from(SECURITY_NONE).to_be_bytes().to_vec())];
        }
        self.phase = Phase::Security { minor };
        vec![Out::Send(vec![1, SECURITY_NONE])]
    }

    fn server_init(&self) -> Vec<u8> {
        let name = self.name.as_bytes();
        let mut out = Vec::with_capacity(24 + name.len());
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&self.height.to_be_bytes());
        out.extend_from_slice(&self.format.to_bytes());
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(name);
        out
    }

    /// One client-to-server message (RFC 6143 §7.5), parsed by its exact length.
    fn message(&mut self) -> Option<(usize, Option<Out>)> {
        let b = &self.buf;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        match *b.first()? {
            // SetPixelFormat: type, 3 padding, 16 bytes of format.
            0 => {
                let raw: &[u8; 16] = b.get(4..20)?.try_into().ok()?;
                let format = PixelFormat::from_bytes(raw);
                Some((
                    20,
                    Some(match format.check() {
                        Ok(()) => {
                            self.format = format;
                            Out::Refresh
                        }
                        Err(why) => Out::Close(why),
                    }),
                ))
            }
            // SetEncodings: type, padding, count, count × i32. Raw needs no announcement.
            2 => {
                b.get(..4)?;
                let len = 4 + 4 * usize::from(u16_at(2));
                b.get(..len)?;
                Some((len, None))
            }
            // FramebufferUpdateRequest: type, incremental, x, y, width, height.
            3 => {
                b.get(..10)?;
                let area = Rect { x: u16_at(2), y: u16_at(4), w: u16_at(6), h: u16_at(8) };
                Some((10, Some(Out::Update(UpdateRequest { incremental: b[1] != 0, area }))))
            }
            // KeyEvent: type, down flag, 2 padding, keysym.
            4 => b.get(..8).map(|_| (8, None)),
            // PointerEvent: type, button mask, x, y.
            5 => b.get(..6).map(|_| (6, None)),
            // ClientCutText: type, 3 padding, length, text. A negative length is the extended
            // clipboard form (its absolute value is the payload's length).
            6 => {
                let raw: [u8; 4] = b.get(4..8)?.try_into().ok()?;
                let len = usize::try_from(i32::from_be_bytes(raw).unsigned_abs()).unwrap_or(usize::MAX);
                if len > MAX_CUT_TEXT {
                    return Some((8, Some(Out::Close(format!("cut text of {len} bytes is too long")))));
                }
                b.get(..8 + len)?;
                Some((8 + len, None))
            }
            other => Some((1, Some(Out::Close(format!("unsupported client message type {other}"))))),
        }
    }

    /// A `FramebufferUpdate` carrying `rects` of `frame` in Raw encoding, in the client's
    /// pixel format. Rectangles must lie within the frame.
    pub fn update(&self, frame: &Frame, rects: &[Rect]) -> Vec<u8> {
        let bpp = self.format.bytes_per_pixel();
        let rects = &rects[..rects.len().min(usize::from(u16::MAX))];
        let size: usize = rects.iter().map(|r| 12 + r.area() * bpp).sum();
        let mut out = Vec::with_capacity(4 + size);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&u16::try_from(rects.len()).unwrap_or(u16::MAX).to_be_bytes());
        for r in rects {
            for v in [r.x, r.y, r.w, r.h] {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.extend_from_slice(&0i32.to_be_bytes());
            for y in r.y..r.y + r.h {
                for x in r.x..r.x + r.w {
                    self.format.put(frame.pixel(x, y), &mut out);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Rfb {
        let mut rfb = Rfb::new(4, 2, "vm-1");
        assert_eq!(rfb.feed(b"RFB 003.008\n"), vec![Out::Send(vec![1, 1])]);
        assert_eq!(rfb.feed(&[1]), vec![Out::Send(vec![0, 0, 0, 0])]);
        let Out::Send(init) = &rfb.feed(&[1])[0] else { panic!("ServerInit") };
        assert_eq!(&init[..4], &[0, 4, 0, 2]);
        assert_eq!(&init[4..20], &PixelFormat::SERVER.to_bytes());
        assert_eq!(&init[20..24], &[0, 0, 0, 4]);
        assert_eq!(&init[24..], b"vm-1");
        rfb
    }

    #[test]
    fn handshake_then_messages_split_anywhere() {
        let mut rfb = ready();
        // SetEncodings (2 encodings), KeyEvent, PointerEvent, ClientCutText "hi", then an
        // update request, fed one byte at a time.
        let mut stream = vec![2, 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x21];
        stream.extend([4, 1, 0, 0, 0, 0, 0xff, 0x0d]);
        stream.extend([5, 0, 0, 10, 0, 20]);
        stream.extend([6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        stream.extend([3, 1, 0, 1, 0, 0, 0, 2, 0, 1]);
        let mut out = Vec::new();
        for byte in &stream {
            out.extend(rfb.feed(&[*byte]));
        }
        let area = Rect { x: 1, y: 0, w: 2, h: 1 };
        assert_eq!(out, vec![Out::Update(UpdateRequest { incremental: true, area })]);
    }

    #[test]
    fn pixel_formats_are_honoured() {
        let mut rfb = ready();
        // noVNC's format: 32 bpp, depth 24, little-endian, red at shift 0, blue at 16.
        let novnc = PixelFormat { red_shift: 0, blue_shift: 16, ..PixelFormat::SERVER };
        let mut msg = vec![0, 0, 0, 0];
        msg.extend(novnc.to_bytes());
        assert_eq!(rfb.feed(&msg), vec![Out::Refresh]);
        let mut frame = Frame::new(4, 2, 0x11_22_33);
        frame.fill(Rect { x: 0, y: 0, w: 1, h: 1 }, 0xaa_bb_cc);
        let bytes = rfb.update(&frame, &[Rect { x: 0, y: 0, w: 2, h: 1 }]);
        assert_eq!(&bytes[..4], &[0, 0, 0, 1]);
        assert_eq!(&bytes[4..16], &[0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..], &[0xaa, 0xbb, 0xcc, 0, 0x11, 0x22, 0x33, 0]);
        // RGB565 big-endian.
        let rgb565 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
            ..PixelFormat::SERVER
        };
        let mut out = Vec::new();
        rgb565.put(0xff_ff_ff, &mut out);
        rgb565.put(0xff_00_00, &mut out);
        assert_eq!(out, vec![0xff, 0xff, 0xf8, 0x00]);
        // A colour map is refused, as is a shift past the pixel.
        let mut msg = vec![0, 0, 0, 0];
        msg.extend(PixelFormat { true_colour: false, ..PixelFormat::SERVER }.to_bytes());
        assert!(matches!(rfb.feed(&msg)[..], [Out::Close(_)]));
        assert!(PixelFormat { red_shift: 30, ..PixelFormat::SERVER }.check().is_err());
    }

    #[test]
    fn older_versions_and_refusals() {
        let mut v33 = Rfb::new(1, 1, "x");
        assert_eq!(v33.feed(b"RFB 003.003\n"), vec![Out::Send(vec![0, 0, 0, 1])]);
        assert!(matches!(&v33.feed(&[0])[..], [Out::Send(_)]), "3.3 goes straight to ClientInit");
        let mut v37 = Rfb::new(1, 1, "x");
        assert_eq!(v37.feed(b"RFB 003.007\n"), vec![Out::Send(vec![1, 1])]);
        assert!(v37.feed(&[1]).is_empty(), "3.7 has no SecurityResult for None");
        let mut bad = Rfb::new(1, 1, "x");
        assert!(matches!(&bad.feed(b"HTTP/1.1 200\n")[..], [Out::Close(_)]));
        assert!(bad.feed(b"more").is_empty(), "a closed session ignores input");
        let mut vnc_auth = Rfb::new(1, 1, "x");
        vnc_auth.feed(b"RFB 003.008\n");
        let refused = vnc_auth.feed(&[2]);
        let [Out::Send(failed), Out::Close(_)] = &refused[..] else {
            panic!("SecurityResult, then close: {refused:?}")
        };
        assert_eq!(&failed[..4], &[0, 0, 0, 1]);
        let mut rfb = ready();
        assert!(matches!(&rfb.feed(&[9])[..], [Out::Close(_)]));
        let mut rfb = ready();
        assert!(matches!(&rfb.feed(&[6, 0, 0, 0, 0x7f, 0, 0, 0])[..], [Out::Close(_)]));
    }
}
