// Browser test of the customer's portal (/my/<token>) in Debian's Chromium, driven by
// Playwright. Started by tests/browser.rs with a running appliance and SCP simulator; its
// environment:
//   VMAUTO_URL             the appliance's base URL
//   VMAUTO_PORTAL          a portal link of an active VPS
//   VMAUTO_PORTAL_REVOKED  a revoked link of the same VPS
//   VMAUTO_SIM             the simulator's base URL (its /_sim control endpoint)
//   VMAUTO_SHOTS           where screenshots are written
//   CHROMIUM               the browser (default /usr/bin/chromium)
// Exits non-zero with the failing step on the first failed check.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const base = process.env.VMAUTO_URL;
const portal = process.env.VMAUTO_PORTAL;
const revoked = process.env.VMAUTO_PORTAL_REVOKED;
const sim = process.env.VMAUTO_SIM;
const shots = process.env.VMAUTO_SHOTS || 'artifacts';
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});

const problems = [];
const elsewhere = [];
const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
const page = await ctx.newPage();
page.on('dialog', (d) => { problems.push(`a dialog opened: ${d.message()}`); d.dismiss(); });
page.on('pageerror', (e) => problems.push(`page error: ${e}`));
// The revoked link's 410 is the one failed load expected.
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().includes('status of 410')) problems.push(`console: ${m.text()}`);
});
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith(base) && !u.startsWith(base.replace('http', 'ws')) && !u.startsWith('data:') && !u.startsWith('blob:')) {
    elsewhere.push(u);
  }
});

let current = '';
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}

async function shot(p, name) {
  for (let attempt = 1; ; attempt++) {
    try {
      await p.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
      return;
    } catch (e) {
      if (attempt >= 3 || !String(e).includes('Unable to capture screenshot')) throw e;
      await p.waitForTimeout(500 * attempt);
    }
  }
}

async function simState() {
  return (await fetch(`${sim}/_sim/state`)).json();
}

/** Waits until a page rendered with no task running is shown (portal.js reloads the page
 *  when the task it watched ends). */
async function idle(what, secs = 90) {
  const deadline = Date.now() + secs * 1000;
  for (;;) {
    try {
      const attr = await page.getAttribute('#portal', 'data-current', { timeout: 1000 });
      if (attr === '' && (await page.textContent('#vps-current', { timeout: 1000 })) === 'nothing') return;
    } catch (e) {
      // The page is being replaced: look again.
    }
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await page.waitForTimeout(250);
  }
}

try {
  let name = '';

  await step('the portal shows the VPS, and nothing of the admin', async () => {
    await page.goto(portal);
    name = (await page.textContent('h1')).trim();
    assert.ok(name.length > 0);
    assert.equal(await page.textContent('#vps-state'), 'active');
    const body = await page.textContent('body');
    assert.ok(!body.includes('Log out') && !body.includes('admin:') && !body.includes('@example.com'), 'no admin data');
    assert.ok(/\d+\.\d+\.\d+\.\d+/.test(await page.textContent('#vps-ips')), 'its address');
    await shot(page, 'portal');
  });

  await step('reboot, and watch it finish live', async () => {
    await page.selectOption('#power-form select', 'reboot');
    await page.click('#power-form button');
    await page.waitForSelector('.notice');
    await idle('the reboot');
    const done = (await simState()).tasks.filter((t) => t.status === 'finish').map((t) => t.action);
    assert.ok(done.includes('reboot_server'), `the VM was rebooted: ${done}`);
    assert.ok((await page.textContent('ul.ops')).includes('Reboot'), 'in the recent tasks');
  });

  await step('the console draws the simulator\'s screen through vmauto', async () => {
    await page.click('#open-console');
    await page.waitForFunction(() => document.getElementById('console-status')?.textContent.startsWith('Connected'),
      null, { timeout: 30000 });
    await page.waitForFunction(() => document.getElementById('console')?.getAttribute('data-desktop'), null, { timeout: 10000 });
    assert.ok((await page.getAttribute('#console', 'data-desktop')).length > 0, 'the VM\'s name came over VNC');
    // The canvas holds more than one colour: the screen with its text.
    await page.waitForFunction(() => {
      const c = document.querySelector('#console-screen canvas');
      if (!c || !c.width) return false;
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const seen = new Set();
      for (let i = 0; i < d.length; i += 4 * 97) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]}`);
      return seen.size >= 3;
    }, null, { timeout: 30000 });
    await shot(page, 'portal-console');
    await page.click('a:has-text("Back to your server")');
  });

  await step('a new root password is shown once', async () => {
    await page.click('button:has-text("Set a new root password")');
    await page.waitForSelector('.notice');
    await page.waitForSelector('#password-ready:not([hidden])', { timeout: 90000 });
    await page.click('button:has-text("Show the new password")');
    const pw = (await page.textContent('#new-password')).trim();
    assert.ok(pw.length >= 12, 'a password is shown');
    assert.ok(!page.url().includes(pw), 'not in the address bar');
    await shot(page, 'portal-password');
    await page.click('a:has-text("Back to your server")');
    assert.equal(await page.locator('#password-ready:not([hidden])').count(), 0, 'offered once only');
    assert.ok(!(await page.content()).includes(pw), 'not on the page again');
  });

  await step('usage graphs render', async () => {
    const vm = (await simState()).servers.find((s) => !s.recycled);
    const aged = await fetch(`${sim}/_sim/servers/${vm.id}/age`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"hours": 30}' });
    assert.equal(aged.status, 200);
    await page.click('#open-usage');
    assert.equal(await page.locator('svg.chart').count(), 3, 'CPU, memory and network');
    assert.ok(await page.locator('svg.chart polyline').count() >= 4);
    await shot(page, 'portal-usage');
    await page.click('a:has-text("Last 7 days")');
    assert.equal(await page.locator('svg.chart').count(), 3);
    await page.click('a:has-text("Back to your server")');
  });

  await step('reinstall needs the name typed, then builds a new VM', async () => {
    const before = (await simState()).servers.filter((s) => !s.recycled).map((s) => s.id);
    await page.fill('#confirm', 'not the name');
    await page.click('button:has-text("Reinstall")');
    await page.waitForSelector('.error');
    assert.match(await page.textContent('.error'), /type the server's name/);
    await page.fill('#confirm', name);
    await shot(page, 'portal-reinstall');
    await page.click('button:has-text("Reinstall")');
    await page.waitForSelector('.notice');
    await idle('the reinstall', 120);
    const after = (await simState()).servers.filter((s) => !s.recycled).map((s) => s.id);
    assert.equal(after.length, 1, 'one VM after the reinstall');
    assert.ok(!before.includes(after[0]), 'a new VM');
  });

  await step('a revoked link shows nothing but that', async () => {
    const r = await page.goto(revoked);
    assert.equal(r.status(), 410);
    const body = await page.textContent('body');
    assert.ok(body.includes('withdrawn') && !body.includes(name), 'nothing of the VPS');
    await shot(page, 'portal-revoked');
  });

  assert.deepEqual(elsewhere, [], 'the portal talks to vmauto only');
  assert.deepEqual(problems, [], 'no dialogs, script errors or CSP violations');
  console.log('portal browser test passed');
} catch (e) {
  console.error(`FAILED at step "${current}": ${e.stack || e}`);
  if (problems.length) console.error(`also seen: ${problems.join('\n')}`);
  if (elsewhere.length) console.error(`requests elsewhere: ${elsewhere.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
