// [pools.NAME.scale] and [alerts]: the keys as issue 15 spells them resolve to typed values, and every mistake is
// refused with its key path: a target above target_ceiling (unless override), min > max, a bad port range,
// a provider's required keys, another provider's keys, notify entries, mail without [alerts] smtp.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfigText } from '../config/load.js'
import { runCli, tempDir } from './helpers.js'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const HEAD = `[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
pool = "app"
`

function pool (scale: string, extra = ''): string {
  return `${HEAD}${extra}\n[pools.app]\nbackends = []\n\n[pools.app.scale]\n${scale}\n`
}

function problems (text: string): { path: string, message: string }[] {
  try {
    parseConfigText(text, 'case.toml')
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems.map(p => ({ path: p.path, message: p.message }))
  }
  assert.fail('the config was accepted')
}

test('the issue\'s example resolves to typed, frozen values', () => {
  const c = parseConfigText(pool(`
metric = "p95"
target = "200ms"
target_ceiling = "2s"
override = false
interval = "60s"
window = "60s"
tolerance = 0.1
min = 1
max = 10
scale_down_stabilization = "5m"
cost_per_backend_hour = 0.05
max_cost_per_hour = 0.40
provider = "process"
command = "node app.js"
ports = "9100-9199"
notify = ["http://127.0.0.1:7001/alerts", "mailto:ops@example.com"]
`, '[alerts]\nsmtp = "smtp://127.0.0.1:2525"\n'))
  const s = c.pools.get('app')?.scale
  assert.ok(s !== undefined)
  assert.deepEqual(s.target, { kind: 'fixed', ms: 200 })
  assert.equal(s.targetCeiling, 2000)
  assert.equal(s.interval, 60_000)
  assert.equal(s.scaleDownStabilization, 300_000)
  assert.equal(s.maxCostPerHour, 0.4)
  assert.deepEqual(s.provider, { kind: 'process', command: 'node app.js', ports: [9100, 9199] })
  assert.deepEqual(s.notify, [{ kind: 'http', url: 'http://127.0.0.1:7001/alerts' }, { kind: 'mail', to: 'ops@example.com' }])
  assert.equal(c.alerts.smtp, 'smtp://127.0.0.1:2525')
  assert.ok(Object.isFrozen(s.provider))
})

test('defaults: target auto, p95, a single notify string, command and webhook providers', () => {
  const a = parseConfigText(pool('provider = "command"\nrun = "./scale.sh"\nnotify = "http://127.0.0.1:7001/a"')).pools.get('app')?.scale
  assert.deepEqual(a?.target, { kind: 'auto' })
  assert.equal(a?.metric, 'p95')
  assert.deepEqual(a?.provider, { kind: 'command', run: './scale.sh' })
  assert.deepEqual(a?.notify, [{ kind: 'http', url: 'http://127.0.0.1:7001/a' }])
  const w = parseConfigText(pool('provider = "webhook"\nurl = "http://127.0.0.1:7000/scale"')).pools.get('app')?.scale
  assert.deepEqual(w?.provider, { kind: 'webhook', url: 'http://127.0.0.1:7000/scale' })
})

test('a target above target_ceiling is refused unless override = true', () => {
  const base = 'provider = "webhook"\nurl = "http://127.0.0.1:7000/x"\ntarget = "3s"\ntarget_ceiling = "2s"\n'
  const p = problems(pool(base))
  assert.equal(p.length, 1)
  assert.equal(p[0]?.path, 'pools.app.scale.target')
  assert.match(p[0]?.message ?? '', /above target_ceiling.*override = true/)
  const ok = parseConfigText(pool(`${base}override = true`)).pools.get('app')?.scale
  assert.equal(ok?.override, true)
  assert.deepEqual(ok?.target, { kind: 'fixed', ms: 3000 })
})

