// The customer's portal: keeps the status block live by polling `<base>/status` every few
// seconds (the page works without it), and asks before a power cut.
(function () {
  "use strict";
  var root = document.getElementById("portal");
  if (!root) return;
  var base = root.getAttribute("data-base");
  function set(id, text, cls) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = text;
    if (cls !== undefined) el.className = "badge " + cls;
  }
  var lastCurrent = root.getAttribute("data-current") || "";
  function poll() {
    fetch(base + "/status", { credentials: "omit", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return;
        var cur = s.current || "";
        // A task just finished: reload, so buttons and history match (and the page says
        // "nothing" only once it is the new page).
        if (lastCurrent && !cur) { window.location.replace(base); return; }
        set("vps-state", s.state, s.state);
        set("vps-power", s.power, s.power);
        var ips = document.getElementById("vps-ips");
        if (ips) ips.textContent = s.ips.length ? s.ips.join(", ") : "none yet";
        set("vps-current", cur || "nothing", cur ? "running" : "");
        var ready = document.getElementById("password-ready");
        if (ready) ready.hidden = !s.password_ready;
        lastCurrent = cur;
      })
      .catch(function () {});
  }
  setInterval(poll, 4000);
  var cut = document.getElementById("power-form");
  if (cut) {
    cut.addEventListener("submit", function (e) {
      var sel = cut.querySelector("select");
      if (sel && sel.value === "force_stop" && !window.confirm("Cut the power? Unsaved work in the server is lost.")) {
        e.preventDefault();
      }
    });
  }
})();
