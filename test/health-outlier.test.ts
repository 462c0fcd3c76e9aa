// Passive outlier detection: ejection after N consecutive 5xx or connect errors on real traffic, doubling
// ejection times with a 5 minute cap, decay, and the max_ejected_percent cap.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { refusedUrl } from './helpers.js'
import { ejectionTime, MAX_EJECTION, OutlierDetector, type OutlierEvent } from '../health/outlier.js'
import type { OutlierConfig } from '../config/health.js'

async function backend (t: TestContext, status: { code: number }): Promise<string> {
  const server = http.createServer((_req, res) => { res.writeHead(status.code).end() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** Sends one real request and feeds its outcome to the detector, as the forwarder will. */
async function send (d: OutlierDetector, url: string): Promise<void> {
  let status = 0
  try {
    const res = await request(url)
    await res.body.dump()
    status = res.statusCode
  } catch {}
  d.observe(url, status, Date.now())
}

function detector (t: TestContext, cfg: Partial<OutlierConfig>, urls: string[]) {
  const events: OutlierEvent[] = []
  const ejected = new Map<string, number>()
  const d = new OutlierDetector('api', { consecutiveFailures: 5, baseEjection: 30_000, maxEjectedPercent: 50, ...cfg }, urls, {
    setEjected: (url, until) => { ejected.set(url, until) },
    onEvent: e => { events.push(e) },
  })
  t.after(() => d.close())
  return { d, events, ejected }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

test('N consecutive 5xx from a real backend eject it; a success in between resets the count', async t => {
  const status = { code: 503 }
  const bad = await backend(t, status)
  const good = await backend(t, { code: 200 })
  const { d, events, ejected } = detector(t, {}, [bad, good])
  for (let i = 0; i < 4; i++) await send(d, bad)
  status.code = 200
  await send(d, bad)
  status.code = 503
  for (let i = 0; i < 4; i++) await send(d, bad)
  assert.equal(events.length, 0, 'nine failures, but never five in a row')
  const before = Date.now()
  await send(d, bad)
  assert.equal(events.length, 1)
  const e = events[0] as OutlierEvent
  assert.equal(e.to, 'ejected')
  assert.match(e.reason, /^HTTP 503; 5 consecutive failures, ejected for 30000ms \(ejection 1\)$/)
  assert.ok(e.until >= before + 30_000 && e.until <= Date.now() + 30_000)
  assert.equal(ejected.get(bad), e.until)
  assert.equal(d.ejectedUntil(bad), e.until)
  assert.equal(d.ejectedUntil(good), 0)
  for (let i = 0; i < 10; i++) await send(d, good)
  assert.equal(d.ejectedCount, 1)
})

test('connect errors count as failures', async t => {
  const dead = await refusedUrl()
  const { d, events } = detector(t, { consecutiveFailures: 3 }, [dead, 'http://127.0.0.1:1'])
  for (let i = 0; i < 3; i++) await send(d, dead)
  assert.equal(events[0]?.to, 'ejected')
  assert.match(events[0]?.reason ?? '', /^connect error; 3 consecutive failures/)
})

test('repeated ejections double, capped at 5 minutes; time spent serving decays the multiplier', async t => {
  assert.deepEqual([0, 1, 2, 3].map(n => ejectionTime(30_000, n)), [30_000, 60_000, 120_000, 240_000])
  assert.equal(ejectionTime(30_000, 4), MAX_EJECTION)
  assert.equal(ejectionTime(30_000, 40), MAX_EJECTION)

  const url = 'http://127.0.0.1:9'
  const { d, events, ejected } = detector(t, { consecutiveFailures: 2, baseEjection: 40 }, [url, 'http://127.0.0.1:10'])
  const lengths: number[] = []
  for (let round = 0; round < 3; round++) {
    const now = Date.now()
    d.failure(url, now, 'HTTP 500')
    d.failure(url, now, 'HTTP 500')
    lengths.push(d.ejectedUntil(url) - now)
    // Failures while ejected (requests already in flight) do not extend or repeat the ejection.
    d.failure(url, now, 'HTTP 500')
    while (d.ejectedUntil(url) !== 0) await sleep(5)
  }
  assert.deepEqual(lengths, [40, 80, 160])
  assert.deepEqual(events.map(e => e.to), ['ejected', 'serving', 'ejected', 'serving', 'ejected', 'serving'])
  assert.equal(ejected.get(url), 0, 'setEjected(url, 0) on restore')
  // Serving for more than 3 x base brings the multiplier from 3 back to 0.
  await sleep(130)
  const now = Date.now()
  d.failure(url, now, 'HTTP 500')
  d.failure(url, now, 'HTTP 500')
  assert.equal(d.ejectedUntil(url) - now, 40)
})

test('never more than max_ejected_percent of the pool is ejected at once', async t => {
  const urls = [1, 2, 3, 4, 5].map(i => `http://127.0.0.1:${10_000 + i}`)
  const { d, events } = detector(t, { consecutiveFailures: 2, baseEjection: 60, maxEjectedPercent: 50 }, urls)
  const now = Date.now()
  for (const url of urls) for (let i = 0; i < 4; i++) d.failure(url, now, 'HTTP 502')
  assert.equal(d.ejectedCount, 2, 'floor(5 x 50%) = 2')
  assert.deepEqual(urls.map(u => d.ejectedUntil(u) > 0), [true, true, false, false, false])
  const held = events.filter(e => e.to === 'serving')
  assert.equal(held.length, 3, 'one hold-back event per backend, not one per failure')
  assert.match(held[0]?.reason ?? '', /2 of 5 backends are already ejected \(max_ejected_percent 50\)$/)
  // Once the first two are back, a backend still failing is ejected at its next failure.
  while (d.ejectedCount > 0) await sleep(5)
  d.failure(urls[2] as string, Date.now(), 'HTTP 502')
  assert.ok(d.ejectedUntil(urls[2] as string) > 0)
  // A single-backend pool never ejects its only backend at 50%.
  const solo = detector(t, { consecutiveFailures: 1 }, ['http://127.0.0.1:10100'])
  solo.d.failure('http://127.0.0.1:10100', Date.now(), 'HTTP 500')
  assert.equal(solo.d.ejectedCount, 0)
})

test('consecutive_failures = 0 turns detection off; update() forgets removed backends', async t => {
  const off = detector(t, { consecutiveFailures: 0 }, ['http://127.0.0.1:9'])
  for (let i = 0; i < 100; i++) off.d.failure('http://127.0.0.1:9', Date.now(), 'HTTP 500')
  assert.equal(off.events.length, 0)
  const { d } = detector(t, { consecutiveFailures: 1, maxEjectedPercent: 100 }, ['http://127.0.0.1:9', 'http://127.0.0.1:10'])
  d.failure('http://127.0.0.1:9', Date.now(), 'HTTP 500')
  assert.equal(d.ejectedCount, 1)
  d.update(['http://127.0.0.1:10'])
  assert.equal(d.ejectedCount, 0)
  assert.equal(d.ejectedUntil('http://127.0.0.1:9'), 0)
})
