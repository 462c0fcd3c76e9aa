// [pools.NAME.shadow]: the keys as the issue spells them resolve to a frozen ShadowConfig; every mistake is a
// problem naming its key path (shadow pool missing or itself, sample outside [0, 1], a method a shadow cannot
// carry, a bad JSON path or endpoint pattern, a bad size).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfigText, summarize, type ConfigProblem } from '../config/load.js'
import { parseJsonPath, parseSize } from '../config/shadow.js'

const HEAD = `[admin]
listen = "127.0.0.1:0"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
[[routes]]
pool = "api"
[pools.api]
backends = ["http://127.0.0.1:9001"]
[pools.api-remote1]
backends = ["http://127.0.0.1:9002"]
`

function problemsOf (text: string): ConfigProblem[] {
  try {
    parseConfigText(text, 'case.toml')
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return [...err.problems]
  }
  assert.fail('the config was accepted')
}

test('the issue\'s example shadow table resolves with every key', () => {
  const c = parseConfigText(`${HEAD}
[pools.api.shadow]
pool = "api-remote1"
sample = 0.25
sample_key = "header:x-user"
methods = ["GET", "HEAD"]
max_body = "1mb"
max_inflight = 64
timeout = "5s"
secondary = false
ignore_headers = ["date", "server-timing", "x-request-id"]
ignore_json = ["$.generated_at", "$.items[*].etag"]
endpoints = ["/users/:id", "/orders/:id/items"]
store = "shadow/"
`, '/etc/edge/proxy.toml')
  const s = c.pools.get('api')?.shadow
  assert.ok(s !== undefined)
  assert.equal(s.pool, 'api-remote1')
  assert.equal(s.sample, 0.25)
  assert.deepEqual(s.sampleKey, { kind: 'header', name: 'x-user' })
  assert.deepEqual([...s.methods], ['GET', 'HEAD'])
  assert.equal(s.maxBody, 1024 * 1024)
  assert.equal(s.maxInflight, 64)
  assert.equal(s.timeout, 5000)
  assert.equal(s.secondary, false)
  assert.deepEqual([...s.ignoreHeaders], ['date', 'server-timing', 'x-request-id'])
  assert.deepEqual(s.ignoreJson.map(j => j.steps), [[{ key: 'generated_at' }], [{ key: 'items' }, { any: true }, { key: 'etag' }]])
  assert.deepEqual(s.endpoints, ['/users/:id', '/orders/:id/items'])
  assert.equal(s.store, '/etc/edge/shadow', 'store is relative to the config file')
  assert.equal(s.header, 'x-shadow')
  assert.ok(Object.isFrozen(s) && Object.isFrozen(s.ignoreJson))
  // The route holds the same pool object, shadow included.
  const action = c.routes[0]?.action
  assert.ok(action?.kind === 'pool' && action.pool.shadow === s)
  assert.match(summarize(c), /shadow -> pool api-remote1: sample 0\.25, methods GET,HEAD/)
  assert.equal(c.pools.get('api-remote1')?.shadow, undefined)
})

test('defaults: sample 1, GET/HEAD/OPTIONS, 1 MiB, 64 in flight, 5 s, x-shadow, no store', () => {
  const c = parseConfigText(`${HEAD}
[pools.api.shadow]
pool = "api-remote1"
header = "X-Mirror"
`)
  const s = c.pools.get('api')?.shadow
  assert.ok(s !== undefined)
  assert.equal(s.sample, 1)
  assert.deepEqual([...s.methods], ['GET', 'HEAD', 'OPTIONS'])
  assert.equal(s.maxBody, 1 << 20)
  assert.equal(s.maxInflight, 64)
  assert.equal(s.timeout, 5000)
  assert.equal(s.store, undefined)
  assert.equal(s.header, 'x-mirror')
  assert.equal(s.sampleKey, undefined)
})

const bad: [name: string, body: string, path: string, reason: RegExp][] = [
  ['missing shadow pool, with a hint', 'pool = "api-remote"', 'pools.api.shadow.pool', /no pool named "api-remote" \(did you mean "api-remote1"\?\)/],
  ['a pool cannot shadow itself', 'pool = "api"', 'pools.api.shadow.pool', /cannot shadow itself/],
  ['sample above 1', 'pool = "api-remote1"\nsample = 1.5', 'pools.api.shadow.sample', /fraction from 0 to 1/],
  ['sample below 0', 'pool = "api-remote1"\nsample = -0.1', 'pools.api.shadow.sample', /fraction from 0 to 1/],
  ['a method a shadow cannot carry', 'pool = "api-remote1"\nmethods = ["GET", "CONNECT"]', 'pools.api.shadow.methods[1]', /not a method a shadow can carry/],
  ['a made-up method', 'pool = "api-remote1"\nmethods = ["FETCH"]', 'pools.api.shadow.methods[0]', /not a method/],
  ['a bad size', 'pool = "api-remote1"\nmax_body = "1 parsec"', 'pools.api.shadow.max_body', /not a size/],
  ['a JSON path without $', 'pool = "api-remote1"\nignore_json = ["$.ok", "items.etag"]', 'pools.api.shadow.ignore_json[1]', /starts with "\$"/],
  ['a JSON path with a filter', 'pool = "api-remote1"\nignore_json = ["$.items[?(@.x)]"]', 'pools.api.shadow.ignore_json[0]', /cannot read/],
  ['an endpoint without /', 'pool = "api-remote1"\nendpoints = ["users/:id"]', 'pools.api.shadow.endpoints[0]', /starts with "\/"/],
  ['a bad sample_key', 'pool = "api-remote1"\nsample_key = "user"', 'pools.api.shadow.sample_key', /not a hash key/],
  ['max_inflight 0', 'pool = "api-remote1"\nmax_inflight = 0', 'pools.api.shadow.max_inflight', /too small|>=1/],
  ['an unknown key', 'pool = "api-remote1"\nsampel = 0.5', 'pools.api.shadow.sampel', /did you mean "sample"/],
]

for (const [name, body, path, reason] of bad) {
  test(`shadow config problem: ${name}`, () => {
    const problems = problemsOf(`${HEAD}\n[pools.api.shadow]\n${body}\n`)
    const p = problems.find(x => x.path === path)
    assert.ok(p !== undefined, `no problem at ${path}: ${JSON.stringify(problems)}`)
    assert.match(p.message, reason)
    assert.ok(p.line !== undefined, 'the problem points at a line')
  })
}

test('a tcp:// pool can neither shadow nor be a shadow', () => {
  const problems = problemsOf(`${HEAD}
[pools.raw]
backends = ["tcp://127.0.0.1:9443"]
[pools.api.shadow]
pool = "raw"
`)
  assert.ok(problems.some(p => p.path === 'pools.api.shadow.pool' && /tcp:\/\//.test(p.message)), JSON.stringify(problems))
})

test('sizes and JSON paths parse as documented', () => {
  assert.equal(parseSize('64kb'), 65536)
  assert.equal(parseSize('1mb'), 1048576)
  assert.equal(parseSize(512), 512)
  assert.equal(parseSize('512'), 512)
  assert.equal(parseSize('x'), undefined)
  assert.deepEqual(parseJsonPath('$.a["b c"][3].*'), [{ key: 'a' }, { key: 'b c' }, { index: 3 }, { any: true }])
  assert.equal(typeof parseJsonPath('$'), 'string')
})
