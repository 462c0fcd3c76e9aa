// The request resolver (proxy/route/resolve.ts): one listener + request -> route + pool for the HTTP listener,
// upgrades and tls passthrough, with run-time entries (tunnel claims under auto_route) beating only host-less
// (or sni-less) routes. Called on a table built from a parsed config; the run-time source is a plain object.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseConfigText, defaultPoolAction, defaultPoolConfig } from '../config/load.js'
import type { RouteConfig } from '../config/types.js'
import { EdgeTable } from '../proxy/route/table.js'
import type { Resolved, RuntimeRoutes } from '../proxy/route/resolve.js'
import { BackendStore } from '../proxy/upstream/store.js'
import { PoolRuntime } from '../proxy/upstream/pool.js'

const TOML = `
[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[listeners]]
name = "passthrough"
listen = "127.0.0.1:0"
protocol = "tls"

[pools.named]
backends = ["http://127.0.0.1:9001"]

[pools.fallback]
backends = ["http://127.0.0.1:9002"]

[pools.db]
backends = ["tcp://127.0.0.1:9003"]

[pools.anytls]
backends = ["tcp://127.0.0.1:9004"]

[[routes]]
name = "named"
match.host = "named.test"
pool = "named"

[[routes]]
name = "catch-all"
pool = "fallback"

[[routes]]
name = "db"
listener = "passthrough"
match.sni = "db.test"
pool = "db"

[[routes]]
name = "any-tls"
listener = "passthrough"
pool = "anytls"
`

function runtimeEntry (store: BackendStore, name: string): Resolved {
  const poolConfig = defaultPoolConfig(`tunnel:${name}`, { balance: 'least_conn', tunnel: name })
  const route = { name: `tunnel:${name}`, index: -1, listeners: undefined, match: { host: name, pathPrefix: undefined, methods: undefined, headers: undefined }, action: defaultPoolAction(poolConfig) } as unknown as RouteConfig
  return { route, pool: new PoolRuntime(poolConfig, store) }
}

const req = { headers: {} }

test('file routes, run-time entries and the catch-all resolve in that order, for HTTP and for tls by server name', () => {
  const config = parseConfigText(TOML)
  const store = new BackendStore({ connectTimeout: 1000, keepAliveTimeout: 1000, maxHeaderSize: 16384 })
  const claimed = runtimeEntry(store, 'named.test')
  const app = runtimeEntry(store, 'app.tunnel.test')
  const db = runtimeEntry(store, 'db.test')
  const other = runtimeEntry(store, 'other.test')
  const asked: string[] = []
  const runtime: RuntimeRoutes = {
    byHost: host => { asked.push(host); return host === 'app.tunnel.test' ? app : host === 'named.test' ? claimed : undefined },
    bySni: sni => sni === 'db.test' ? db : sni === 'other.test' ? other : undefined,
  }
  const table = new EdgeTable(config, store, runtime)
  const r = table.resolver

  // A route that names the host wins over a claim of the same host, and the run-time source is not asked.
  const named = r.resolve('web', 'named.test', '/', 'GET', req)
  assert.equal(named?.route.name, 'named')
  assert.equal(named?.pool, table.pool('named'))
  assert.deepEqual(asked, [])
  // A claimed host beats the host-less catch-all.
  assert.equal(r.resolve('web', 'app.tunnel.test', '/x', 'GET', req), app)
  // Nothing claimed: the catch-all, with the table's own pool runtime.
  const fallback = r.resolve('web', 'unknown.test', '/', 'GET', req)
  assert.equal(fallback?.route.name, 'catch-all')
  assert.equal(fallback?.pool, table.pool('fallback'))
  // The same entry object every time: nothing is built per request.
  assert.equal(r.resolve('web', 'unknown.test', '/', 'GET', req), fallback)

  // tls: a route with match.sni wins over a claim; a claim beats the sni-less route; else the sni-less route.
  assert.equal(r.resolveSni('passthrough', 'db.test')?.route.name, 'db')
  assert.equal(r.resolveSni('passthrough', 'other.test'), other)
  assert.equal(r.resolveSni('passthrough', 'nobody.test')?.pool, table.pool('anytls'))
  assert.equal(r.resolveSni('passthrough', undefined)?.route.name, 'any-tls')
  // HTTP routes do not serve the tls listener, nor tls routes the HTTP one.
  assert.equal(r.resolve('passthrough', 'app.tunnel.test', '/', 'GET', req), undefined)
  assert.equal(r.resolveSni('web', 'db.test'), undefined)
  assert.equal(r.resolve('nope', 'app.tunnel.test', '/', 'GET', req), undefined)
})

test('without a catch-all and without a claim there is no route', () => {
  const config = parseConfigText(TOML.replace(/\[\[routes\]\]\nname = "catch-all"\npool = "fallback"\n/, ''))
  const store = new BackendStore({ connectTimeout: 1000, keepAliveTimeout: 1000, maxHeaderSize: 16384 })
  const table = new EdgeTable(config, store)
  assert.equal(table.resolver.resolve('web', 'unknown.test', '/', 'GET', req), undefined)
  assert.equal(table.resolver.resolve('web', 'named.test', '/', 'GET', req)?.route.name, 'named')
})
