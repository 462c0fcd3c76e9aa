// Path normalisation: the edge routes and forwards one spelling of a path, so a path_prefix route cannot be
// bypassed by "/x/../admin", "//admin" or "/%61dmin"; and OPTIONS * is answered by the edge itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { normalizePath } from '../proxy/listen/request.js'
import { BASE_TOML, echoOf, parseRawResponse, rawExchange, request, startBackend, startEdge } from './helpers.js'

test('unit: normalizePath resolves dot segments, merges slashes, decodes only unreserved escapes', () => {
  const cases: [string, string][] = [
    ['/a/../admin', '/admin'],
    ['//admin/x', '/admin/x'],
    ['/%61dmin/%7euser', '/admin/~user'],
    ['/a/./b/', '/a/b/'],
    ['/a/b/..', '/a/'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/x%2fy', '/x%2Fy'], // an encoded slash stays encoded: it is data, not a separator
    ['/a?next=/../b', '/a?next=/../b'], // the query is not a path
  ]
  for (const [input, want] of cases) assert.equal(normalizePath(input), want, input)
})

test('a path_prefix route cannot be bypassed by another spelling of its path', async t => {
  const admin = await startBackend(t, 'admin')
  const site = await startBackend(t, 'site')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
name = "admin"
match.path_prefix = "/admin/"
pool = "admin"

[[routes]]
name = "site"
pool = "site"

[pools.admin]
backends = ["${admin.url}"]
[pools.site]
backends = ["${site.url}"]
`)
  for (const path of ['/admin/x', '/public/../admin/x', '//admin/x', '/%61dmin/x', '/./admin/x']) {
    const e = echoOf(await request(port, { path }))
    assert.equal(e.backend, 'admin', `${path} went to ${e.backend}`)
    assert.equal(e.url, '/admin/x', `${path} reached the backend as ${e.url}`)
  }
  const e = echoOf(await request(port, { path: '/public/x?q=/../admin' }))
  assert.equal(e.backend, 'site')
  assert.equal(e.url, '/public/x?q=/../admin')
})

test('OPTIONS * is answered by the edge (204 with Allow); "*" with another method is 400', async t => {
  const b = await startBackend(t, 'b')
  const { port } = await startEdge(t, `${BASE_TOML}
[[routes]]
pool = "p"
[pools.p]
backends = ["${b.url}"]
`)
  const ok = parseRawResponse(await rawExchange(port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
  assert.equal(ok.status, 204)
  assert.match(ok.headers.allow ?? '', /GET/)
  const bad = parseRawResponse(await rawExchange(port, 'GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'))
  assert.equal(bad.status, 400)
  assert.equal(b.seen.length, 0, 'the backend was bothered')
})
