// The operator's status page in a real browser (Chromium through playwright-core): every backend listed, a backend
// that fails its health checks turns red, and a screenshot lands in test-output/ for a human look.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext } from 'playwright-core'
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
  t.after(() => rm(profile, { recursive: true, force: true }))
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
