// Active health checks against real loopback backends: fall/rise timing, tcp checks, expect ranges,
// timeouts, slow start, reloads and close().
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { HealthChecker, slowStartFactor, type HealthEvent, type HealthState } from '../health/checker.js'
import type { HealthCheckConfig } from '../config/health.js'

const INTERVAL = 60

function config (over: Partial<HealthCheckConfig> = {}): HealthCheckConfig {
  return { type: 'http', path: '/healthz', interval: INTERVAL, timeout: 50, expect: [[200, 399]], rise: 2, fall: 3, slowStart: 0, ...over }
}

interface Backend { url: string, port: number, status: number, hits: number, hang: boolean, server: http.Server }

async function backend (t: TestContext): Promise<Backend> {
  const b: Backend = { url: '', port: 0, status: 200, hits: 0, hang: false, server: http.createServer() }
  b.server.on('request', (req, res) => {
    if (req.url !== '/healthz') { res.writeHead(404).end(); return }
    b.hits++
    if (!b.hang) res.writeHead(b.status).end('ok')
  })
  await new Promise<void>(resolve => b.server.listen(0, '127.0.0.1', resolve))
  b.port = (b.server.address() as AddressInfo).port
  b.url = `http://127.0.0.1:${b.port}`
  t.after(() => { b.server.closeAllConnections(); b.server.close() })
  return b
}

/** A checker that records every setStatus call and event, with a way to await the next transition. */
function checker (t: TestContext, cfg: HealthCheckConfig, urls: string[]) {
  const events: HealthEvent[] = []
  const statuses: Array<[string, boolean, string]> = []
  let waiter: { url: string, to: HealthState, resolve: (e: HealthEvent) => void } | undefined
  const c = new HealthChecker('api', cfg, urls, {
    setStatus: (url, up, reason) => { statuses.push([url, up, reason]) },
    onEvent: e => {
      events.push(e)
      if (waiter !== undefined && waiter.url === e.backend && waiter.to === e.to) { waiter.resolve(e); waiter = undefined }
    },
  })
  t.after(() => c.close())
  const next = (url: string, to: HealthState, within: number): Promise<HealthEvent> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${url} did not go ${to} within ${within}ms; events: ${JSON.stringify(events)}`)) }, within)
    waiter = { url, to, resolve: e => { clearTimeout(timer); resolve(e) } }
  })
  return { c, events, statuses, next }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

test('a failing backend goes down within fall x interval and comes back after rise passes', async t => {
  const b = await backend(t)
  const { c, statuses, next } = checker(t, config(), [b.url])
  assert.equal(c.state(b.url), 'pending')
  const up = next(b.url, 'up', 500)
  c.start()
  const first = await up
  assert.equal(first.from, 'pending')
  assert.equal(first.reason, 'HTTP 200')

  b.status = 503
  const failingFrom = Date.now()
  const hitsBefore = b.hits
  const down = await next(b.url, 'down', 1000)
  const took = down.time - failingFrom
  // fall checks are needed: the first may come at once, the other two each a jittered interval later.
  assert.ok(took <= 3 * INTERVAL * 1.1 + 100, `went down after ${took}ms`)
  assert.ok(took >= 2 * INTERVAL * 0.9 - 5, `went down too early, after ${took}ms`)
  assert.equal(b.hits - hitsBefore, 3, 'exactly fall failing checks')
  assert.equal(down.from, 'up')
  assert.match(down.reason, /HTTP 503 \(expected 200-399\), 3 consecutive failures/)
  assert.equal(c.state(b.url), 'down')
  assert.deepEqual(c.verdict(b.url), { pool: 'api', url: b.url, up: false, reason: 'HTTP 503 (expected 200-399)', recoveredAt: 0 })

  b.status = 200
  const passingFrom = Date.now()
  const hitsAtRecovery = b.hits
  const back = await next(b.url, 'up', 1000)
  assert.ok(back.time - passingFrom <= 2 * INTERVAL * 1.1 + 100, `came back after ${back.time - passingFrom}ms`)
  assert.equal(b.hits - hitsAtRecovery, 2, 'exactly rise passing checks')
  assert.equal(back.from, 'down')
  assert.equal(c.verdict(b.url)?.recoveredAt, back.time)
  assert.deepEqual(statuses.map(s => s[1]), [true, false, true])
  assert.ok(statuses.every(s => s[0] === b.url))
})

test('tcp checks: a closed port goes down with ECONNREFUSED, and comes up once something listens', async t => {
  const probe = net.createServer()
  await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve))
  const port = (probe.address() as AddressInfo).port
  await new Promise<void>(resolve => probe.close(() => resolve()))
  const url = `http://127.0.0.1:${port}`
  const { c, events, next } = checker(t, config({ type: 'tcp', fall: 2 }), [url])
  const down = next(url, 'down', 1000)
  c.start()
  const e = await down
  assert.equal(e.from, 'pending')
  assert.match(e.reason, /^ECONNREFUSED, 2 consecutive failures$/)
  assert.equal(events.length, 1, 'no up verdict while refused')

  const server = net.createServer(s => s.destroy())
  t.after(() => server.close())
  await new Promise<void>(resolve => server.listen(port, '127.0.0.1', resolve))
  const up = await next(url, 'up', 1000)
  assert.match(up.reason, /^connected, 2 consecutive passes$/)
})

