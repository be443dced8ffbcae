//! The console's picture: a small text screen drawn with the public-domain 8×8 font of
//! `font8x8`, doubled. A running VM shows a login prompt with a blinking cursor; any other
//! status a notice ("powered off", "starting", …). The VM's name and status are always on it.

use font8x8::legacy::BASIC_LEGACY;

use crate::sim::world::VmStatus;

/// Screen size in pixels.
pub const WIDTH: u16 = 640;
pub const HEIGHT: u16 = 400;
/// Each font pixel is drawn as a SCALE×SCALE square.
const SCALE: usize = 2;
/// A character cell.
const CELL: usize = 8 * SCALE;
const COLS: usize = WIDTH as usize / CELL;
const ROWS: usize = HEIGHT as usize / CELL;

const BLACK: u32 = 0x000000;
const GREY: u32 = 0xc0c0c0;
const WHITE: u32 = 0xffffff;
const TITLE: u32 = 0x1d4e89;
const DIM: u32 = 0x202428;

/// A rectangle of pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub w: u16,
    pub h: u16,
}

impl Rect {
    pub fn area(&self) -> usize {
        usize::from(self.w) * usize::from(self.h)
    }

    /// The common part of two rectangles, if it is not empty.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let (x0, y0) = (self.x.max(other.x), self.y.max(other.y));
        let x1 = (u32::from(self.x) + u32::from(self.w)).min(u32::from(other.x) + u32::from(other.w));
        let y1 = (u32::from(self.y) + u32::from(self.h)).min(u32::from(other.y) + u32::from(other.h));
        let w = u16::try_from(x1.checked_sub(u32::from(x0))?).ok()?;
        let h = u16::try_from(y1.checked_sub(u32::from(y0))?).ok()?;
        (w > 0 && h > 0).then_some(Rect { x: x0, y: y0, w, h })
    }
}

/// What the screen shows about a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub name: String,
    pub hostname: String,
    pub os_name: String,
    pub status: VmStatus,
    /// The first address vmtools reports, once it does.
    pub ip: Option<String>,
}

/// Pixels as `0xRRGGBB`, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    width: u16,
    height: u16,
    pixels: Vec<u32>,
}

impl Frame {
    pub fn new(width: u16, height: u16, colour: u32) -> Self {
        Self { width, height, pixels: vec![colour; usize::from(width) * usize::from(height)] }
    }

    pub fn bounds(&self) -> Rect {
        Rect { x: 0, y: 0, w: self.width, h: self.height }
    }

    /// The pixel at (x, y), which must lie within the frame.
    pub fn pixel(&self, x: u16, y: u16) -> u32 {
        self.pixels[usize::from(y) * usize::from(self.width) + usize::from(x)]
    }

    pub fn fill(&mut self, r: Rect, colour: u32) {
        let Some(r) = r.intersect(&self.bounds()) else { return };
        for y in r.y..r.y + r.h {
            let row = usize::from(y) * usize::from(self.width);
            self.pixels[row + usize::from(r.x)..row + usize::from(r.x + r.w)].fill(colour);
        }
    }

    /// Copies `r` of `other` (a frame of the same size) into this one.
    pub fn copy_from(&mut self, other: &Frame, r: Rect) {
        let Some(r) = r.intersect(&self.bounds()) else { return };
        for y in r.y..r.y + r.h {
            let row = usize::from(y) * usize::from(self.width);
            let span = row + usize::from(r.x)..row + usize::from(r.x + r.w);
            self.pixels[span.clone()].copy_from_slice(&other.pixels[span]);
        }
    }

    /// The smallest rectangle holding every pixel that differs from `other` (same size).
    pub fn diff(&self, other: &Frame) -> Option<Rect> {
        let w = usize::from(self.width);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, (a, b)) in self.pixels.iter().zip(&other.pixels).enumerate() {
            if a != b {
                let (x, y) = (i % w, i / w);
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
        if x0 == usize::MAX {
            return None;
        }
        let n = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
        Some(Rect { x: n(x0), y: n(y0), w: n(x1 - x0 + 1), h: n(y1 - y0 + 1) })
    }

    /// Text at a character cell; characters outside ASCII are drawn as `?`, and whatever
    /// passes the right edge is cut.
    fn text(&mut self, col: usize, row: usize, text: &str, fg: u32) {
        for (i, c) in text.chars().enumerate().take(COLS.saturating_sub(col)) {
            let glyph =
                BASIC_LEGACY[if c.is_ascii() && !c.is_ascii_control() { c as usize } else { usize::from(b'?') }];
            let (left, top) = ((col + i) * CELL, row * CELL);
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in (0..8).filter(|gx| bits & (1 << gx) != 0) {
                    let x = u16::try_from(left + gx * SCALE).unwrap_or(u16::MAX);
                    let y = u16::try_from(top + gy * SCALE).unwrap_or(u16::MAX);
                    let px = u16::try_from(SCALE).unwrap_or(1);
                    self.fill(Rect { x, y, w: px, h: px }, fg);
                }
            }
        }
    }

