// Helpers for the scaling tests: a whole edge in this process wired as cli/run.ts wires it (Control + LocalServing),
// tiny node backends as scripts (one request at a time, or all waiting on one shared lock), bounded load.
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { Pool } from 'undici'
import { loadConfigFile } from '../config/load.js'
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
  /** Rewrites the config file and reloads it through the Control. */
  reload (toml: string): Promise<string>
}

export async function startScaleEdge (t: TestContext, toml: string): Promise<ScaleEdge> {
  const file = join(await tempDir(t), 'proxy.toml')
  await writeFile(file, toml)
  const config = await loadConfigFile(file)
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
    reload: async (text: string) => { await writeFile(file, text); return await control.reload() },
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

/** `concurrency` loops of GET / against the edge until stop() (bounded: at most `maxMs`), `pauseMs` between requests. */
export function load (t: TestContext, url: string, concurrency: number, maxMs = 30_000, pauseMs = 0): Load {
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
        if (pauseMs > 0) await new Promise(resolve => setTimeout(resolve, pauseMs))
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

export interface SmtpSink {
  readonly port: number
  /** Each message's DATA (headers and body). */
  readonly mails: { from: string, to: string[], data: string }[]
  close (): Promise<void>
}

/** A minimal SMTP server on loopback (no TLS, no auth): enough for nodemailer to hand over a message. */
export async function smtpSink (t: TestContext): Promise<SmtpSink> {
  const { createServer } = await import('node:net')
  const mails: SmtpSink['mails'] = []
  const sockets = new Set<import('node:net').Socket>()
  const server = createServer(sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.setEncoding('utf8')
    let buf = ''
    let inData = false
    let cur = { from: '', to: [] as string[], data: '' }
    sock.write('220 sink ESMTP\r\n')
    sock.on('data', (chunk: string) => {
      buf += chunk
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n')
          if (end === -1) return
          cur.data = buf.slice(0, end)
          buf = buf.slice(end + 5)
          inData = false
          mails.push(cur)
          cur = { from: '', to: [], data: '' }
          sock.write('250 queued\r\n')
          continue
        }
        const nl = buf.indexOf('\r\n')
        if (nl === -1) return
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        const verb = line.slice(0, 4).toUpperCase()
        if (verb === 'EHLO' || verb === 'HELO') sock.write('250 sink\r\n')
        else if (verb === 'MAIL') { cur.from = line.slice(10); sock.write('250 ok\r\n') }
        else if (verb === 'RCPT') { cur.to.push(line.slice(8)); sock.write('250 ok\r\n') }
        else if (verb === 'DATA') { inData = true; sock.write('354 go on\r\n') }
        else if (verb === 'QUIT') { sock.end('221 bye\r\n') }
        else sock.write('250 ok\r\n')
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const close = (): Promise<void> => new Promise(resolve => { for (const s of sockets) s.destroy(); server.close(() => { resolve() }) })
  t.after(close)
  return { port, mails, close }
}

export interface Receiver {
  readonly url: string
  readonly bodies: unknown[]
  /** Answer 500 to the first `n` requests (retries). */
  failFirst: number
  attempts: number
}

/** An HTTP server on loopback that records JSON POST bodies. */
export async function receiver (t: TestContext): Promise<Receiver> {
  const http = await import('node:http')
  const r: Receiver = { url: '', bodies: [], failFirst: 0, attempts: 0 }
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      r.attempts++
      if (r.failFirst > 0) { r.failFirst--; res.statusCode = 500; res.end(); return }
      try { r.bodies.push(JSON.parse(body)) } catch { r.bodies.push(body) }
      res.end('ok')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  ;(r as { url: string }).url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`
  t.after(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => { resolve() }) }))
  return r
}
