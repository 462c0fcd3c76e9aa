// The two edges the HTTP/1.1 differential fuzzer compares (test/h1-fuzz-lib.ts): CLI processes that differ only
// in `[server] http1_server`, each in front of its own recording backend, and the driver that sends one case to
// both at once. The edges run as processes so that one killed by an input is a finding (and is restarted), not the
// end of the fuzzer. A case is attributed by time: it is over when each edge closed its connection, or went quiet
// (no byte to the client or the backend for `quietMs`) and then closed after the client's FIN; then the backends
// must be quiet for `settleMs`.
import net, { type AddressInfo } from 'node:net'
import { readdirSync, readFileSync } from 'node:fs'
import type { TestContext } from 'node:test'
import { sleep, spawnCli, type CliEdge } from './helpers.js'
import { ENGINES, normalise, type Engine, type FuzzCase, type Received, type SideResult } from './h1-fuzz-lib.js'

type T = Pick<TestContext, 'after'>

// ---------------------------------------------------------------- the recording backend

const OK = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-rec: 1\r\n\r\n'

/**
 * A raw TCP backend that records every byte per request: request heads to the blank line, Content-Length or
 * chunked bodies (de-chunked), anything else as junk. Answers 200 "ok" to each request, and 101 to an upgrade
 * unless its target contains "noup" (then 200, and it goes on reading requests); every answer has `x-rec: 1`.
 */
export class Recorder {
  readonly received: Received[] = []
  /** performance.now() of the last byte read. */
  lastActivity = 0
  port = 0
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()

  private constructor () {
    this.#server = net.createServer(sock => { this.#serve(sock) })
  }

