// Config pieces: the TOML keys of [pools.NAME.health|outlier|retry|limits], their defaults, and their errors.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parse } from 'smol-toml'
import { formatStatusRanges, parseStatusRanges, poolHealthSchema, resolvePoolHealth, statusMatches } from '../config/health.js'

function pool (toml: string): ReturnType<typeof poolHealthSchema.safeParse> {
  const doc = parse(toml) as { pools: { api: unknown } }
  return poolHealthSchema.safeParse(doc.pools.api)
}

test('expect ranges parse and apply', () => {
  const r = parseStatusRanges('200,204,300-399') ?? assert.fail('did not parse')
  assert.deepEqual(r, [[200, 200], [204, 204], [300, 399]])
  assert.equal(formatStatusRanges(r), '200,204,300-399')
  for (const s of [200, 204, 300, 350, 399]) assert.ok(statusMatches(r, s), `${s} accepted`)
  for (const s of [201, 203, 299, 400, 500]) assert.ok(!statusMatches(r, s), `${s} rejected`)
  assert.deepEqual(parseStatusRanges(' 200 - 399 '), [[200, 399]])
  for (const bad of ['', '2xx', '399-200', '200-', '600', '99', '200;300', '200,,300']) {
    assert.equal(parseStatusRanges(bad), undefined, `"${bad}" rejected`)
  }
})

test('every key from the issue parses and resolves to ms and camelCase', () => {
  const r = pool(`
[pools.api.health]
path = "/healthz"
type = "tcp"
interval = "2s"
timeout = "1s"
expect = "200-399"
rise = 2
fall = 3
slow_start = "10s"
[pools.api.outlier]
consecutive_failures = 5
base_ejection = "30s"
max_ejected_percent = 50
[pools.api.retry]
attempts = 2
on = ["connect-failure","502","503","504"]
budget = 0.2
per_try_timeout = "2s"
[pools.api.limits]
max_inflight_per_backend = 256
`)
  assert.ok(r.success, JSON.stringify(r.error?.issues))
  const c = resolvePoolHealth(r.data)
  assert.deepEqual(c.health, { type: 'tcp', path: '/healthz', interval: 2000, timeout: 1000, expect: [[200, 399]], rise: 2, fall: 3, slowStart: 10_000 })
  assert.deepEqual(c.outlier, { consecutiveFailures: 5, baseEjection: 30_000, maxEjectedPercent: 50 })
  assert.deepEqual(c.retry, { attempts: 2, on: new Set(['connect-failure', '502', '503', '504']), budget: 0.2, perTryTimeout: 2000 })
  assert.deepEqual(c.limits, { maxInflightPerBackend: 256 })
})

test('defaults: no active checks, outlier on, connect-failure retries under a 20% budget, no inflight limit', () => {
  const r = pool('[pools.api]\n')
  assert.ok(r.success)
  const c = resolvePoolHealth(r.data)
  assert.equal(c.health, undefined)
  assert.deepEqual(c.outlier, { consecutiveFailures: 5, baseEjection: 30_000, maxEjectedPercent: 50 })
  assert.deepEqual(c.retry, { attempts: 2, on: new Set(['connect-failure']), budget: 0.2, perTryTimeout: undefined })
  assert.equal(c.limits.maxInflightPerBackend, 0)
  const h = pool('[pools.api.health]\n')
  assert.ok(h.success)
  assert.deepEqual(resolvePoolHealth(h.data).health, { type: 'http', path: '/', interval: 2000, timeout: 1000, expect: [[200, 399]], rise: 2, fall: 3, slowStart: 0 })
  const n = pool('[pools.api.health]\nexpect = 204\n')
  assert.ok(n.success)
  assert.deepEqual(resolvePoolHealth(n.data).health?.expect, [[204, 204]])
})

test('mistakes are reported with their key path', () => {
  const cases: Array<[string, string]> = [
    ['[pools.api.health]\nexpect = "2xx"', 'health.expect'],
    ['[pools.api.health]\ntype = "udp"', 'health.type'],
    ['[pools.api.health]\ninterval = "1s"\ntimeout = "2s"', 'health.timeout'],
    ['[pools.api.health]\npath = "healthz"', 'health.path'],
    ['[pools.api.health]\nrise = 0', 'health.rise'],
    ['[pools.api.health]\nintervall = "1s"', 'health'],
    ['[pools.api.outlier]\nmax_ejected_percent = 150', 'outlier.max_ejected_percent'],
    ['[pools.api.retry]\non = ["501"]', 'retry.on.0'],
    ['[pools.api.retry]\nbudget = 2', 'retry.budget'],
    ['[pools.api.retry]\nper_try_timeout = "soon"', 'retry.per_try_timeout'],
    ['[pools.api.limits]\nmax_inflight_per_backend = -1', 'limits.max_inflight_per_backend'],
  ]
  for (const [toml, path] of cases) {
    const r = pool(toml)
    assert.ok(!r.success, `${toml} should fail`)
    assert.ok(r.error.issues.some(i => i.path.join('.') === path), `${toml}: ${JSON.stringify(r.error.issues.map(i => i.path.join('.')))}`)
  }
})
