/**
 * The dashboard in a real headless Chromium (Debian package `chromium`, driven by playwright-core)
 * against real sidecars with mTLS and tracing on: upstream endpoints, live requests, a trace
 * waterfall assembled from two sidecars, and data that looks like markup shown as text.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { request } from 'undici';
import { freePort } from '../../examples/demo.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { createTestCa, type TestCa } from '../helpers/mesh-ca.ts';
import { rawExchange } from '../helpers/raw.ts';
import { eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';
import { openTap } from '../helpers/tap.ts';

/** The few browser globals the page functions below use (they run in Chromium, not in Node). */
interface PageNode {
  readonly textContent: string | null;
  getBoundingClientRect(): { width: number };
}
declare const document: { querySelector(selector: string): PageNode | null; querySelectorAll(selector: string): { length: number } };
declare const window: { __xss?: number };

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'];
export const SCREENSHOT = '/tmp/meshlet-dashboard.png';
/** Markup that would run if the page ever inserted data as HTML; Node's HTTP parser accepts it in a path. */
const XSS_PATH = '/<img/src/onerror=window.__xss=1>';
const XSS_SPAN = '<img src=x onerror="window.__xss=2">';

describe('dashboard in headless Chromium', () => {
  let ca: TestCa;
  let app: TestBackend;
  let greeter: Sidecar;
  let frontend: Sidecar;
  let browser: Browser;
  let page: Page;
  let admin: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    ca = await createTestCa({ trustDomain: 'dash.test' });
    app = await startBackend('greeter-app');
    const frontendAdmin = await freePort();
    admin = `http://127.0.0.1:${frontendAdmin}`;
    const telemetry = { tracing: { endpoint: `${admin}/v1/traces`, batchDelay: '50ms' } };
    const security = { mtls: true, ca: { dir: ca.dir } };
    greeter = await startSidecar({ service: { name: 'greeter', port: app.port }, telemetry, security });
    frontend = await startSidecar({
      service: { name: 'frontend', port: 1 },
      admin: { address: '127.0.0.1', port: frontendAdmin },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] }],
      telemetry,
      security,
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await frontend?.stop();
    await greeter?.stop();
    await app?.close();
    await ca?.cleanup();
  });

  async function call(path: string): Promise<number> {
    const res = await request(`${upstreamUrl(frontend, 'greeter')}${path}`);
    await res.body.text();
    return res.statusCode;
  }

  it('shows the service, upstream endpoints, identity, live requests and a trace waterfall', async () => {
    await page.goto(`${admin}/dashboard`);
    await page.waitForFunction(() => document.querySelector('#state')?.textContent === 'serving', null, { timeout: 15_000 });
    expect(await page.textContent('#service')).toContain('frontend');

    // Upstream table: the greeter endpoint, healthy.
    const endpoint = `127.0.0.1:${greeter.ports.inbound}`;
    const row = page.locator('#upstreams tbody tr', { hasText: endpoint });
    await row.waitFor({ timeout: 15_000 });
    expect(await row.textContent()).toContain('healthy');

    // Identity from /certs.
    await page.waitForFunction(() => document.querySelector('#cert')?.textContent?.includes('spiffe://dash.test/ns/default/svc/frontend'), null, { timeout: 15_000 });

    // Live requests arrive over /tap while the page is open.
    await page.waitForFunction(() => document.querySelector('#live-status')?.textContent === '(streaming)', null, { timeout: 15_000 });
    for (let i = 0; i < 3; i++) expect(await call(`/hello/${i}`)).toBe(200);
    const live = page.locator('#live tbody tr', { hasText: '/hello/2' });
    await live.waitFor({ timeout: 15_000 });
    expect(await live.textContent()).toContain('200');

    // The trace of the newest request, from both sidecars, drawn as a waterfall.
    await page.waitForFunction(() => document.querySelectorAll('#waterfall .wf-row').length >= 3, null, { timeout: 20_000 });
    const rows = await page.$$eval('#waterfall .wf-row', (els) =>
      els.map((e) => ({ label: e.querySelector('.wf-label')?.textContent ?? '', width: (e.querySelector('.wf-bar') as unknown as PageNode).getBoundingClientRect().width })),
    );
    expect(rows.map((r) => r.label.split(' ')[0]?.replace(/GET.*/, ''))).toEqual(expect.arrayContaining(['frontend', 'greeter']));
    expect(rows.slice(0, 3).map((r) => r.label)).toEqual([expect.stringMatching(/^frontendGET greeter server/), expect.stringMatching(/^frontendGET greeter client/), expect.stringMatching(/^greeterGET inbound server/)]);
    expect(rows.every((r) => r.width >= 1)).toBe(true);
    // Traffic table and cards come from /metrics.
    await page.waitForFunction(() => document.querySelector('#traffic tbody')?.textContent?.includes('greeter'), null, { timeout: 15_000 });

    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
  }, 90_000);

  it('shows request paths and span names that look like markup as text', async () => {
    const answer = await rawExchange(frontend.ports.upstreams.greeter!, `GET ${XSS_PATH} HTTP/1.1\r\nHost: greeter\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    const cell = page.locator('#live td.path', { hasText: XSS_PATH });
    await cell.waitFor({ timeout: 15_000 });
    expect(await cell.textContent()).toBe(XSS_PATH);

    // A span with markup in its name and attributes, as any exporter could send.
    const now = BigInt(Date.now()) * 1_000_000n + 10_000_000_000n;
    const traceId = 'ab'.repeat(16);
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [{ key: 'service.name', value: { stringValue: `<b>evil</b>` } }] },
          scopeSpans: [{ spans: [{ traceId, spanId: 'cd'.repeat(8), name: XSS_SPAN, kind: 2, startTimeUnixNano: String(now), endTimeUnixNano: String(now + 1_000_000n), attributes: [{ key: 'note', value: { stringValue: XSS_SPAN } }] }] }],
        },
      ],
    };
    const res = await request(`${admin}/v1/traces`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const item = page.locator('#trace-list li', { hasText: XSS_SPAN });
    await item.waitFor({ timeout: 15_000 });
    await item.click();
    await page.waitForFunction((name) => document.querySelector('#waterfall .wf-label')?.textContent?.includes(name), XSS_SPAN, { timeout: 15_000 });
    await page.locator('#waterfall .wf-row').first().click();
    await page.locator('#span-detail td', { hasText: XSS_SPAN }).first().waitFor({ timeout: 5000 });

    const injected = await page.evaluate(() => ({
      images: document.querySelectorAll('main img, main b').length,
      xss: window.__xss,
    }));
    expect(injected).toEqual({ images: 0, xss: undefined });
    expect(await page.textContent('#trace-list')).toContain('<b>evil</b>');
    await page.screenshot({ path: SCREENSHOT.replace('.png', '-xss.png'), fullPage: true });
  }, 60_000);

  it('tap on the called side names the caller by its SPIFFE ID', async () => {
    const stream = await openTap(`http://127.0.0.1:${greeter.ports.admin}`, 'direction=inbound');
    try {
      expect(await call('/peer-check')).toBe(200);
      await eventually('inbound tap event', () => stream.events.some((e) => e.path === '/peer-check'));
      expect(stream.events.find((e) => e.path === '/peer-check')).toMatchObject({ direction: 'inbound', upstream: 'local', status: 200, peer: 'spiffe://dash.test/ns/default/svc/frontend' });
    } finally {
      stream.close();
    }
  });

  it('serves the page with a policy that forbids inline script', async () => {
    const res = await request(`${admin}/dashboard`);
    await res.body.text();
    expect(res.headers['content-security-policy']).toContain("script-src 'self'");
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    await eventually('page still healthy', () => pageErrors.length === 0);
  });
});