  static async start (t: T): Promise<Recorder> {
    const rec = new Recorder()
    await new Promise<void>(resolve => rec.#server.listen(0, '127.0.0.1', resolve))
    rec.port = (rec.#server.address() as AddressInfo).port
    t.after(() => rec.close())
    return rec
  }

  get url (): string { return `http://127.0.0.1:${this.port}` }

  close (): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    return new Promise(resolve => { this.#server.close(() => { resolve() }) })
  }

  #serve (sock: net.Socket): void {
    this.#sockets.add(sock)
    sock.on('close', () => { this.#sockets.delete(sock) })
    sock.on('error', () => { sock.destroy() })
    let buf: Buffer = Buffer.alloc(0)
    let state: 'head' | 'length' | 'size' | 'data' | 'crlf' | 'trailers' | 'tunnel' | 'junk' = 'head'
    let cur: Received | undefined
    let remaining = 0
    const finish = (): void => {
      const c = cur as Received
      c.complete = true
      sock.write(c.head.startsWith('HEAD ') ? OK : `${OK}ok`)
      state = 'head'
    }
    const toJunk = (): void => {
      cur = { head: '', body: [], complete: false, upgraded: false, tunnel: [], junk: true, at: performance.now() }
      this.received.push(cur)
      state = 'junk'
    }
    const pump = (): void => {
      for (;;) {
        if (state === 'head') {
          const end = buf.indexOf('\r\n\r\n')
          if (end === -1) { if (buf.length > 65536) toJunk(); else return; continue }
          const head = buf.subarray(0, end).toString('latin1')
          buf = buf.subarray(end + 4)
          cur = { head, body: [], complete: false, upgraded: false, tunnel: [], junk: false, at: performance.now() }
          this.received.push(cur)
          const h = headerMap(head)
          const target = head.slice(0, head.indexOf('\r\n')).split(' ')[1] ?? ''
          if (h.has('upgrade') && !target.includes('noup')) {
            cur.upgraded = true
            cur.complete = true
            sock.write(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${h.get('upgrade') ?? ''}\r\nx-rec: 1\r\n\r\n`)
            state = 'tunnel'
            continue
          }
          if ((h.get('transfer-encoding') ?? '').toLowerCase().includes('chunked')) state = 'size'
          else if (h.has('content-length') && Number(h.get('content-length')) > 0) { remaining = Number(h.get('content-length')); state = 'length' } else finish()
          continue
        }
        if (state === 'tunnel' || state === 'junk') {
          if (buf.length > 0) (state === 'tunnel' ? (cur as Received).tunnel : (cur as Received).body).push(buf)
          buf = Buffer.alloc(0)
          return
        }
        if (state === 'length' || state === 'data') {
          if (buf.length === 0) return
          const n = Math.min(remaining, buf.length)
          ;(cur as Received).body.push(buf.subarray(0, n))
          buf = buf.subarray(n)
          remaining -= n
          if (remaining === 0) { if (state === 'length') finish(); else state = 'crlf' }
          continue
        }
        if (state === 'crlf') {
          if (buf.length < 2) return
          buf = buf.subarray(2)
          state = 'size'
          continue
        }
        const nl = buf.indexOf('\r\n')
        if (nl === -1) return
        const line = buf.subarray(0, nl).toString('latin1')
        buf = buf.subarray(nl + 2)
        if (state === 'trailers') { if (line === '') finish(); continue }
        const size = parseInt(line.split(';')[0] ?? '', 16)
        if (!/^[0-9a-fA-F]+$/.test((line.split(';')[0] ?? '').trim()) || Number.isNaN(size)) { buf = Buffer.concat([Buffer.from(`${line}\r\n`, 'latin1'), buf]); toJunk(); continue }
        if (size === 0) state = 'trailers'
        else { remaining = size; state = 'data' }
      }
    }
    sock.on('data', (d: Buffer) => {
      this.lastActivity = performance.now()
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      pump()
    })
    sock.on('end', () => {
      this.lastActivity = performance.now()
      if (state === 'head' && buf.length > 0) { toJunk(); (cur as Received).body.push(buf) }
    })
  }
}

function headerMap (head: string): Map<string, string> {
  const m = new Map<string, string>()
  for (const line of head.split('\r\n').slice(1)) {
    const c = line.indexOf(':')
    if (c <= 0) continue
    const k = line.slice(0, c).trim().toLowerCase()
    if (!m.has(k)) m.set(k, line.slice(c + 1).trim())
  }
  return m
}

// ---------------------------------------------------------------- two edges, one case at a time

export interface RunTiming {
  /** How long an edge may stay silent before the case counts as answered (then the client sends its FIN). */
  readonly quietMs: number
  /** How long the backends must be quiet after the connections closed. */
  readonly settleMs: number
}

export const FAST: RunTiming = { quietMs: 30, settleMs: 15 }
export const SLOW: RunTiming = { quietMs: 250, settleMs: 100 }

const EDGE_CONFIG = (engine: Engine, backend: string): string => `
[server]
http1_server = "${engine}"
headers_timeout = "1s"
keepalive_timeout = "2s"
shutdown_timeout = "1s"
max_header_bytes = 8192
[[routes]]
name = "deny"
match.path_prefix = "/deny"
respond = { status = 403, body = "denied\\n" }
[[routes]]
name = "all"
pool = "p"
[pools.p]
backends = ["${backend}"]
`

const PING = 'GET /deny/ping HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n'

async function until (fn: () => boolean, maxMs: number): Promise<boolean> {
  const end = performance.now() + maxMs
  while (!fn()) {
    if (performance.now() > end) return false
    await sleep(2)
  }
  return true
}

interface Side {
  readonly engine: Engine
  readonly rec: Recorder
  cli: CliEdge
  restarts: number
}

/** Two CLI edges (http1_server "edge" and "node"), each with its own recording backend. */
export class Harness {
  readonly #t: T
  readonly #sides: Side[]

  private constructor (t: T, sides: Side[]) {
    this.#t = t
    this.#sides = sides
  }

  static async start (t: T): Promise<Harness> {
    // Cleanup in this order: the edges stop on SIGTERM (the supervisor takes its serving child down with it; a
    // SIGKILLed supervisor can leave the child holding our stderr pipe), then spawnCli's hooks, then the backends.
    const hooks: Array<() => unknown> = []
    const inner: T = { after: fn => { if (fn !== undefined) hooks.push(fn as () => unknown) } }
    const sides: Side[] = []
    t.after(async () => {
      await Promise.all(sides.map(s => stopCli(s.cli)))
      for (const fn of hooks.reverse()) await fn()
    })
    for (const engine of ENGINES) {
      const rec = await Recorder.start(inner)
      sides.push({ engine, rec, cli: await startCli(inner, engine, rec), restarts: 0 })
    }
    return new Harness(inner, sides)
  }

  /** Stops both edges (SIGTERM): the ms each took to exit, -1 for one that had to be killed after STOP_BOUND_MS. */
  async stop (): Promise<Record<Engine, number>> {
    const [edge, node] = await Promise.all(this.#sides.map(s => stopCli(s.cli)))
    return { edge: edge as number, node: node as number }
  }

  /** Restarts of each edge so far (one per crash). */
  restarts (): Record<Engine, number> {
    return { edge: this.#sides[0]?.restarts ?? 0, node: this.#sides[1]?.restarts ?? 0 }
  }

  /** Sends `c` to both edges at once and collects what each answered and forwarded. */
  async run (c: FuzzCase, timing: RunTiming = FAST): Promise<Record<Engine, SideResult>> {
    const [edge, node] = await Promise.all(this.#sides.map(s => this.#drive(s, c, timing)))
    return { edge: edge as SideResult, node: node as SideResult }
  }

  async #drive (side: Side, c: FuzzCase, timing: RunTiming): Promise<SideResult> {
    const rec = side.rec
    const from = rec.received.length
    const logFrom = side.cli.events.length
    const chunks: Buffer[] = []
    let last = performance.now()
    let lastData = 0
    let closed = false
    const sock = net.connect(side.cli.port, '127.0.0.1')
    sock.on('data', (d: Buffer) => { chunks.push(d); last = lastData = performance.now() })
    sock.on('error', () => {})
    sock.on('close', () => { closed = true })
    await new Promise<void>(resolve => { sock.once('connect', resolve); sock.once('close', () => { resolve() }) })
    let at = 0
    for (let i = 0; i <= c.cuts.length && !closed; i++) {
      const end = c.cuts[i] ?? c.bytes.length
      sock.write(c.bytes.subarray(at, end))
      at = end
      const d = c.delays[i]
      if (d !== undefined && i < c.cuts.length) { if (d === 0) await new Promise(setImmediate); else await sleep(d) }
    }
    last = Math.max(last, performance.now())
    await until(() => closed || performance.now() - Math.max(last, rec.lastActivity) >= timing.quietMs, 1500)
    const closedFirst = closed
    let keptAfterFin = false
    if (!closed) {
      sock.end()
      keptAfterFin = !await until(() => closed, 1000)
      sock.destroy()
    }
    await until(() => performance.now() - rec.lastActivity >= timing.settleMs, 1000)
    const text = Buffer.concat(chunks).toString('latin1')
    // Status lines anywhere: a HEAD answer's length says nothing about what follows, and no body here holds one.
    const answers = text.match(/HTTP\/1\.[01] \d{3}[^\r\n]*/g) ?? []
    const crashed = await this.#check(side, logFrom)
    return {
      engine: side.engine,
      answers,
      backendAnswers: text.split('\r\nx-rec: 1\r\n').length - 1,
      lastDataAt: lastData,
      forwarded: rec.received.slice(from).map(normalise),
      closedFirst,
      keptAfterFin,
      crashed: crashed.died,
      internal: crashed.internal,
    }
  }

  /**
   * Whether the edge survived the case: a serving process that died (its supervisor logs it and starts another),
   * an exception the edge caught and logged ("internal error", answered 500), or an edge that stopped answering
   * (killed and started again here).
   */
  async #check (side: Side, logFrom: number): Promise<{ died: string | undefined, internal: string | undefined }> {
    const cli = side.cli
    const logged = (): { died: string | undefined, internal: string | undefined } => {
      const ev = cli.events.slice(logFrom)
      const fatal = ev.find(e => e.level === 60)
      const death = ev.find(e => /serving process died/.test(String(e.msg)))
      const internal = ev.find(e => e.level === 50 && /internal error/.test(String(e.msg)))
      return {
        died: fatal !== undefined ? errorText(fatal) : death !== undefined ? `${String(death.msg)} (code ${String(death.code)}, signal ${String(death.signal)})` : undefined,
        internal: internal !== undefined ? errorText(internal) : undefined,
      }
    }
    const alive = (): boolean => cli.child.exitCode === null && cli.child.signalCode === null
    // A supervised edge is answering again within a second or so of a death; give it three.
    let ok = false
    for (const until = performance.now() + 3000; !ok && alive() && performance.now() < until;) {
      ok = await ping(cli.port)
      if (!ok) await sleep(100)
    }
    const found = logged()
    if (ok) return found
    const exited = !alive()
    if (!exited) await stopCli(cli)
    const words = `${exited ? `exited (${String(cli.child.exitCode ?? cli.child.signalCode)})` : 'stopped answering (stopped and started again)'}\n${found.died ?? lastWords(cli.stderr)}`
    side.restarts++
    side.cli = await startCli(this.#t, side.engine, side.rec)
    return { died: words, internal: found.internal }
  }
}

/** An error log event as text: its message and the stack pino logged. */
function errorText (e: Record<string, unknown>): string {
  const err = e.err as { stack?: string, message?: string } | undefined
  return `${String(e.msg)}\n${err?.stack ?? err?.message ?? ''}`
}

/** How long an edge may take to exit on SIGTERM: its shutdown_timeout (1 s) and 2 s to spare. */
export const STOP_BOUND_MS = 3000

/**
 * SIGTERM, and SIGKILL for the edge and its serving child if it has not exited within STOP_BOUND_MS (a child left
 * running would hold our stderr pipe, and the test file would never end). Resolves to the ms it took, or -1 when
 * it had to be killed.
 */
async function stopCli (cli: CliEdge): Promise<number> {
  if (cli.child.exitCode !== null || cli.child.signalCode !== null) return 0
  const start = performance.now()
  const pid = cli.child.pid
  const kids = pid === undefined ? [] : childrenOf(pid)
  cli.child.kill('SIGTERM')
  let forced = false
  const timer = setTimeout(() => {
    forced = true
    for (const k of [...kids, ...(pid === undefined ? [] : childrenOf(pid))]) { try { process.kill(k, 'SIGKILL') } catch { /* gone */ } }
    cli.child.kill('SIGKILL')
  }, STOP_BOUND_MS)
  await cli.exited
  clearTimeout(timer)
  return forced ? -1 : Math.round(performance.now() - start)
}

/** A process's children (Linux /proc; none elsewhere). */
function childrenOf (pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap(tid => readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)).filter(x => x !== '').map(Number)
  } catch {
    return []
  }
}

/** spawnCli, tried again when the free port it picked was taken before the edge bound it (other tests run too). */
async function startCli (t: T, engine: Engine, rec: Recorder): Promise<CliEdge> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnCli(t, EDGE_CONFIG(engine, rec.url))
    } catch (err) {
      if (attempt === 3 || !/EADDRINUSE/.test(String(err))) throw err
    }
  }
}

function ping (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const sock = net.connect(port, '127.0.0.1')
    let got = ''
    const timer = setTimeout(() => { sock.destroy(); resolve(false) }, 2000)
    sock.on('connect', () => { sock.write(PING) })
    sock.on('data', (d: Buffer) => { got += d.toString('latin1') })
    sock.on('error', () => {})
    sock.on('close', () => { clearTimeout(timer); resolve(got.startsWith('HTTP/1.1 403')) })
  })
}

/** The error and first frames of a dead process's stderr (its JSON log lines left out). */
function lastWords (stderr: string): string {
  const lines = stderr.split('\n').filter(l => l !== '' && !l.startsWith('{'))
  const i = lines.findIndex(l => /^\s*at /.test(l))
  const start = Math.max(0, (i === -1 ? lines.length : i) - 3)
  return lines.slice(start, start + 8).join('\n')
}
