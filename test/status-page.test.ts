// The operator's status page in a real browser (Chromium through playwright-core): every backend listed, a backend
// that fails its health checks turns red, the charts open with the control process's history, the drain buttons
// drain, and screenshots land in test-output/ for a human look.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { loadConfigFile } from '../config/load.js'
import { Control } from '../cli/control.js'
import { LocalServing } from '../cli/run.js'
import { Edge } from '../proxy/edge.js'
import { createCa, issueCertificate, writePair } from '../proxy/tls/certs.js'
import { backend, client, head, startEdge, until } from './edge-util.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url))

test('the status page (behind the admin token) lists every backend and shows one going down', async t => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no Chromium at ${CHROMIUM} (CI installs it with apt; set CHROMIUM_PATH to use another)`)
    return
  }
  // Teardown runs first-registered first: stop the traffic and the browser before the edge and backends go.
  let stop = false
  let traffic: Promise<void> | undefined
  let browser: BrowserContext | undefined
  t.after(async () => {
    stop = true
    await traffic?.catch(() => {})
    await browser?.close()
  })
  const slow = (ms: number) => (_q: unknown, s: { end: (b: string) => void }) => { setTimeout(() => { s.end('ok') }, ms) }
  const a = await backend(t, slow(2))
  const b = await backend(t, slow(8))
  const c = await backend(t)
  const d = await backend(t, slow(20))
  const te = await startEdge(t, `${head('token = "page-token"')}
[[routes]]
match = { path_prefix = "/static" }
pool = "static"

[[routes]]
pool = "api"

[pools.api]
balance = "p2c"
backends = ["${a.url}", "${b.url}", "${c.url}"]
[pools.api.health]
path = "/healthz"
interval = "200ms"
timeout = "100ms"
fall = 2

[pools.static]
backends = [{ url = "${d.url}", weight = 3 }]
`)
  const get = client(t)
  // Steady background traffic (bounded) so the page has rates and percentiles to show.
  let sent = 0
  traffic = (async () => {
    while (!stop && sent < 3000) {
      sent++
      await Promise.all([get(`${te.url}/api/x`), get(`${te.url}/static/y`)])
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  })()

  const profile = await mkdtemp(join(tmpdir(), 'edge-chromium-'))
  t.after(() => rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }))
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  const page = browser.pages()[0] ?? await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', e => { errors.push(e.message) })
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('requestfailed', r => { errors.push(`${r.url()} failed: ${r.failure()?.errorText ?? '?'}`) })
  page.on('response', r => { if (r.status() >= 400) errors.push(`${r.url()}: HTTP ${r.status()}`) })

  // With an admin token, the page is opened once with ?token= (it becomes a cookie the page's requests carry).
  await page.goto(`${te.adminUrl}/?token=page-token`)
  assert.equal(page.url(), `${te.adminUrl}/`)
  for (const x of [a, b, c, d]) await page.waitForSelector(`tr[data-backend="${x.url}"][data-state="up"]`, { timeout: 5000 })
  assert.equal(await page.locator('tr[data-backend]').count(), 4)
  assert.deepEqual(await page.locator('[data-pool]').evaluateAll(els => els.map(e => e.getAttribute('data-pool'))), ['api', 'static'])

  await c.close()
  await page.waitForSelector(`tr[data-backend="${c.url}"][data-state="down"]`, { timeout: 5000 })
  assert.equal(await page.locator(`tr[data-backend="${c.url}"] td`).nth(1).textContent(), 'unhealthy')
  await until(() => te.events.recent().some(e => e.type === 'unhealthy'), 3000, 'the unhealthy event')
  await page.waitForFunction('(document.getElementById("events")?.textContent ?? "").includes("unhealthy")', undefined, { timeout: 5000 })
  for (const x of [a, b, d]) assert.equal(await page.getAttribute(`tr[data-backend="${x.url}"]`, 'data-state'), 'up')
  // Let a few polls pass so the chart has a line and the rates are measured.
  await page.waitForFunction('document.querySelectorAll(\'svg.chart polyline[points*=","]\').length >= 2', undefined, { timeout: 8000 })
  await mkdir(OUT, { recursive: true })
  await page.screenshot({ path: join(OUT, 'status-page.png'), fullPage: true })
  assert.deepEqual(errors.slice(), [], 'no script errors or failed requests on the page')
  assert.ok(sent > 0)
})

/** Chromium with a throwaway profile, closed after the test; undefined (test skipped) without Chromium. */
async function openBrowser (t: TestContext): Promise<{ page: Page, errors: string[] } | undefined> {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no Chromium at ${CHROMIUM} (CI installs it with apt; set CHROMIUM_PATH to use another)`)
    return undefined
  }
  const profile = await mkdtemp(join(tmpdir(), 'edge-chromium-'))
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(async () => { await browser.close(); await rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) })
  const page = browser.pages()[0] ?? await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', e => { errors.push(e.message) })
  page.on('console', m => { if (m.type() === 'error') errors.push(m.text()) })
  page.on('requestfailed', r => { errors.push(`${r.url()} failed: ${r.failure()?.errorText ?? '?'}`) })
  page.on('response', r => { if (r.status() >= 400) errors.push(`${r.url()}: HTTP ${r.status()}`) })
  return { page, errors }
}

