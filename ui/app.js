// vmauto admin UI: live updates over server-sent events. Pages work without this file;
// with it, VPS states, IPs and notifications change in place as they happen.
(function () {
  'use strict';
  if (!window.EventSource) return;
  var main = document.getElementById('main');
  if (!main) return;
  var unseen = 0;

  function toast(text, critical) {
    var box = document.getElementById('toasts');
    if (!box) return;
    var t = document.createElement('div');
    t.className = 'toast' + (critical ? ' critical' : '');
    t.textContent = text;
    box.appendChild(t);
    setTimeout(function () { t.remove(); }, 8000);
  }

  // A VPS the page lists but does not show yet (a new row): refresh the table in place.
  var refreshing = false, again = false;
  function refreshTable() {
    var table = document.getElementById('vps-table') || document.querySelector('.empty.card');
    if (!table || !document.querySelector('form.filters[action="/vps"]')) return;
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(location.href, { credentials: 'same-origin' }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var fresh = doc.getElementById('vps-table');
      var current = document.getElementById('vps-table') || document.querySelector('.empty.card');
      if (fresh && current) current.replaceWith(fresh);
    }).finally(function () {
      refreshing = false;
      if (again) { again = false; refreshTable(); }
    });
  }

  var es = new EventSource('/events');
  es.addEventListener('vps', function (e) {
    var v;
    try { v = JSON.parse(e.data); } catch (err) { return; }
    var known = false;
    document.querySelectorAll('[data-vps-state]').forEach(function (el) {
      if (el.getAttribute('data-vps-state') !== v.id) return;
      known = true;
      if (el.textContent !== v.state) {
        el.textContent = v.state;
        el.className = 'state state-' + v.state;
        var row = el.closest('tr, h1');
        if (row) { row.classList.remove('flash-row'); void row.offsetWidth; row.classList.add('flash-row'); }
      }
    });
    document.querySelectorAll('[data-vps-ips]').forEach(function (el) {
      if (el.getAttribute('data-vps-ips') === v.id && Array.isArray(v.ips) && v.ips.length) {
        el.textContent = v.ips.join(' ');
      }
    });
    if (!known) refreshTable();
  });
  // On a VPS page, an operation of that VPS moving on refreshes its timeline in place.
  var timelineBusy = false;
  es.addEventListener('operation', function (e) {
    var o;
    try { o = JSON.parse(e.data); } catch (err) { return; }
    var tl = document.getElementById('timeline');
    if (!tl || timelineBusy || location.pathname !== '/vps/' + o.vps) return;
    timelineBusy = true;
    fetch(location.pathname, { credentials: 'same-origin' }).then(function (r) { return r.text(); }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('timeline');
      var current = document.getElementById('timeline');
      if (fresh && current) current.replaceWith(fresh);
    }).finally(function () { timelineBusy = false; });
  });
  es.addEventListener('notification', function (e) {
    var n;
    try { n = JSON.parse(e.data); } catch (err) { return; }
    unseen += 1;
    var badge = document.getElementById('notif-count');
    if (badge) { badge.textContent = String(unseen); badge.hidden = false; }
    toast(n.title || 'notification', n.severity === 'critical');
  });
})();