    /// A row of cells filled with `colour`.
    fn band(&mut self, row: usize, colour: u32) {
        let y = u16::try_from(row * CELL).unwrap_or(u16::MAX);
        self.fill(Rect { x: 0, y, w: self.width, h: u16::try_from(CELL).unwrap_or(1) }, colour);
    }

    /// Text centred on a row.
    fn centred(&mut self, row: usize, text: &str, fg: u32) {
        let len = text.chars().count().min(COLS);
        self.text((COLS - len) / 2, row, text, fg);
    }
}

/// What a VM in `status` shows when it is not running.
fn notice(status: VmStatus) -> &'static str {
    match status {
        VmStatus::Stopped => "The virtual machine is powered off.",
        VmStatus::Suspended => "The virtual machine is suspended.",
        VmStatus::Creating | VmStatus::Cloning => "The virtual machine is being built.",
        VmStatus::Starting => "The virtual machine is starting...",
        VmStatus::Rebooting => "The virtual machine is restarting...",
        VmStatus::Stopping => "The virtual machine is shutting down.",
        VmStatus::Updating | VmStatus::Migrating => "The virtual machine is being changed.",
        VmStatus::Error | VmStatus::VmLost => "The virtual machine is in error.",
        VmStatus::Running => "",
    }
}

/// The status bar's colour.
fn status_colour(status: VmStatus) -> u32 {
    match status {
        VmStatus::Running => 0x2e7d32,
        VmStatus::Stopped | VmStatus::Suspended => 0x8b1e1e,
        VmStatus::Error | VmStatus::VmLost => 0xb71c1c,
        _ => 0x9a6b00,
    }
}

/// Draws the screen; `cursor` is the blink phase of the login prompt's cursor.
pub fn render(view: &View, cursor: bool) -> Frame {
    let running = view.status == VmStatus::Running;
    let mut f = Frame::new(WIDTH, HEIGHT, if running { BLACK } else { DIM });
    f.band(0, TITLE);
    f.text(1, 0, &format!("SCP console: {}", view.name), WHITE);
    if running {
        let os = if view.os_name.is_empty() { "Linux" } else { view.os_name.as_str() };
        f.text(0, 2, os, GREY);
        f.text(0, 3, "Kernel on an x86_64 (tty1)", GREY);
        let prompt = format!("{} login: ", view.hostname);
        f.text(0, 5, &prompt, GREY);
        if cursor {
            let col = prompt.chars().count().min(COLS - 1);
            let (x, y) = (u16::try_from(col * CELL).unwrap_or(0), u16::try_from(5 * CELL + CELL - 4).unwrap_or(0));
            f.fill(Rect { x, y, w: u16::try_from(CELL).unwrap_or(1), h: 3 }, GREY);
        }
    } else {
        f.centred(ROWS / 2 - 1, notice(view.status), WHITE);
        f.centred(ROWS / 2 + 1, &view.name, GREY);
    }
    f.band(ROWS - 1, status_colour(view.status));
    let ip = view.ip.as_deref().map(|ip| format!("  {ip}")).unwrap_or_default();
    f.text(1, ROWS - 1, &format!("{}{ip}", view.status.as_str().to_uppercase()), WHITE);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: VmStatus) -> View {
        View {
            name: "web-1".into(),
            hostname: "web-1".into(),
            os_name: "Ubuntu 22.04".into(),
            status,
            ip: Some("192.168.10.5".into()),
        }
    }

    #[test]
    fn the_cursor_blinks_and_nothing_else_moves() {
        let on = render(&view(VmStatus::Running), true);
        let off = render(&view(VmStatus::Running), false);
        let changed = on.diff(&off).expect("the cursor differs");
        assert!(changed.area() <= CELL * 3, "{changed:?}");
        assert_eq!(on.diff(&on.clone()), None);
        let stopped = render(&view(VmStatus::Stopped), true);
        assert_eq!(stopped, render(&view(VmStatus::Stopped), false), "a stopped VM has no cursor");
        assert!(stopped.diff(&on).is_some_and(|r| r.area() > 100_000));
    }

    #[test]
    fn text_is_drawn_and_clipped() {
        let mut f = Frame::new(WIDTH, HEIGHT, BLACK);
        f.text(0, 0, "A", WHITE);
        assert!(f.pixels.contains(&WHITE));
        let mut long = Frame::new(WIDTH, HEIGHT, BLACK);
        long.text(COLS - 1, ROWS - 1, "naïve and very long", WHITE);
        long.text(0, 0, &"x".repeat(200), WHITE);
        let r = Rect { x: 600, y: 380, w: 100, h: 100 };
        assert_eq!(r.intersect(&long.bounds()), Some(Rect { x: 600, y: 380, w: 40, h: 20 }));
        assert_eq!(Rect { x: 10, y: 10, w: 5, h: 5 }.intersect(&Rect { x: 15, y: 0, w: 5, h: 50 }), None);
    }
}