/** A loopback port with nothing listening (bound, then released). */
async function deadPort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>(resolve => s.close(() => { resolve() }))
  return port
}

/** One TLS passthrough attempt with this SNI; resolves however it ends. */
function tlsAttempt (port: number, servername: string): Promise<void> {
  return new Promise(resolve => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false })
    s.on('error', () => { resolve() })
    s.on('close', () => { resolve() })
    s.setTimeout(3000, () => { s.destroy() })
  })
}

test('the status page opens with the history kept in the control process, drains and undrains from its buttons, and shows unknown and failing members', async t => {
  // Teardown runs first-registered first: the traffic loops stop before the browser, the edge and the backends go.
  let running = true
  const loops: Promise<void>[] = []
  t.after(async () => { running = false; await Promise.allSettled(loops) })
  const opened = await openBrowser(t)
  if (opened === undefined) return
  const { page, errors } = opened
  const a = await backend(t, (_q, s) => { setTimeout(() => { s.end('a') }, 3) })
  const b = await backend(t, (_q, s) => { setTimeout(() => { s.end('b') }, 6) })
  const spare = await backend(t)
  const late = await backend(t)
  const dead = await deadPort()
  const dir = await mkdtemp(join(tmpdir(), 'edge-status-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'proxy.toml')
  // A certificate with many long names: its row must wrap inside the Certificates card.
  const names = Array.from({ length: 24 }, (_, i) => `service${i}.aratherlonginternalsubdomainofthepaymentsplatform.euwest1.example.com`)
  const pair = await writePair(dir, 'long', await issueCertificate(await createCa(), { names }))
  await writeFile(file, `${head('token = "page-token"')}
[[listeners]]
name = "passthrough"
listen = "127.0.0.1:0"
protocol = "tls"

[[listeners]]
name = "secure"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "${pair.cert}", key = "${pair.key}" }]

[[routes]]
listener = "passthrough"
pool = "db"

[[routes]]
listener = "web"
match = { path_prefix = "/spare" }
pool = "spare"

[[routes]]
listener = "web"
pool = "api"

[pools.api]
balance = "round_robin"
backends = ["${a.url}", "${b.url}"]

[pools.spare]
backends = ["${spare.url}"]

[pools.db]
backends = ["tcp://127.0.0.1:${dead}"]
`)
  const config = await loadConfigFile(file)
  const log = pino({ level: 'silent' })
  const control = new Control(config, { log, historyIntervalMs: 200 })
  const edge = new Edge(config, { log, onEvent: (type, message, fields) => { control.events.push(type, message, fields) } })
  await edge.start()
  await control.start(new LocalServing(edge))
  t.after(() => control.shutdown('test over', 0, 2000))
  const web = `http://127.0.0.1:${(edge.listeners()[0] as { port: number }).port}`
  const passthrough = (edge.listeners()[1] as { port: number }).port
  const adminUrl = `http://127.0.0.1:${control.adminPort ?? 0}`
  const get = client(t)

  // Traffic before any page is open (about 1.5 s of it, several history samples), and on while the page opens.
  let warm = true
  let sentBefore = 0
  const warmErrors: string[] = []
  const warmTraffic = (async () => {
    for (let i = 0; i < 1000 && warm && running; i++) {
      const r = await get(`${web}/api/x`).catch((err: Error) => ({ status: 0, body: err.message }))
      if (r.status !== 200) warmErrors.push(`${r.status} ${r.body}`)
      sentBefore++
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  })()
  loops.push(warmTraffic)
  await new Promise(resolve => setTimeout(resolve, 1500))
  await tlsAttempt(passthrough, 'db.test')
  // A member registered through the API: source "api", no traffic yet.
  const reg = await get(`${adminUrl}/api/pools/spare/backends`, { method: 'POST', body: JSON.stringify({ url: late.url }), headers: { authorization: 'Bearer page-token', 'content-type': 'application/json' } })
  assert.equal(reg.status, 201, reg.body)
  await new Promise(resolve => setTimeout(resolve, 300)) // a sample with the failed connect in it

  const history = JSON.parse((await get(`${adminUrl}/api/history`, { headers: { authorization: 'Bearer page-token' } })).body) as { pools: { name: string, series: { t: number[], rps: number[], p50: (number | null)[] } }[] }
  const api = history.pools.find(p => p.name === 'api')
  assert.ok(api !== undefined && api.series.t.length >= 5, 'the control process sampled the api pool')
  assert.ok(api.series.rps.some(r => r > 10), `req/s in the history (${api.series.rps.join(', ')})`)
  assert.ok(api.series.p50.some(v => v !== null && v >= 2), 'latency in the history')

  await page.goto(`${adminUrl}/?token=page-token`)
  await page.waitForSelector(`tr[data-backend="${a.url}"]`, { timeout: 5000 })
  // At once, from the first answer: the charts have lines (a page-only history would have one point now).
  const firstPaint = await page.evaluate(`(() => {
    const pool = document.querySelector('[data-pool="api"]')
    const pts = k => Math.max(0, ...[...pool.querySelectorAll('polyline[data-series="' + k + '"]')].map(l => (l.getAttribute('points') || '').split(' ').length))
    return { p50: pts('p50'), rps: pts('rps'), title: pool.querySelector('h3').textContent }
  })()`) as { p50: number, rps: number, title: string }
  assert.ok(firstPaint.p50 >= 5, `the latency chart has its history on first paint (${firstPaint.p50} points)`)
  assert.ok(firstPaint.rps >= 5, `the req/s chart too (${firstPaint.rps} points)`)
  const sentAtPaint = sentBefore
  const now = JSON.parse((await get(`${adminUrl}/api/history`, { headers: { authorization: 'Bearer page-token' } })).body) as typeof history
  const rates = now.pools.find(p => p.name === 'api')?.series.rps ?? []
  assert.deepEqual(warmErrors, [], 'the traffic before and during the page load was answered')
  assert.doesNotMatch(firstPaint.title, / 0\.0 req\/s/, `the pool's rate is the history's, not 0.0 (history ${rates.slice(-8).join(', ')}; ${sentAtPaint} requests sent)`)

  warm = false
  await warmTraffic
  assert.ok(sentBefore > 20)

  // Member states and sources.
  for (const x of [a, b]) assert.equal(await page.getAttribute(`tr[data-backend="${x.url}"]`, 'data-state'), 'up')
  assert.equal(await page.getAttribute(`tr[data-backend="${spare.url}"]`, 'data-state'), 'unknown')
  assert.equal(await page.textContent(`tr[data-backend="${spare.url}"] td:nth-child(2)`), 'unknown')
  assert.equal(await page.textContent(`tr[data-backend="${a.url}"] td.source`), 'config')
  assert.equal(await page.getAttribute(`tr[data-backend="${late.url}"]`, 'data-source'), 'api')
  assert.equal(await page.textContent(`tr[data-backend="${late.url}"] td.source`), 'api')
  assert.equal(await page.getAttribute(`tr[data-backend="${late.url}"]`, 'data-state'), 'unknown')
  const tcp = `tcp://127.0.0.1:${dead}`
  assert.equal(await page.getAttribute(`tr[data-backend="${tcp}"]`, 'data-state'), 'down', 'a passthrough member whose connects fail is not healthy')
  assert.equal(await page.textContent(`tr[data-backend="${tcp}"] td:nth-child(11)`), '1', 'the failed connect counts as a failure')
  assert.equal(await page.textContent(`tr[data-backend="${tcp}"] td.errors`), '100.0%')
  // Per route and per listener numbers.
  assert.ok(Number(await page.textContent('tr[data-route] td[data-requests]')) >= 0)
  const apiRoute = page.locator('#routes tr', { hasText: 'pool api' }).locator('td[data-requests]')
  assert.ok(Number(await apiRoute.textContent()) >= 20, 'requests per route')
  assert.match(await page.textContent('tr[data-listener="web"]') ?? '', /KB|MB/, 'bytes per listener')
  const certs = await page.evaluate(`(() => { const s = document.getElementById('sec-certificates'); return { scroll: s.scrollWidth, client: s.clientWidth, right: s.getBoundingClientRect().right, page: document.documentElement.clientWidth, rows: s.querySelectorAll('tr').length } })()`) as { scroll: number, client: number, right: number, page: number, rows: number }
  assert.equal(certs.rows, 2, 'the certificate is listed')
  assert.match(await page.textContent('#sec-certificates td.names') ?? '', /\+21 more/)
  assert.ok(certs.scroll <= certs.client + 1 && certs.right <= certs.page, `the certificates table stays inside its card (${JSON.stringify(certs)})`)
  // Not configured: no shadow, HA or scaling panel.
  for (const id of ['#sec-shadow', '#sec-ha', '#sec-scale']) assert.equal(await page.locator(id).isHidden(), true, `${id} is hidden`)

  // Drain a from its button: a gets nothing more, b takes everything; undrain brings a back.
  await page.click(`tr[data-backend="${a.url}"] button[data-action="drain"]`)
  await page.waitForSelector(`tr[data-backend="${a.url}"][data-state="drain"]`, { timeout: 5000 })
  const before = { a: a.hits, b: b.hits }
  for (let i = 0; i < 20; i++) assert.equal((await get(`${web}/api/x`)).status, 200)
  assert.equal(a.hits, before.a, 'a drained member gets no requests')
  assert.equal(b.hits, before.b + 20)
  await page.click(`tr[data-backend="${a.url}"] button[data-action="undrain"]`)
  await page.waitForSelector(`tr[data-backend="${a.url}"][data-state="up"]`, { timeout: 5000 })
  for (let i = 0; i < 20; i++) assert.equal((await get(`${web}/api/x`)).status, 200)
  assert.ok(a.hits >= before.a + 9, `undrained, a takes requests again (${a.hits - before.a})`)
  await page.waitForFunction('(document.getElementById("events")?.textContent ?? "").includes("undrained")', undefined, { timeout: 5000 })

  // Demo-like traffic for the screenshot: both pools' routes, a few slow answers.
  let stop = false
  const traffic = (async () => {
    for (let i = 0; i < 400 && !stop && running; i++) {
      await Promise.all([get(`${web}/api/x`), get(`${web}/spare/y`)])
      await new Promise(resolve => setTimeout(resolve, 15))
    }
  })()
  loops.push(traffic)
  await page.waitForFunction(`document.querySelector('tr[data-backend="${spare.url}"]')?.dataset.state === "up"`, undefined, { timeout: 5000 })
  await mkdir(OUT, { recursive: true })
  await page.screenshot({ path: join(OUT, 'status-page-history.png'), fullPage: true })
  stop = true
  await traffic
  assert.deepEqual(errors.slice(), [], 'no script errors or failed requests on the page')
})
