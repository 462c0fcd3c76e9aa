// Retry budget: a full outage costs about (1 + budget) x the traffic, low traffic can still retry, and the
// window forgets an outage once it has passed.
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Agent, request } from 'undici'
import { RetryBudget } from '../health/retry-budget.js'

const T0 = 1_700_000_000_000

/** Sends one request with up to `attempts` retries on 503, each retry asked of the budget, as forward.ts will. */
async function send (url: string, dispatcher: Agent, budget: RetryBudget, attempts: number): Promise<number> {
  budget.onRequest(Date.now())
  for (let tries = 0; ; tries++) {
    const res = await request(url, { dispatcher })
    await res.body.dump()
    if (res.statusCode !== 503 || tries === attempts || !budget.tryRetry(Date.now())) return res.statusCode
  }
}

async function deadBackend (t: TestContext): Promise<{ url: string, hits: () => number }> {
  let hits = 0
  const server = http.createServer((_req, res) => { hits++; res.writeHead(503).end() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, hits: () => hits }
}

test('a full outage: 1000 failed requests allow about budget x 1000 retries plus the minimum', () => {
  const b = new RetryBudget({ budget: 0.2 })
  let retries = 0
  let refused = 0
  // 100 requests a second for 10 s, each failing and asking for up to two retries.
  for (let i = 0; i < 1000; i++) {
    const now = T0 + i * 10
    b.onRequest(now)
    for (let a = 0; a < 2; a++) {
      if (b.tryRetry(now)) retries++
      else { refused++; break }
    }
  }
  assert.ok(retries >= 200 && retries <= 200 + 3 * 10, `${retries} retries for 1000 requests`)
  const s = b.snapshot(T0 + 9999)
  assert.equal(s.retries, retries)
  assert.equal(s.refused, refused)
  assert.equal(s.available, false)
})

test('a real dead backend sees at most (1 + budget) x the requests, not (1 + attempts) x', async t => {
  const dead = await deadBackend(t)
  const dispatcher = new Agent({ connections: 8 })
  t.after(() => dispatcher.close())
  const budget = new RetryBudget({ budget: 0.2 })
  const started = Date.now()
  for (let i = 0; i < 50; i++) await Promise.all(Array.from({ length: 10 }, () => send(dead.url, dispatcher, budget, 2)))
  const seconds = Math.ceil((Date.now() - started) / 1000) + 1
  const extra = dead.hits() - 500
  assert.ok(extra >= 100, `${extra} retries: the budget should grant about 100`)
  assert.ok(extra <= 100 + 3 * seconds + 2, `${extra} retries in ${seconds}s went over budget`)
})

test('low traffic can still retry: the per-second minimum', () => {
  const b = new RetryBudget({ budget: 0.2, minPerSecond: 3 })
  let retries = 0
  for (let s = 0; s < 20; s++) {
    const now = T0 + s * 1000
    b.onRequest(now)
    for (let a = 0; a < 2 && b.tryRetry(now); a++) retries++
  }
  assert.equal(retries, 40, 'one request a second gets both its retries')
  // ... but the minimum is per second, not per request.
  const burst = new RetryBudget({ budget: 0, minPerSecond: 3 })
  let granted = 0
  for (let i = 0; i < 100; i++) if (burst.tryRetry(T0 + i)) granted++
  assert.equal(granted, 3)
})

test('the window forgets: after an outage passes the full budget is back', () => {
  const b = new RetryBudget({ budget: 0.5, minPerSecond: 0, window: 10_000 })
  for (let i = 0; i < 100; i++) {
    b.onRequest(T0 + i)
    b.tryRetry(T0 + i)
  }
  assert.equal(b.snapshot(T0 + 100).retries, 50)
  assert.equal(b.tryRetry(T0 + 100), false)
  // Fifteen seconds on, the old requests and retries are out of the window.
  const later = T0 + 15_000
  assert.deepEqual({ ...b.snapshot(later), refused: 0 }, { requests: 0, retries: 0, refused: 0, available: false })
  b.onRequest(later)
  b.onRequest(later)
  assert.equal(b.tryRetry(later), true)
  assert.equal(b.tryRetry(later), false)
})
