// Config errors: every problem names the file, the key path, the line and the reason; `edge-proxy check`
// exits 2 on them and the edge starts nothing. A good file (proxy.example.toml) checks with exit 0 and a summary.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigError, formatProblem, parseConfigText, type ConfigProblem } from '../config/load.js'
import { freePort, runCli, tempDir } from './helpers.js'

const HEAD = `[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "web"
listen = "127.0.0.1:PORT"
`

/** 1-based line of the first line containing `marker`. */
function lineOf (text: string, marker: string): number {
  const i = text.split('\n').findIndex(l => l.includes(marker))
  assert.notEqual(i, -1, `marker ${marker} not in the text`)
  return i + 1
}

function problemsOf (text: string): ConfigProblem[] {
  try {
    parseConfigText(text, 'case.toml')
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    assert.equal(err.code, 'EP_ERR_CONFIG')
    return [...err.problems]
  }
  assert.fail('the config was accepted')
}

interface Case {
  readonly name: string
  readonly body: string
  /** Key path the problem must name ('' for syntax errors). */
  readonly path: string
  /** A snippet on the line the problem must point at. */
  readonly marker: string
  readonly reason: RegExp
  /** The column the problem must name (TOML syntax errors only). */
  readonly column?: number
}

const cases: Case[] = [
  {
    name: 'unknown key suggests the closest known one',
    body: `
[[routes]]
name = "r"
tiemout = "3s"   # MARK
respond = { status = 200 }
`,
    path: 'routes[0].tiemout',
    marker: 'MARK',
    reason: /unknown key \(did you mean "timeout"\?\)/,
  },
  {
    name: 'unknown key in a nested table',
    body: `
[server]
workerz = 2   # MARK
`,
    path: 'server.workerz',
    marker: 'MARK',
    reason: /unknown key \(did you mean "workers"\?\)/,
  },
  {
    name: 'an unknown http1_server',
    body: `
[server]
http1_server = "fast"   # MARK
`,
    path: 'server.http1_server',
    marker: 'MARK',
    reason: /http1_server is "edge" .* or "node"/,
  },
  {
    name: 'a route naming an undefined pool',
    body: `
[[routes]]
name = "r"
pool = "apii"   # MARK

[pools.api]
backends = ["http://127.0.0.1:9"]
`,
    path: 'routes[0].pool',
    marker: 'MARK',
    reason: /names pool "apii", which is not defined \(did you mean "api"\?\)/,
  },
  {
    name: 'a backend URL that is not http(s)',
    body: `
[[routes]]
pool = "api"

[pools.api]
backends = ["ftp://127.0.0.1:9"]   # MARK
`,
    path: 'pools.api.backends[0]',
    marker: 'MARK',
    reason: /backend URLs are http:\/\/, https:\/\/, h2c:\/\/ .* or tcp:\/\/ .*\(got ftp\)/,
  },
  {
    name: 'a duration that does not parse',
    body: `
[[routes]]
pool = "api"
timeout = "3 parsecs"   # MARK

[pools.api]
backends = ["http://127.0.0.1:9"]
`,
    path: 'routes[0].timeout',
    marker: 'MARK',
    reason: /"3 parsecs" is not a duration/,
  },
  {
    name: 'two listeners on one address',
    body: `
[[listeners]]
name = "second"
listen = "127.0.0.1:PORT"   # MARK
`,
    path: 'listeners[1].listen',
    marker: 'MARK',
    reason: /already used by listener "web"/,
  },
  {
    name: 'TOML syntax error',
    body: `
[[routes]
name = "broken"   # the header above is the error
`,
    path: '',
    marker: '[[routes]',
    reason: /TOML syntax/,
    column: 10,
  },
]

for (const c of cases) {
  test(`config error: ${c.name} → file, key path, line, reason; check exits 2 and run starts nothing`, async t => {
    const dir = await tempDir(t)
    const port = await freePort()
    const text = (HEAD + c.body).replaceAll('PORT', String(port))
    const line = lineOf(text, c.marker)

    // The API: one problem with all four parts.
    const problems = problemsOf(text)
    const p = problems.find(x => c.reason.test(x.message))
    assert.ok(p !== undefined, `no problem matching ${String(c.reason)} in ${JSON.stringify(problems)}`)
    assert.equal(p.file, 'case.toml')
    assert.equal(p.path, c.path)
    assert.equal(p.line, line)

    // The CLI: `check` prints "FILE:LINE: PATH: reason" and exits 2.
    const file = join(dir, 'bad.toml')
    await writeFile(file, text)
    const [check, run] = await Promise.all([runCli(['check', '--config', file]), runCli(['--config', file])])
    assert.equal(check.code, 2, check.stderr)
    assert.equal(check.stdout, '')
    // A TOML syntax error names the column too: "FILE:LINE:COLUMN: reason".
    const column = c.column
    if (column !== undefined) assert.equal(p.column, column)
    const expectedPrefix = `${file}:${line}${column === undefined ? '' : `:${column}`}: ${c.path === '' ? '' : `${c.path}: `}`
    const printed = check.stderr.split('\n').find(l => l.startsWith(expectedPrefix))
    assert.ok(printed !== undefined, `no line starting with ${expectedPrefix} in:\n${check.stderr}`)
    assert.match(printed, c.reason)

    // Running with it fails the same way and never listens.
    assert.equal(run.code, 2, run.stderr)
    assert.doesNotMatch(run.stderr, /"msg":"listening"/)
    assert.match(run.stderr, c.reason)
  })
}

