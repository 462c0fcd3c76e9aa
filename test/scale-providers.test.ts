// Every scale provider (process, command, webhook) through one conformance suite: close() is safe before start and
// twice, apply() returns at once and acts in the background, nothing happens after close. Then what each one
// delivers: the command's environment, the webhook's JSON with retries, and notify (HTTP POST and mail).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import pino from 'pino'
import type { ScaleProviderConfig } from '../config/scale.js'
import { createScaleProvider, type ScaleProviderDeps } from '../health/scale-providers/index.js'
import type { ScaleEvent } from '../health/scaler.js'
import { ScaleNotifier } from '../health/scale-notify.js'
import { freePort, tempDir } from './helpers.js'
import { backendScript, receiver, smtpSink, until } from './scale-util.js'

const log = pino({ level: 'silent' })

function event (kind: ScaleEvent['kind'], from: number, to: number, extra: Partial<ScaleEvent> = {}): ScaleEvent {
  return { time: new Date().toISOString(), pool: 'app', kind, from, to, reason: 'p95 120ms is 2x the target 60ms', observed: 120, target: 60, rps: 40, ...extra }
}

function deps (): ScaleProviderDeps & { added: string[], removed: string[] } {
  const added: string[] = []
  const removed: string[] = []
  return {
    pool: 'app',
    log,
    drainMs: 100,
    added,
    removed,
    addMember: url => { added.push(url) },
    removeMember: async url => { removed.push(url) },
    onEvent: () => {},
  }
}

interface Member {
  readonly name: string
  /** The provider's config and a check that `scale.up 1 -> 2` had its effect. */
  setup (t: import('node:test').TestContext): Promise<{ config: ScaleProviderConfig, effect: (d: ReturnType<typeof deps>) => Promise<boolean> }>
}

const members: Member[] = [
  {
    name: 'process',
    async setup (t) {
      const lo = await freePort()
      return {
        config: { kind: 'process', command: await backendScript(t, 'serial', 1), ports: [lo, lo + 10] },
        effect: async d => d.added.length === 2 && (await Promise.all(d.added.map(u => fetch(u).then(r => r.ok, () => false)))).every(Boolean),
      }
    },
  },
  {
    name: 'command',
    async setup (t) {
      const dir = await tempDir(t)
      const out = join(dir, 'out.txt')
      return {
        config: { kind: 'command', run: `echo "$POOL $CURRENT $DESIRED" > ${JSON.stringify(out)}` },
        effect: async () => (await readFile(out, 'utf8').catch(() => '')).trim() === 'app 1 2',
      }
    },
  },
  {
    name: 'webhook',
    async setup (t) {
      const r = await receiver(t)
      return {
        config: { kind: 'webhook', url: r.url },
        effect: async () => r.bodies.some(b => (b as ScaleEvent).to === 2),
      }
    },
  },
]

for (const m of members) {
  test(`conformance (${m.name}): close before start and twice is safe`, async (t) => {
    const { config } = await m.setup(t)
    const p = createScaleProvider(config, deps())
    await p.close()
    await p.close()
    assert.equal(p.kind, m.name)
  })

  test(`conformance (${m.name}): apply returns at once and acts in the background; nothing after close`, async (t) => {
    const { config, effect } = await m.setup(t)
    const d = deps()
    const p = createScaleProvider(config, d)
    t.after(() => p.close())
    await p.start()
    const t0 = performance.now()
    p.apply(event('scale.up', 1, 2), 2)
    assert.ok(performance.now() - t0 < 50, 'apply blocked')
    const deadline = Date.now() + 10_000
    while (!(await effect(d))) {
      assert.ok(Date.now() < deadline, 'no effect within 10 s')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    assert.equal(p.starting(), 0)
    await p.close()
    const n = d.added.length
    p.apply(event('scale.up', 2, 3), 3)
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.equal(d.added.length, n)
    if (m.name === 'process') {
      // close() stopped what it started.
      for (const u of d.added) assert.equal(await fetch(u).then(() => true, () => false), false, `${u} still answers`)
    }
  })
}

test('command: POOL, CURRENT, DESIRED, REASON and EVENT_JSON', async (t) => {
  const dir = await tempDir(t)
  const out = join(dir, 'env.json')
  const p = createScaleProvider({ kind: 'command', run: `node -e 'const e=process.env; require("fs").writeFileSync(${JSON.stringify(out)}, JSON.stringify({p:e.POOL,c:e.CURRENT,d:e.DESIRED,r:e.REASON,j:JSON.parse(e.EVENT_JSON)}))'` }, deps())
  t.after(() => p.close())
  const e = event('scale.down', 3, 2)
  p.apply(e, 2)
  await until('the command ran', () => existsSync(out))
  const got = JSON.parse(await readFile(out, 'utf8')) as { p: string, c: string, d: string, r: string, j: ScaleEvent }
  assert.deepEqual([got.p, got.c, got.d, got.r], ['app', '3', '2', e.reason])
  assert.deepEqual(got.j, e)
})

test('webhook: retries with backoff until the receiver takes the event', async (t) => {
  const r = await receiver(t)
  r.failFirst = 2
  const p = createScaleProvider({ kind: 'webhook', url: r.url }, deps())
  t.after(() => p.close())
  p.apply(event('scale.up', 1, 3), 3)
  await until('delivered', () => r.bodies.length === 1, 10_000)
  assert.equal(r.attempts, 3)
  assert.equal((r.bodies[0] as ScaleEvent).kind, 'scale.up')
})

test('notify: scale.capped is POSTed to each URL and mailed with pool, spend and cap; holds are not', async (t) => {
  const smtp = await smtpSink(t)
  const r = await receiver(t)
  const n = new ScaleNotifier({ smtp: `smtp://127.0.0.1:${smtp.port}`, from: undefined }, log)
  t.after(() => n.close())
  const targets = [{ kind: 'http' as const, url: r.url }, { kind: 'mail' as const, to: 'ops@example.com' }]
  n.notify(event('scale.hold', 2, 2), targets)
  n.notify(event('scale.capped', 1, 2, { costPerHour: 0.1, maxCostPerHour: 0.1, reason: 'the cost cap allows 2 backends' }), targets)
  await until('the POST and the mail', () => r.bodies.length === 1 && smtp.mails.length === 1, 10_000)
  assert.equal((r.bodies[0] as ScaleEvent).kind, 'scale.capped')
  const mail = smtp.mails[0]!
  assert.match(mail.to.join(), /ops@example\.com/)
  assert.match(mail.from, /edge-proxy@/)
  assert.match(mail.data, /Subject: edge-proxy: scale\.capped in pool app/)
  assert.match(mail.data, /pool: app/)
  assert.match(mail.data, /spend: 0\.1 per hour at 2 backends/)
  assert.match(mail.data, /cap: 0\.1 per hour/)
})
