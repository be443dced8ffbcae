// Browser test of the vmauto admin UI in Debian's Chromium, driven by Playwright.
// Started by tests/browser.rs with a running appliance (and SCP simulator); its environment:
//   VMAUTO_URL       the appliance's base URL
//   VMAUTO_WEBHOOK   a GoHighLevel source URL (with its token)
//   VMAUTO_PASSWORD  the password of users "admin" (admin) and "viewer" (viewer)
//   VMAUTO_SHOTS     where screenshots of the main pages are written
//   CHROMIUM         the browser (default /usr/bin/chromium)
// Exits non-zero with the failing step on the first failed check.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.VMAUTO_URL;
const hook = process.env.VMAUTO_WEBHOOK;
const password = process.env.VMAUTO_PASSWORD;
const shots = process.env.VMAUTO_SHOTS || 'artifacts';
const sim = process.env.VMAUTO_SIM;
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const problems = [];
async function newPage({ expectForbidden = false } = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('dialog', (d) => { problems.push(`a dialog opened: ${d.message()}`); d.dismiss(); });
  page.on('pageerror', (e) => problems.push(`page error: ${e}`));
  page.on('console', (m) => {
    // A CSP violation or a failed script shows as a console error.
    const forbidden = expectForbidden && m.text().includes('status of 403');
    if (m.type() === 'error' && !forbidden) problems.push(`console: ${m.text()}`);
  });
  return page;
}

async function simState() {
  const r = await fetch(`${sim}/_sim/state`);
  return r.json();
}

function liveVms(state) {
  return state.servers.filter((s) => !s.recycled);
}

let current = '';
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

// Chromium sometimes answers "Unable to capture screenshot" when the machine is busy (the
// integration tests run beside this one): the page is fine, the capture is tried again.
async function shot(page, name) {
  for (let attempt = 1; ; attempt++) {
    try {
      await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
      return;
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('Unable to capture screenshot')) throw e;
      await page.waitForTimeout(500 * attempt);
    }
  }
}

async function login(page, user, pw) {
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/login/, 'an anonymous visit lands on the login page');
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', pw);
  await page.click('button[type=submit]');
}

/** Reloads `url` until `check(page)` holds (live updates are tested elsewhere). */
async function eventually(page, url, check, what, secs = 60) {
  const deadline = Date.now() + secs * 1000;
  for (;;) {
    await page.goto(url);
    if (await check(page)) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await page.waitForTimeout(500);
  }
}

async function sendWebhook(sub, name) {
  const body = {
    contact_id: `CNT-${sub}`, full_name: name, email: `${sub}@example.com`,
    customData: { event: 'subscribe', plan: 'starter', subscription_id: sub },
  };
  const r = await fetch(hook, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 202, 'the webhook is accepted');
}

const evil = '<script>alert("xss")</script> Mallory';
let vpsUrl = '';

