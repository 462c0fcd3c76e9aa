// `edge-proxy report shadow` on a store the real edge wrote: the differing endpoint and field are reported with
// their rates, noise is told apart (secondary), the other endpoint is clean, in json, md and html alike; the
// HTML opens in Chromium (playwright-core) and shows them, with a screenshot in test-output/ for a human look.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { appendFile, mkdir, mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { chromium } from 'playwright-core'
import { backend, client, head, startEdge, until } from './edge-util.js'
import { runCli } from './helpers.js'
import type { ShadowReport } from '../proxy/mirror/report.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url))

function app (changed: boolean) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/'
    const id = /^\/users\/(\d+)/.exec(url)?.[1]
    const doc = id !== undefined
      ? { id: Number(id), plan: changed ? 'pro' : 'free', request_nonce: Math.random().toString(36).slice(2) }
      : { items: [{ sku: 'a', price: 10 }], request_nonce: Math.random().toString(36).slice(2) }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(doc))
  }
}

test('the report in json, md and html names the differing endpoint and field; noise is marked as noise', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'edge-shadow-report-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const p1 = await backend(t, app(false))
  const p2 = await backend(t, app(false))
  const shadow = await backend(t, app(true))
  const te = await startEdge(t, `${head()}
[[routes]]
pool = "api"
[pools.api]
backends = ["${p1.url}", "${p2.url}"]
[pools.api-remote1]
backends = ["${shadow.url}"]
[pools.api.shadow]
pool = "api-remote1"
secondary = true
ignore_headers = ["date", "content-length"]
endpoints = ["/users/:id", "/catalog"]
store = "${dir}"
`)
  const get = client(t)
  for (let i = 0; i < 20; i++) {
    assert.equal((await get(`${te.url}/users/${i}`)).status, 200)
    assert.equal((await get(`${te.url}/catalog`)).status, 200)
  }
  await until(() => (te.edge.mirror.summary().pools[0]?.endpoints.reduce((n, e) => n + e.compared, 0) ?? 0) === 40, 5000, '40 comparisons')
  await te.edge.mirror.flush()
  // A crash's half line at the end of a file is not read.
  const [file] = await readdir(dir)
  await appendFile(join(dir, file as string), '{"v":1,"endpoint":"GET /half')

  const json = await runCli(['report', 'shadow', '--store', dir, '--format', 'json', '--since', '1h'])
  assert.equal(json.code, 0, json.stderr)
  const r = JSON.parse(json.stdout) as ShadowReport
  assert.equal(r.version, 1)
  assert.equal(r.records, 40)
  const pool = r.pools[0]
  assert.equal(pool?.pool, 'api')
  assert.equal(pool.shadow_pool, 'api-remote1')
  const users = pool.endpoints.find(e => e.endpoint === 'GET /users/:id')
  const catalog = pool.endpoints.find(e => e.endpoint === 'GET /catalog')
  assert.equal(pool.endpoints[0]?.endpoint, 'GET /users/:id', 'the differing endpoint comes first')
  assert.equal(users?.compared, 20)
  assert.equal(users.differing, 20)
  assert.equal(users.differing_rate, 1)
  const plan = users.fields.find(f => f.field === '$.plan')
  assert.deepEqual(plan, { field: '$.plan', count: 20, rate: 1, noise_rate: 0, noise: false })
  assert.equal(users.fields.find(f => f.field === '$.request_nonce')?.noise, true)
  assert.equal(users.examples[0]?.field, '$.plan')
  assert.equal(users.examples[0]?.primary, 'free')
  assert.equal(users.examples[0]?.shadow, 'pro')
  assert.ok(users.latency.primary.count === 20 && users.latency.shadow.p99 >= users.latency.shadow.p50)
  assert.equal(catalog?.differing, 0, 'the nonce is noise there too')
  assert.equal(r.thresholds.relative, 0.2)

  const md = await runCli(['report', 'shadow', '--store', dir, '--format', 'md'])
  assert.equal(md.code, 0, md.stderr)
  assert.match(md.stdout, /\| `GET \/users\/:id` \| 20 \| 20 \| 100\.0% \|/)
  assert.match(md.stdout, /\| `\$\.plan` \| 100\.0% \| 0\.0% \| \*\*difference\*\* \|/)
  assert.match(md.stdout, /\| `\$\.request_nonce` \| 100\.0% \| 100\.0% \| noise \|/)
  assert.match(md.stdout, /\| `GET \/catalog` \| 20 \| 0 \| 0\.0% \|/)

  await mkdir(OUT, { recursive: true })
  const htmlFile = join(OUT, 'shadow-report.html')
  const html = await runCli(['report', 'shadow', '--store', dir, '--format', 'html', '--out', htmlFile])
  assert.equal(html.code, 0, html.stderr)
  const page = await readFile(htmlFile, 'utf8')
  assert.ok(page.startsWith('<!doctype html>'))
  assert.doesNotMatch(page, /<(script|link)[^>]+(src|href)=/i, 'self-contained: no external assets')

  const bad = await runCli(['report', 'shadow', '--store', dir, '--format', 'pdf'])
  assert.equal(bad.code, 2)
  const missing = await runCli(['report', 'shadow', '--store', join(dir, 'nope')])
  assert.equal(missing.code, 1)

  if (!existsSync(CHROMIUM)) { t.diagnostic(`no Chromium at ${CHROMIUM}: the HTML was not opened`); return }
  const profile = await mkdtemp(join(tmpdir(), 'edge-chromium-'))
  t.after(() => rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }))
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(() => browser.close())
  const tab = browser.pages()[0] ?? await browser.newPage()
  const errors: string[] = []
  tab.on('pageerror', e => { errors.push(e.message) })
  tab.on('requestfailed', q => { errors.push(`${q.url()} failed`) })
  await tab.goto(pathToFileURL(htmlFile).href)
  const card = tab.locator('section.endpoint[data-endpoint="GET /users/:id"]')
  assert.match(await card.locator('h3').innerText(), /20 of 20 differ/)
  assert.match(await card.locator('tr.diff').first().innerText(), /\$\.plan/)
  assert.match(await card.locator('tr.noise').first().innerText(), /\$\.request_nonce/)
  assert.match(await card.locator('.example .sbs').first().innerText(), /"plan": "free"[\s\S]*"plan": "pro"/)
  assert.match(await tab.locator('section.endpoint[data-endpoint="GET /catalog"] h3').innerText(), /0 of 20 differ/)
  assert.equal(await card.locator('svg.chart rect').count() >= 6, true, 'a latency chart')
  await tab.screenshot({ path: join(OUT, 'shadow-report.png'), fullPage: true })
  assert.deepEqual(errors, [])
  // The status page's shadow panel shows the same endpoints live.
  await tab.goto(`${te.adminUrl}/`)
  const row = tab.locator('#sec-shadow tr[data-endpoint="GET /users/:id"]')
  await row.waitFor({ timeout: 5000 })
  assert.match(await row.innerText(), /20\s+100\.0%\s+\$\.plan 100\.0%/)
  assert.match(await tab.locator('#sec-shadow tr[data-endpoint="GET /catalog"]').innerText(), /20\s+0\.0%/)
  await tab.locator('#sec-shadow').screenshot({ path: join(OUT, 'shadow-status-panel.png') })
})
