// The customer's console: noVNC (served by vmauto from /assets/novnc) drawing the VM's screen
// through vmauto's relay, `<base>/console/ws` on this same host.
import RFB from "./novnc/core/rfb.js";

const root = document.getElementById("console");
const status = document.getElementById("console-status");
const base = root.getAttribute("data-base");
const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
const url = scheme + "//" + window.location.host + base + "/console/ws";

function say(text) {
  status.textContent = text;
}

say("Connecting…");
const rfb = new RFB(document.getElementById("console-screen"), url, { wsProtocols: ["binary"] });
rfb.scaleViewport = true;
rfb.addEventListener("connect", () => {
  // Scale once the screen's size is known, so the whole screen fits the page.
  rfb.scaleViewport = false;
  rfb.scaleViewport = true;
  say("Connected. Click the screen to type.");
});
rfb.addEventListener("disconnect", (e) => {
  say(e.detail.clean ? "The console was closed. Reload the page to open it again." : "The console could not be reached. Reload the page to try again.");
});
rfb.addEventListener("desktopname", (e) => root.setAttribute("data-desktop", e.detail.name));
document.getElementById("console-cad").addEventListener("click", () => rfb.sendCtrlAltDel());
window.vmautoConsole = rfb;