try {
  const page = await newPage();

  await step('log in (a wrong password first)', async () => {
    await login(page, 'admin', 'not the password at all');
    await page.waitForSelector('.flash.err');
    assert.match(await page.textContent('.flash.err'), /Wrong username or password/);
    await shot(page, 'login');
    await page.fill('input[name=username]', 'admin');
    await page.fill('input[name=password]', password);
    await page.click('button[type=submit]');
    await page.waitForURL(`${base}/`);
    assert.equal(await page.textContent('h1'), 'Dashboard');
    await shot(page, 'dashboard-empty');
  });

  await step('a webhook-created VPS turns active live, its name shown as text', async () => {
    await page.goto(`${base}/vps`);
    await page.evaluate(() => { window.vmautoMarker = 'same page'; });
    await sendWebhook('sub_browser_1', evil);
    await page.waitForFunction(
      () => [...document.querySelectorAll('#vps-table [data-vps-state]')].some((e) => e.textContent === 'active'),
      null, { timeout: 60000 },
    );
    assert.equal(await page.evaluate(() => window.vmautoMarker), 'same page', 'no reload: the row changed in place');
    const text = await page.textContent('#vps-table');
    assert.ok(text.includes(evil), 'the customer name shows as text');
    assert.equal(await page.locator('#vps-table script').count(), 0, 'no script element was injected');
    await shot(page, 'vps-list');
    vpsUrl = base + (await page.getAttribute('#vps-table tbody a', 'href'));
  });

  await step('dashboard shows the VPS and the charts', async () => {
    await page.goto(`${base}/`);
    assert.ok(await page.locator('.tile.state-active').count() > 0, 'an active tile');
    assert.ok(await page.locator('svg.chart').count() > 0, 'a chart is drawn');
    await shot(page, 'dashboard');
  });

  await step('reset a VPS', async () => {
    await page.goto(vpsUrl);
    await shot(page, 'vps-detail');
    await page.click('button:has-text("Reset")');
    await page.waitForSelector('.flash.ok');
    await eventually(page, vpsUrl, async (p) => (await p.textContent('#timeline')).match(/reset\s+—\s+succeeded/), 'the reset to succeed');
    const tasks = (await simState()).tasks.filter((t) => t.status === 'finish').map((t) => t.action);
    assert.ok(tasks.includes('reboot_server'), `the reset power-cycled the VM: ${tasks}`);
  });

  await step('rebuild a VPS: a new VM from the image, the old one deleted', async () => {
    await page.goto(vpsUrl);
    const before = liveVms(await simState());
    assert.equal(before.length, 1);
    const name = (await page.textContent('h1')).replace(/\s+\S+$/, '').trim();
    assert.ok(await page.locator('#rebuild-form select[name=image_id] option').count() >= 1, 'images to choose from');
    await page.fill('#rebuild-form input[name=confirm]', name);
    await shot(page, 'vps-rebuild');
    await page.click('#rebuild-form button:has-text("Rebuild")');
    await page.waitForSelector('.flash.ok');
    await eventually(page, vpsUrl, async (p) => (await p.textContent('#timeline')).match(/rebuild\s+—\s+succeeded/), 'the rebuild to succeed', 90);
    const after = liveVms(await simState());
    assert.equal(after.length, 1, 'one VM after the rebuild');
    assert.notEqual(after[0].id, before[0].id, 'a new VM');
    assert.equal(after[0].status, 'running');
  });

  await step('resize a VPS', async () => {
    await page.fill('input[name=cores]', '2');
    await page.fill('input[name=memory_mb]', '2048');
    await page.click('button:has-text("Resize")');
    await page.waitForSelector('.flash.ok');
    await eventually(page, vpsUrl, async (p) => (await p.textContent('main')).includes('2 vCPU · 2 GB'), 'the new spec');
  });

  await step('a POST without its CSRF token is refused', async () => {
    const r = await page.request.post(`${vpsUrl}/action`, { form: { action: 'suspend' }, maxRedirects: 0 });
    assert.equal(r.status(), 403);
  });

  await step('edit a template', async () => {
    await page.goto(`${base}/templates/edit?name=vps-small`);
    await page.fill('input[name=description]', 'Edited in the browser');
    await shot(page, 'template-form');
    await page.click('button:has-text("Save template")');
    await page.waitForSelector('.flash.ok');
    assert.ok((await page.textContent('main')).includes('Edited in the browser'));
    await shot(page, 'templates');
  });

  await step('replay an inbox event', async () => {
    await page.goto(`${base}/inbox`);
    await shot(page, 'inbox');
    await page.click('table.rows tbody a');
    assert.ok((await page.textContent('#inbox-body')).includes('sub_browser_1'), 'the body is shown');
    await shot(page, 'inbox-event');
    await page.click('button:has-text("Replay")');
    await page.waitForSelector('.flash.ok');
    assert.match(await page.textContent('.flash.ok'), /Replayed/);
  });

  await step('a customer pays for an upgrade and watches it finish', async () => {
    await page.goto(vpsUrl);
    await page.click('button:has-text("Issue an upgrade link")');
    await page.waitForSelector('.flash.ok');
    const link = (await page.textContent('.flash.ok')).match(/https?:\/\/\S+\/upgrade\/\S+/)[0];
    assert.ok(!page.url().includes('/upgrade/'), `the link is not in the address bar: ${page.url()}`);
    const c = await newPage();
    await c.goto(link);
    const body = await c.textContent('body');
    assert.ok(!body.includes('Log out') && !body.includes('srv-'), 'no admin data on the customer page');
    assert.ok(!body.includes('+100000 vCPU'), 'an offer SCP cannot fulfil is not sold');
    await shot(c, 'upgrade-page');
    await c.click('li.offer:has-text("+2 GB memory") button');
    await c.waitForURL(/\/c\/pay\//);
    await c.click('#pay');
    await c.waitForURL(/\/upgrade\/.+\/done/);
    await c.locator('h1', { hasText: /complete/i }).waitFor({ timeout: 90000 });
    await shot(c, 'upgrade-done');
    await eventually(page, vpsUrl, async (p) => (await p.textContent('main')).includes('2 vCPU · 4 GB'), 'the upgraded spec');
  });

  await step('delete a VPS with a typed confirmation, watching it go live', async () => {
    await page.goto(vpsUrl);
    const name = (await page.textContent('h1')).replace(/\s+\S+$/, '').trim();
    await page.fill('#delete-form input[name=confirm]', 'not the name');
    await page.click('button:has-text("Delete now")');
    await page.waitForSelector('.flash.err');
    await page.fill('#delete-form input[name=confirm]', name);
    await page.click('button:has-text("Delete now")');
    await page.waitForSelector('.flash.ok');
    await page.waitForFunction(() => document.querySelector('h1 [data-vps-state]')?.textContent === 'deleted', null, { timeout: 60000 });
  });

  await step('activity, settings and sources', async () => {
    await page.goto(`${base}/activity`);
    const text = await page.textContent('main');
    assert.ok(text.includes('admin:admin asked for reset') && text.includes('admin:admin asked for delete'), 'actions are audited');
    await shot(page, 'activity');
    await page.goto(`${base}/settings`);
    await shot(page, 'settings');
    await page.goto(`${base}/sources`);
    const plugins = await page.textContent('#plugins');
    assert.ok(plugins.includes('ghl-workflow') && plugins.includes('plan-table'), 'the plugins are listed');
    await shot(page, 'sources');
  });

  await step('a new API token is shown once, never in the address bar', async () => {
    await page.goto(`${base}/settings`);
    await page.fill('form[action="/settings/tokens"] input[name=name]', 'browser-robot');
    const [shown] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/settings/tokens') && r.request().method() === 'POST'),
      page.click('form[action="/settings/tokens"] button:has-text("Create token")'),
    ]);
    assert.equal(shown.headers()['cache-control'], 'no-store', 'the browser does not keep the page');
    await page.waitForSelector('#shown-once-value');
    const token = (await page.textContent('#shown-once-value')).trim();
    assert.match(token, /^vma_/, 'the token is on the page');
    assert.ok(!page.url().includes(token), `not in the address bar: ${page.url()}`);
    const me = await fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(me.status, 200, 'the token shown works');
    await shot(page, 'token-shown-once');
    const again = await page.request.get(page.url(), { maxRedirects: 0 });
    assert.ok(!(await again.text()).includes(token), 'opening the address again does not show it');
    await page.goto(`${base}/settings`);
    assert.ok((await page.textContent('main')).includes('browser-robot'), 'the token is listed by name');
    assert.ok(!(await page.content()).includes(token), 'but never by value');
  });

  await step('after log-in only same-origin paths are followed', async () => {
    // `next` as it appears in the query string (already percent-encoded).
    for (const [next, lands] of [
      ['/%09/evil.example', `${base}/`], ['//evil.example/', `${base}/`], ['/%5Cevil.example', `${base}/`],
      ['https%3A%2F%2Fevil.example%2F', `${base}/`], ['/vps%3Fstate%3Dlive', `${base}/vps?state=live`],
    ]) {
      const p = await newPage();
      await p.goto(`${base}/login?next=${next}`);
      await p.fill('input[name=username]', 'admin');
      await p.fill('input[name=password]', password);
      await p.click('button[type=submit]');
      await p.waitForURL((u) => !u.pathname.startsWith('/login'));
      assert.equal(p.url(), lands, `next=${next} lands on ${lands}`);
      await p.context().close();
    }
  });

  await step('a viewer cannot mutate', async () => {
    const v = await newPage({ expectForbidden: true });
    await login(v, 'viewer', password);
    await v.waitForURL(`${base}/`);
    await sendWebhook('sub_browser_2', 'Vera Viewer');
    await eventually(v, `${base}/vps?q=vera`, async (p) => (await p.locator('#vps-table tbody a').count()) > 0, 'the second VPS');
    await v.click('#vps-table tbody a');
    assert.equal(await v.locator('button:has-text("Reset")').count(), 0, 'no action buttons for a viewer');
    const csrf = await v.getAttribute('#main', 'data-csrf');
    const r = await v.request.post(`${v.url()}/action`, { form: { _csrf: csrf, action: 'suspend' }, maxRedirects: 0 });
    assert.equal(r.status(), 403, 'the server refuses a viewer');
    const s = await v.goto(`${base}/settings`);
    assert.equal(s.status(), 403);
  });

  assert.deepEqual(problems, [], 'no dialogs, script errors or CSP violations');
  console.log('browser test passed');
} catch (e) {
  console.error(`FAILED at step "${current}": ${e.stack || e}`);
  if (problems.length) console.error(`also seen: ${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