const refused: { name: string, scale: string, path: string, reason: RegExp, extra?: string }[] = [
  { name: 'min above max', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nmin = 5\nmax = 2', path: 'pools.app.scale.min', reason: /min \(5\) is above max \(2\)/ },
  { name: 'process without command', scale: 'provider = "process"\nports = "9100-9199"', path: 'pools.app.scale.command', reason: /required for provider = "process"/ },
  { name: 'process without ports', scale: 'provider = "process"\ncommand = "node a.js"', path: 'pools.app.scale.ports', reason: /required/ },
  { name: 'ports out of range', scale: 'provider = "process"\ncommand = "node a.js"\nports = "9100-70000"', path: 'pools.app.scale.ports', reason: /not a port range/ },
  { name: 'ports reversed', scale: 'provider = "process"\ncommand = "node a.js"\nports = "9199-9100"', path: 'pools.app.scale.ports', reason: /not a port range/ },
  { name: 'fewer ports than max', scale: 'provider = "process"\ncommand = "node a.js"\nports = "9100-9102"\nmax = 5', path: 'pools.app.scale.ports', reason: /3 ports, fewer than max = 5/ },
  { name: 'command without run', scale: 'provider = "command"', path: 'pools.app.scale.run', reason: /required for provider = "command"/ },
  { name: 'webhook without url', scale: 'provider = "webhook"', path: 'pools.app.scale.url', reason: /required for provider = "webhook"/ },
  { name: 'webhook url not http', scale: 'provider = "webhook"\nurl = "ftp://x/y"', path: 'pools.app.scale.url', reason: /not an http/ },
  { name: 'another provider\'s key', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nrun = "./x.sh"', path: 'pools.app.scale.run', reason: /belongs to provider = "command"/ },
  { name: 'unknown provider', scale: 'provider = "k8s"', path: 'pools.app.scale.provider', reason: /process.*command.*webhook/ },
  { name: 'mailto without smtp', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nnotify = ["mailto:ops@example.com"]', path: 'pools.app.scale.notify[0]', reason: /\[alerts\] smtp/ },
  { name: 'notify neither url nor mail', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nnotify = "ops"', path: 'pools.app.scale.notify', reason: /neither/ },
  { name: 'cost cap below min spend', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nmin = 3\ncost_per_backend_hour = 0.5\nmax_cost_per_hour = 1', path: 'pools.app.scale.max_cost_per_hour', reason: /min = 3 backends already cost 1.5/ },
  { name: 'window beyond the stats', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\nwindow = "10m"', path: 'pools.app.scale.window', reason: /1s to 290s/ },
  { name: 'bad smtp url', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"', extra: '[alerts]\nsmtp = "http://x"\n', path: 'alerts.smtp', reason: /smtp:\/\// },
  { name: 'misspelt key', scale: 'provider = "webhook"\nurl = "http://127.0.0.1:1/x"\ntolerence = 0.2', path: 'pools.app.scale.tolerence', reason: /did you mean "tolerance"/ },
]

for (const c of refused) {
  test(`refused: ${c.name}`, () => {
    const p = problems(pool(c.scale, c.extra))
    const hit = p.find(x => x.path === c.path)
    assert.ok(hit !== undefined, `no problem at ${c.path}: ${JSON.stringify(p)}`)
    assert.match(hit.message, c.reason)
  })
}

test('edge-proxy check refuses a target above the ceiling and names the key (exit 2)', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'proxy.toml')
  await writeFile(file, pool('provider = "webhook"\nurl = "http://127.0.0.1:1/x"\ntarget = "5s"'))
  const r = await runCli(['check', '--config', file])
  assert.equal(r.code, 2, r.stderr + r.stdout)
  assert.match(r.stderr + r.stdout, /pools\.app\.scale\.target.*target_ceiling/)
  await writeFile(file, pool('provider = "webhook"\nurl = "http://127.0.0.1:1/x"\ntarget = "5s"\noverride = true'))
  const ok = await runCli(['check', '--config', file])
  assert.equal(ok.code, 0, ok.stderr + ok.stdout)
  assert.match(ok.stdout, /scale: p95 target 5000ms \(override: above target_ceiling 2000ms\)/)
})