test('expect ranges decide the verdict: 204 passes "200,204" and fails "200"', async t => {
  const b = await backend(t)
  b.status = 204
  const strict = checker(t, config({ expect: [[200, 200]], fall: 1 }), [b.url])
  const lenient = checker(t, config({ expect: [[200, 200], [204, 204]] }), [b.url])
  const down = strict.next(b.url, 'down', 500)
  const up = lenient.next(b.url, 'up', 500)
  strict.c.start()
  lenient.c.start()
  assert.match((await down).reason, /^HTTP 204 \(expected 200\)/)
  assert.equal((await up).reason, 'HTTP 204')
})

test('a backend that accepts but never answers fails by timeout', async t => {
  const b = await backend(t)
  b.hang = true
  const { c, next } = checker(t, config({ timeout: 30, fall: 2 }), [b.url])
  const down = next(b.url, 'down', 1000)
  c.start()
  assert.match((await down).reason, /^timed out after 30ms, 2 consecutive failures$/)
})

test('slow start: a recovered backend ramps from 10% to 100% of its weight', async t => {
  assert.equal(slowStartFactor(0, 5000, 1000), 1, 'never down: no ramp')
  assert.equal(slowStartFactor(1000, 5000, 0), 1, 'slow start off')
  assert.equal(slowStartFactor(1000, 1000, 1000), 0.1)
  assert.ok(Math.abs(slowStartFactor(1000, 1500, 1000) - 0.55) < 1e-9)
  assert.equal(slowStartFactor(1000, 2000, 1000), 1)

  const b = await backend(t)
  const { c, next } = checker(t, config({ fall: 1, rise: 1, slowStart: 400 }), [b.url])
  const up = next(b.url, 'up', 500)
  c.start()
  const first = await up
  assert.equal(c.weightFactor(b.url, first.time), 1, 'first verdict is not a recovery')
  b.status = 500
  const down = await next(b.url, 'down', 500)
  assert.equal(c.weightFactor(b.url, down.time), 0)
  b.status = 200
  const back = await next(b.url, 'up', 500)
  const f = (dt: number): number => c.weightFactor(b.url, back.time + dt)
  assert.equal(f(0), 0.1)
  assert.ok(f(100) > 0.3 && f(100) < 0.35, `at 100ms: ${f(100)}`)
  assert.ok(f(200) > f(100) && f(300) > f(200))
  assert.equal(f(400), 1)
  assert.equal(c.weightFactor('http://127.0.0.1:1', Date.now()), 1, 'unknown backends are not scaled')
})

test('update() follows a reload, and close() stops every timer and aborts checks in flight', async t => {
  const a = await backend(t)
  const b = await backend(t)
  const { c, next } = checker(t, config(), [a.url])
  const upA = next(a.url, 'up', 500)
  c.start()
  await upA
  const upB = next(b.url, 'up', 500)
  c.update([b.url])
  await upB
  assert.equal(c.state(a.url), undefined)
  const aHits = a.hits
  await sleep(INTERVAL * 3)
  assert.equal(a.hits, aHits, 'a removed backend is no longer probed')
  assert.ok(b.hits >= 2)

  // Catch a check in flight (the backend holds it open) and close while it waits for its 50ms timeout.
  b.hang = true
  const hung = b.hits
  while (b.hits === hung) await sleep(2)
  const start = Date.now()
  await c.close()
  await sleep(15)
  const open = await new Promise<number>((resolve, reject) => b.server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) }))
  assert.equal(open, 0, 'the check in flight was aborted, not left to time out')
  const bHits = b.hits
  await sleep(INTERVAL * 3)
  assert.equal(b.hits, bHits, 'no checks after close()')
  assert.ok(Date.now() - start < INTERVAL * 3 + 50)
  await c.close()
})