test('config: several problems are all reported, each with its own line', () => {
  const text = `${HEAD.replace('PORT', '0')}
[[routes]]
name = "a"
pool = "nope"      # L1

[[routes]]
name = "b"
pool = "api"

[pools.api]
backends = ["gopher://127.0.0.1:9"]   # L2
`
  const problems = problemsOf(text)
  assert.equal(problems.length, 2, JSON.stringify(problems))
  assert.deepEqual(problems.map(p => [p.path, p.line]).sort(), [
    ['pools.api.backends[0]', lineOf(text, 'L2')],
    ['routes[0].pool', lineOf(text, 'L1')],
  ])
})

test('config: check on proxy.example.toml exits 0 with a summary', async t => {
  // The example's https listener serves the demo certificates that --demo makes beside the file on first use;
  // check a copy in a fresh folder so the test neither depends on nor litters the checkout.
  const dir = await tempDir(t)
  const example = join(dir, 'proxy.example.toml')
  await copyFile(fileURLToPath(new URL('../../proxy.example.toml', import.meta.url)), example)
  const without = await runCli(['check', '--config', example])
  assert.equal(without.code, 2, 'the demo certificates do not exist yet')
  assert.match(without.stderr, /\.demo-certs/)
  const r = await runCli(['check', '--config', example, '--demo'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /: OK\n/)
  assert.match(r.stdout, /workers 1, HTTP\/1\.1 server edge,/)
  assert.match(r.stdout, /listener web http:\/\/127\.0\.0\.1:8080/)
  assert.match(r.stdout, /route api: host=api\.localhost path_prefix=\/v1\/ methods=GET,POST -> pool api/)
  assert.match(r.stdout, /pool users: hash, 2 shards \(a:2, b:1\)/)
  assert.doesNotMatch(r.stderr, /invalid|error/i)
})

test('config: a loaded config is deep-frozen', () => {
  const c = parseConfigText(`${HEAD.replace('PORT', '0')}
[[routes]]
pool = "api"
[pools.api]
backends = ["http://127.0.0.1:9"]
`)
  assert.ok(Object.isFrozen(c))
  assert.ok(Object.isFrozen(c.routes[0]))
  assert.ok(Object.isFrozen(c.pools.get('api')?.backends[0]))
})

test('config: [tunnel] stream_window and max_streams bound a session, and are checked', () => {
  process.env.EDGE_TEST_TUNNEL_SECRET = 'config-test-tunnel-secret-0123456789'
  const base = `[admin]
listen = "127.0.0.1:0"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
[tunnel]
listen = "127.0.0.1:0"
secret = "env:EDGE_TEST_TUNNEL_SECRET"
allow = ["*.tunnel.test"]
`
  const c = parseConfigText(`${base}max_streams = 4\nstream_window = 65536\n`, 'tunnel.toml')
  assert.equal(c.tunnel?.maxStreams, 4)
  assert.equal(c.tunnel?.streamWindow, 65536)
  const d = parseConfigText(base, 'tunnel.toml')
  assert.equal(d.tunnel?.maxStreams, 1024)
  assert.equal(d.tunnel?.streamWindow, 256 * 1024)
  assert.throws(() => parseConfigText(`${base}stream_window = 1024\n`, 'tunnel.toml'), (err: ConfigError) => err.problems.some(p => p.path === 'tunnel.stream_window'))
})

test('config: a [tunnel] secret under 32 bytes is refused, naming the key and how to make one', () => {
  process.env.EDGE_TEST_SHORT_SECRET = 'abc'
  const text = `[[listeners]]
name = "web"
listen = "127.0.0.1:0"
[tunnel]
listen = "127.0.0.1:0"
secret = "env:EDGE_TEST_SHORT_SECRET"
allow = ["*.tunnel.test"]
`
  assert.throws(() => parseConfigText(text, 'short.toml'), (err: Error) => {
    assert.match(err.message, /tunnel\.secret/)
    assert.match(err.message, /3 bytes; an HS256 key needs at least 32: make one with "edge-proxy token --new-secret"/)
    return true
  })
})

test('config errors in a new user\'s words: a number for a duration, a string for a weight, and every problem at once', () => {
  const problems = (text: string): string[] => {
    try { parseConfigText(text, 'words.toml'); return [] } catch (err) { return (err as ConfigError).problems.map(formatProblem) }
  }
  const got = problems(`[server]
shutdown_timeout = 10
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
[pools.a]
backends = [{ url = "http://127.0.0.1:1", weight = "2" }]
[[routes]]
pool = "a"
`)
  assert.deepEqual(got, [
    'words.toml:2: server.shutdown_timeout: expected a duration string such as "150ms", "2s" or "5m"; got the number 10 (write it with a unit: "10s")',
    'words.toml:7: pools.a.backends[0].weight: expected a number; got the string "2"',
  ])
  // Without [[listeners]], the bad backend URL and the unknown pool are reported in the same run.
  const all = problems(`[pools.a]
backends = ["ftp://x"]
[[routes]]
pool = "nope"
`)
  assert.equal(all.length, 3, all.join('\n'))
  assert.match(all[0] ?? '', /^words\.toml: listeners: is required: at least one \[\[listeners\]\] table/)
  assert.match(all[1] ?? '', /^words\.toml:2: pools\.a\.backends\[0\]: "ftp:\/\/x": backend URLs are/)
  assert.match(all[2] ?? '', /^words\.toml:4: routes\[0\]\.pool: .*names pool "nope", which is not defined/)
  // A schema problem and a semantic one in other tables: both.
  const mixed = problems(`[server]
workers = "many"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
[[routes]]
pool = "nope"
`)
  assert.equal(mixed.length, 2, mixed.join('\n'))
  assert.match(mixed.join('\n'), /server\.workers/)
  assert.match(mixed.join('\n'), /routes\[0\]\.pool/)
})
