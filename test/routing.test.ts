// Routing: each matcher (exact host, wildcard host, path_prefix, methods, headers), first match wins in file
// order, strip_prefix, host_header, redirect, respond, and no route -> 404 with a clear body.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BASE_TOML, echoOf, parseRawResponse, rawExchange, request, startBackend, startEdge, type Echo } from './helpers.js'

test('routing', async t => {
  const names = ['exact', 'wild', 'api', 'del', 'canary', 'any', 'plain', 'first', 'second', 'mixwild', 'mixexact', 'hhbackend', 'hhliteral']
  const b: Record<string, string> = {}
  for (const n of names) b[n] = (await startBackend(t, n)).url
  const pools = names.map(n => `[pools.${n}]\nbackends = ["${b[n]}"]\n`).join('\n')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
name = "exact"
match.host = "exact.test"
pool = "exact"

[[routes]]
name = "wild"
match.host = "*.wild.test"
pool = "wild"

[[routes]]
name = "del"
match.host = "m.test"
match.methods = ["DELETE", "put"]
pool = "del"

[[routes]]
name = "canary"
match.host = "h.test"
match.headers = { "X-Env" = "canary" }
pool = "canary"

[[routes]]
name = "any"
match.host = "h.test"
match.headers = { "x-any" = "*" }
pool = "any"

[[routes]]
name = "plain"
match.host = "h.test"
pool = "plain"

[[routes]]
name = "first"
match.host = "order.test"
match.path_prefix = "/a"
pool = "first"

[[routes]]
name = "second"
match.host = "order.test"
match.path_prefix = "/a/b"
pool = "second"

[[routes]]
name = "mixwild"
match.host = "*.mix.test"
pool = "mixwild"

[[routes]]
name = "mixexact"
match.host = "x.mix.test"
pool = "mixexact"

[[routes]]
name = "hhbackend"
match.host = "hh.test"
match.path_prefix = "/backend"
host_header = "backend"
pool = "hhbackend"

[[routes]]
name = "hhliteral"
match.host = "hh.test"
host_header = "internal.svc"
pool = "hhliteral"

[[routes]]
name = "teapot"
match.host = "resp.test"
respond = { status = 418, body = "short and stout\\n", content_type = "text/x-teapot" }

[[routes]]
name = "old"
match.host = "redir.test"
match.path_prefix = "/old/"
redirect = { to = "https://example.com/new/", status = 308, append_path = true }

[[routes]]
name = "moved"
match.host = "redir.test"
redirect = { to = "https://example.com/home", status = 301 }

[[routes]]
name = "api"
match.path_prefix = "/api/"
strip_prefix = true
pool = "api"

${pools}`)

  const via = async (host: string, path = '/', method = 'GET', headers: Record<string, string> = {}): Promise<string> => {
    const r = await request(port, { method, path, headers: { host, ...headers } })
    return echoOf(r).backend
  }
  const status = async (host: string, path = '/', method = 'GET', headers: Record<string, string> = {}): Promise<number> =>
    (await request(port, { method, path, headers: { host, ...headers } })).status

  await t.test('exact host, case-insensitive and with a port', async () => {
    assert.equal(await via('exact.test'), 'exact')
    assert.equal(await via('EXACT.Test:8080'), 'exact')
    assert.equal(await status('sub.exact.test'), 404)
  })

  await t.test('wildcard host: one and two labels, never the bare domain', async () => {
    assert.equal(await via('a.wild.test'), 'wild')
    assert.equal(await via('a.b.wild.test'), 'wild')
    assert.equal(await via('A.Wild.Test:80'), 'wild')
    assert.equal(await status('wild.test'), 404)
    assert.equal(await status('xwild.test'), 404)
  })

  await t.test('methods', async () => {
    assert.equal(await via('m.test', '/', 'DELETE'), 'del')
    assert.equal(await via('m.test', '/', 'PUT'), 'del', 'methods are matched case-insensitively as written in the config')
    assert.equal(await status('m.test', '/', 'GET'), 404)
    assert.equal(await status('m.test', '/', 'POST'), 404)
  })

  await t.test('headers: exact value and "*" (present)', async () => {
    assert.equal(await via('h.test', '/', 'GET', { 'x-env': 'canary' }), 'canary')
    assert.equal(await via('h.test', '/', 'GET', { 'x-env': 'Canary' }), 'plain', 'header values match exactly')
    assert.equal(await via('h.test', '/', 'GET', { 'x-any': '' }), 'any')
    assert.equal(await via('h.test', '/', 'GET', { 'x-any': 'whatever' }), 'any')
    assert.equal(await via('h.test'), 'plain')
  })

  await t.test('first match wins, in file order', async () => {
    assert.equal(await via('order.test', '/a/b/c'), 'first')
    assert.equal(await via('order.test', '/abc'), 'first')
    assert.equal(await status('order.test', '/b'), 404)
    // A wildcard route before an exact one for the same host wins: file order, not specificity.
    assert.equal(await via('x.mix.test'), 'mixwild')
    assert.equal(await via('y.mix.test'), 'mixwild')
  })

  await t.test('path_prefix with strip_prefix', async () => {
    const e = echoOf(await request(port, { path: '/api/users/7?q=1', headers: { host: 'anything.test' } }))
    assert.equal(e.backend, 'api')
    assert.equal(e.url, '/users/7?q=1')
    assert.equal(echoOf(await request(port, { path: '/api/', headers: { host: 'x' } })).url, '/')
    assert.equal(echoOf(await request(port, { path: '/api/?x=1', headers: { host: 'x' } })).url, '/?x=1')
    assert.equal(await status('anything.test', '/apix'), 404)
    assert.equal(await status('anything.test', '/API/users'), 404, 'path prefixes are case-sensitive')
  })

  await t.test('without strip_prefix the path is passed unchanged', async () => {
    const e = echoOf(await request(port, { path: '/some/where?x=%20y', headers: { host: 'exact.test' } }))
    assert.equal(e.url, '/some/where?x=%20y')
    assert.equal(e.headers.host, 'exact.test', 'host_header defaults to the client\'s Host')
  })

  await t.test('host_header: "backend" and a literal', async () => {
    const e1 = echoOf(await request(port, { path: '/backend', headers: { host: 'hh.test' } }))
    assert.equal(e1.backend, 'hhbackend')
    assert.equal(e1.headers.host, new URL(b.hhbackend as string).host)
    assert.equal(e1.headers['x-forwarded-host'], 'hh.test')
    const e2 = echoOf(await request(port, { path: '/x', headers: { host: 'hh.test' } }))
    assert.equal(e2.backend, 'hhliteral')
    assert.equal(e2.headers.host, 'internal.svc')
  })

  await t.test('redirect with append_path, and without', async () => {
    const r1 = await request(port, { path: '/old/a/b?x=1', headers: { host: 'redir.test' } })
    assert.equal(r1.status, 308)
    assert.equal(r1.headers.location, 'https://example.com/new/a/b?x=1')
    const r2 = await request(port, { path: '/elsewhere?y=2', headers: { host: 'redir.test' } })
    assert.equal(r2.status, 301)
    assert.equal(r2.headers.location, 'https://example.com/home')
  })

  await t.test('respond', async () => {
    const r = await request(port, { path: '/anything', headers: { host: 'resp.test' } })
    assert.equal(r.status, 418)
    assert.equal(r.body, 'short and stout\n')
    assert.equal(r.headers['content-type'], 'text/x-teapot')
    assert.ok(typeof r.headers['x-request-id'] === 'string' && r.headers['x-request-id'] !== '')
  })

  await t.test('absolute-form targets route on their authority and reach the backend in origin-form', async () => {
    const raw = async (target: string, host: string): Promise<Echo> => {
      const r = parseRawResponse(await rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`))
      assert.equal(r.status, 200, r.body)
      return JSON.parse(r.body) as Echo
    }
    const e1 = await raw('http://exact.test/some?x=1', 'h.test')
    assert.equal(e1.backend, 'exact', 'the target\'s authority wins over Host')
    assert.equal(e1.url, '/some?x=1')
    assert.equal(e1.headers.host, 'exact.test')
    const e2 = await raw('http://elsewhere.test/api/users', 'resp.test')
    assert.equal(e2.backend, 'api')
    assert.equal(e2.url, '/users', 'path_prefix and strip_prefix see the path, not the whole URL')
    const bad = parseRawResponse(await rawExchange(port, 'GET ftp://x.test/ HTTP/1.1\r\nHost: x.test\r\nConnection: close\r\n\r\n'))
    assert.equal(bad.status, 400)
  })

  await t.test('no route: 404 with a clear body naming host, path, code and request id', async () => {
    const r = await request(port, { path: '/nowhere?secret=1', headers: { host: 'unknown.test', 'x-request-id': 'rid-404' } })
    assert.equal(r.status, 404)
    assert.match(r.body, /no route for unknown\.test\/nowhere\n/)
    assert.match(r.body, /code: EP_ERR_NO_ROUTE/)
    assert.match(r.body, /request-id: rid-404/)
    assert.doesNotMatch(r.body, /secret/, 'the query string is not echoed')
    assert.equal(r.headers['x-request-id'], 'rid-404')
  })
})
