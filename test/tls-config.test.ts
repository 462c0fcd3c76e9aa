// Config errors for the TLS keys carry their key path: missing certificate files, a key that does not match,
// tcp:// pools on http routes and HTTP pools on tls routes, match.sni on plain http, TLS keys on http listeners.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, loadConfigFile } from '../config/load.js'
import { makePki } from './tls-fixtures.js'

async function problems (dir: string, toml: string): Promise<string[]> {
  const file = join(dir, 'proxy.toml')
  await writeFile(file, toml)
  try {
    await loadConfigFile(file)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map(p => `${p.path}: ${p.message}`)
  }
}

test('valid https and tls listeners load with paths resolved against the config file', async t => {
  const pki = await makePki(t)
  const a = await pki.issue(['a.example.com'])
  await writeFile(join(pki.dir, 'ca.pem'), pki.ca.cert)
  const file = join(pki.dir, 'proxy.toml')
  await writeFile(file, `
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [{ cert = "a.example.com.pem", key = "a.example.com.key" }]
default_certificate = "a.example.com"
alpn = ["http/1.1"]
min_version = "TLSv1.3"
client_ca = "ca.pem"
[[listeners]]
name = "p"
listen = "127.0.0.1:0"
protocol = "tls"
[[routes]]
listener = "p"
match.sni = "*.Example.com"
pool = "db"
[[routes]]
match.sni = "a.example.com"
pool = "web"
[pools.db]
backends = ["tcp://127.0.0.1:5432"]
[pools.web]
backends = ["https://127.0.0.1:9443", "h2c://127.0.0.1:50051"]
tls = { ca = "ca.pem", servername = "api.internal" }
`)
  const c = await loadConfigFile(file)
  const s = c.listeners[0]
  assert.equal(s?.tls?.certificates?.[0]?.cert, a.cert)
  assert.equal(s?.tls?.defaultCertificate, 'a.example.com')
  assert.deepEqual(s?.tls?.alpn, ['http/1.1'])
  assert.equal(s?.tls?.minVersion, 'TLSv1.3')
  assert.equal(s?.tls?.clientCa, pki.ca.cert)
  assert.equal(c.routes[0]?.match.sni, '*.example.com')
  assert.deepEqual(c.pools.get('db')?.backends.map(b => b.url), ['tcp://127.0.0.1:5432'])
  assert.deepEqual(c.pools.get('web')?.backends.map(b => b.url), ['https://127.0.0.1:9443', 'h2c://127.0.0.1:50051'])
  assert.equal(c.pools.get('web')?.tls?.servername, 'api.internal')
})

test('config errors for the TLS keys name their key paths', async t => {
  const pki = await makePki(t)
  await pki.issue(['a.example.com'])
  const b = await pki.issue(['b.example.com'])
  const got = await problems(pki.dir, `
[[listeners]]
name = "s"
listen = "127.0.0.1:0"
protocol = "https"
certificates = [
  { cert = "missing.pem", key = "a.example.com.key" },
  { cert = "a.example.com.pem", key = "${b.key}" },
]
default_certificate = "zzz.example.com"
[[listeners]]
name = "h"
listen = "127.0.0.1:0"
alpn = ["h2"]
[[listeners]]
name = "p"
listen = "127.0.0.1:0"
protocol = "tls"
[[listeners]]
name = "s2"
listen = "127.0.0.1:0"
protocol = "https"
[[routes]]
pool = "db"
[[routes]]
listener = "p"
pool = "web"
[[routes]]
listener = "p"
match.host = "x.example.com"
respond = { status = 200 }
[[routes]]
listener = "h"
match.sni = "a.example.com"
pool = "web"
[[routes]]
listener = ["p", "h"]
match.sni = "*.*.example.com"
pool = "db"
[pools.db]
backends = ["tcp://127.0.0.1:5432"]
[pools.web]
backends = ["http://127.0.0.1:9001"]
tls = { insecure = true }
[pools.mixed]
backends = ["tcp://127.0.0.1:1", "http://127.0.0.1:2", "tcp://127.0.0.1"]
`)
  const expect = [
    /^listeners\[0\]\.certificates\[0\]\.cert: certificate file .*missing\.pem does not exist$/,
    /^listeners\[0\]\.certificates\[1\]\.key: .*b\.example\.com\.key does not match the certificate/,
    /^listeners\[0\]\.default_certificate: "zzz\.example\.com" is neither/,
    /^listeners\[1\]\.alpn: alpn only applies to protocol = "https"/,
    /^listeners\[3\]\.certificates: an https listener needs certificates/,
    /^routes\[0\]\.pool: pool "db" has tcp:\/\/ backends, which only tls passthrough routes can use/,
    /^routes\[1\]\.pool: pool "web" has HTTP backends; a tls listener passes raw connections/,
    /^routes\[2\]\.match\.host: match\.host cannot apply on a tls listener/,
    /^routes\[2\]: route "route-3" is on a tls listener/,
    /^routes\[3\]\.match\.sni: match\.sni needs an https or tls listener; "h" is plain http/,
    /^routes\[4\]\.match\.sni: "\*\.\*\.example\.com" is not a server name/,
    /^routes\[4\]\.listener: a route is either for tls listeners/,
    /^pools\.web\.tls: tls settings apply to https:\/\/ backends/,
    /^pools\.mixed\.backends\[2\]: "tcp:\/\/127\.0\.0\.1": write tcp:\/\/HOST:PORT/,
    /^pools\.mixed\.backends: a pool is either all tcp:\/\/ backends/,
  ]
  for (const re of expect) assert.ok(got.some(p => re.test(p)), `missing ${String(re)} in\n${got.join('\n')}`)
})
