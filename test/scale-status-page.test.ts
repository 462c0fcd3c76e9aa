// The status page's scaling panel in a real browser: current and desired backends, the target, the spend against
// the cap, and the observed latency chart with the scale events marked.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { freePort } from './helpers.js'
import { backendScript, head, load, startScaleEdge, until } from './scale-util.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const OUT = fileURLToPath(new URL('../../test-output/', import.meta.url))

test('the scaling panel shows backends, target, cost and the scale events on the chart', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip(`no Chromium at ${CHROMIUM}`)
    return
  }
  const command = await backendScript(t, 'serial', 20)
  const lo = await freePort()
  const e = await startScaleEdge(t, `${head()}
[pools.app]
balance = "least_conn"

[pools.app.scale]
target = "60ms"
interval = "200ms"
window = "1s"
min = 1
max = 3
cost_per_backend_hour = 0.05
max_cost_per_hour = 0.40
provider = "process"
command = ${JSON.stringify(command)}
ports = "${lo}-${lo + 20}"
`)
  await until('the first backend', () => e.scaling().current === 1)
  const l = load(t, e.url, 4)
  await until('a scale-up', () => e.scaling().current >= 2, 20_000)
  const profile = await mkdtemp(join(tmpdir(), 'edge-chromium-'))
  t.after(() => rm(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }))
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.after(() => browser.close())
  const page = browser.pages()[0] ?? await browser.newPage()
  const errors: string[] = []
  page.on('pageerror', x => { errors.push(x.message) })
  await page.goto(`http://127.0.0.1:${e.control.adminPort}/`)
  await page.waitForSelector('[data-scale-pool="app"] circle.scale-mark[data-kind="scale.up"]', { timeout: 8000 })
  const current = Number(await page.textContent('[data-scale-pool="app"] [data-current]'))
  assert.ok(current >= 1)
  assert.match(await page.textContent('[data-scale-pool="app"] [data-target]') ?? '', /60\.0 ms/)
  assert.match(await page.textContent('[data-scale-pool="app"] [data-cost]') ?? '', /of cap 0\.40/)
  await mkdir(OUT, { recursive: true })
  await page.screenshot({ path: join(OUT, 'status-page-scaling.png'), fullPage: true })
  await l.stop()
  assert.deepEqual(errors, [])
})
