// Helpers for the scaling tests: a whole edge in this process wired as cli/run.ts wires it (Control + LocalServing),
// tiny node backends as scripts (one request at a time, or all waiting on one shared lock), bounded load.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { Pool } from 'undici'
import { parseConfigText } from '../config/load.js'
import { Control } from '../cli/control.js'
import { LocalServing } from '../cli/run.js'
import { Edge } from '../proxy/edge.js'
import type { PoolScaleStatus } from '../cli/scaling.js'
import { tempDir } from './helpers.js'

export interface ScaleEdge {
  readonly control: Control
  readonly edge: Edge
  readonly url: string
  /** Every log line (JSON) the edge wrote. */
  readonly logs: string[]
  scaling (pool?: string): PoolScaleStatus
}

export async function startScaleEdge (t: TestContext, toml: string): Promise<ScaleEdge> {
  const config = parseConfigText(toml)
  const logs: string[] = []
  const log = pino({ level: 'debug' }, { write: (s: string) => { logs.push(s) } })
  const control = new Control(config, { log })
  const edge = new Edge(config, { log, onEvent: (type, message, fields) => { control.events.push(type, message, fields) } })
  await edge.start()
  await control.start(new LocalServing(edge))
  t.after(() => control.shutdown('test over', 0, 2000))
  const port = (edge.listeners()[0] as { port: number }).port
  return {
    control,
    edge,
    url: `http://127.0.0.1:${port}`,
    logs,
    scaling: (pool = 'app') => {
      const s = control.scale.status().find(p => p.pool === pool)
      if (s === undefined) throw new Error(`no scaler for ${pool}`)
      return s
    },
  }
}

export function head (): string {
  return `
[log]
access = "off"

[admin]
listen = "127.0.0.1:0"

[[listeners]]
name = "web"
listen = "127.0.0.1:0"

[[routes]]
pool = "app"
`
}

/**
 * Writes a backend script and returns the command that runs it. "serial": one request at a time, `ms` each (a
 * queue in the process). "proxyTo": each request waits for an answer from `lockUrl`, a server the test runs that
 * serves one request at a time for every backend (a shared bottleneck: more backends do not help).
 */
export async function backendScript (t: TestContext, kind: 'serial' | 'proxyTo', ms: number, lockUrl = ''): Promise<string> {
  const dir = await tempDir(t)
  const file = join(dir, `backend-${kind}.cjs`)
  const body = kind === 'serial'
    ? `let queue = Promise.resolve()
const work = (res) => { queue = queue.then(() => new Promise(r => setTimeout(() => { res.end('port ' + process.env.PORT + ' pid ' + process.pid); r() }, ${ms}))) }`
    : `const work = (res) => { http.get(${JSON.stringify(lockUrl)}, (up) => { up.resume(); up.on('end', () => res.end('port ' + process.env.PORT + ' pid ' + process.pid)) }).on('error', () => { res.statusCode = 502; res.end() }) }`
  await writeFile(file, `const http = require('node:http')
${body}
http.createServer((req, res) => {
  if (req.url === '/healthz') { res.end('ok'); return }
  req.resume()
  work(res)
}).listen(Number(process.env.PORT), '127.0.0.1', () => { console.log('listening on ' + process.env.PORT) })
process.on('SIGTERM', () => { console.log('SIGTERM'); process.exit(0) })
`)
  return `"${process.execPath}" "${file}"`
}

export interface Load {
  /** Responses by body prefix "port N". */
  readonly byPort: Map<string, number>
  readonly latencies: number[]
  errors: number
  stop (): Promise<void>
}

/** `concurrency` loops of GET / against the edge until stop() (bounded: at most `maxMs`). */
export function load (t: TestContext, url: string, concurrency: number, maxMs = 30_000): Load {
  const pool = new Pool(url, { connections: concurrency, pipelining: 1 })
  let stopped = false
  const deadline = Date.now() + maxMs
  const l: Load = {
    byPort: new Map(),
    latencies: [],
    errors: 0,
    stop: async () => {
      if (stopped) return
      stopped = true
      await Promise.all(loops)
      await pool.close()
    },
  }
  const loop = async (): Promise<void> => {
    while (!stopped && Date.now() < deadline) {
      const t0 = performance.now()
      try {
        const r = await pool.request({ path: '/', method: 'GET' })
        const text = await r.body.text()
        l.latencies.push(performance.now() - t0)
        if (r.statusCode !== 200) { l.errors++; continue }
        const port = /^port (\d+)/.exec(text)?.[1] ?? '?'
        l.byPort.set(port, (l.byPort.get(port) ?? 0) + 1)
      } catch {
        l.errors++
        await new Promise(resolve => setTimeout(resolve, 10))
      }
    }
  }
  const loops = Array.from({ length: concurrency }, () => loop())
  t.after(() => l.stop())
  return l
}

/** Polls `fn` every 50 ms until it returns true; fails after `ms`. */
export async function until (what: string, fn: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** The scale events (not holds) of a pool, as "kind from->to" strings: the timeline. */
export function timeline (s: PoolScaleStatus): string[] {
  const t0 = Date.parse(s.events[0]?.time ?? '0')
  return s.events.filter(e => e.kind !== 'scale.hold').map(e => `+${Date.parse(e.time) - t0}ms ${e.kind} ${e.from}->${e.to} (${e.observed}ms/${e.target}ms @${e.rps}rps)`)
}
