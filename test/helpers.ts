// Shared test helpers: real backends on 127.0.0.1:0 (echoing, slow, hanging, dying, malformed), an in-process
// Edge started from TOML text, the real CLI as a child process, and small raw-socket / HTTP clients.
// Every helper takes the TestContext and registers its own cleanup with t.after().
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { createHash } from 'node:crypto'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import type { TestContext } from 'node:test'
import pino from 'pino'
import { parseConfigText } from '../config/load.js'
import { HttpListener } from '../proxy/listen/http-listener.js'
import { Edge } from '../proxy/edge.js'

type T = Pick<TestContext, 'after'>

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** Polls `fn` until it returns true; throws after `timeoutMs` naming what was awaited. */
export async function waitUntil (fn: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await fn()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}

const kSockets = Symbol('sockets')
type Tracked = net.Server & { [kSockets]?: Set<net.Socket> }

/** Remembers every socket of `server`, upgraded ones included (closeAllConnections does not see those). */
function track (server: net.Server): void {
  const set = new Set<net.Socket>()
  ;(server as Tracked)[kSockets] = set
  server.on('connection', (s: net.Socket) => {
    set.add(s)
    s.once('close', () => set.delete(s))
  })
}

function closeServer (server: net.Server | http.Server): Promise<void> {
  return new Promise(resolve => {
    server.close(() => { resolve() })
    if (server instanceof http.Server) server.closeAllConnections()
    for (const s of (server as Tracked)[kSockets] ?? []) s.destroy()
  })
}

function portOf (server: net.Server): number {
  return (server.address() as AddressInfo).port
}

// ---------------------------------------------------------------- backends

/** What a backend received, as it saw it. */
export interface Seen {
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly rawHeaders: readonly string[]
  bodyLength: number
  sha256: string
  /** The request or its response was cut before completing (client/proxy went away). */
  aborted: boolean
  complete: boolean
}

/** The JSON an echo backend answers with. */
export interface Echo {
  readonly backend: string
  readonly method: string
  readonly url: string
  readonly headers: IncomingHttpHeaders
  readonly bodyLength: number
  readonly sha256: string
}

export interface Backend {
  readonly name: string
  readonly url: string
  readonly port: number
  readonly server: http.Server
  readonly seen: Seen[]
  /** Requests currently open on this backend. */
  inflight: number
  /** Every answer waits this long (ms); tests may change it. */
  delayMs: number
  close (): Promise<void>
}

/**
 * An echo backend. Query parameters steer it (so one backend serves every test):
 *   delay=MS     answer after MS ms          hang=1       never answer
 *   die=1        send the head and part of the body, then destroy the socket (die=chunked: without a length)
 *   download=N   stream N bytes of `patternStream` (sha256 in the x-sha256 trailer is not needed: tests hash)
 *   status=N     answer with status N        timing=1     add "server-timing: app;dur=1.5, db;dur=0.3"
 *   sethdr=1     answer with hop-by-hop headers the proxy must drop
 */
export async function startBackend (t: T, name: string, opts: { delayMs?: number } = {}): Promise<Backend> {
  const seen: Seen[] = []
  const b: Backend = {
    name,
    url: '',
    port: 0,
    server: http.createServer((req, res) => { handleEcho(b, req, res) }),
    seen,
    inflight: 0,
    delayMs: opts.delayMs ?? 0,
    close: () => closeServer(b.server),
  }
  b.server.keepAliveTimeout = 60_000
  track(b.server)
  await new Promise<void>(resolve => b.server.listen(0, '127.0.0.1', resolve))
  const port = portOf(b.server)
  Object.assign(b, { port, url: `http://127.0.0.1:${port}` })
  t.after(() => b.close())
  return b
}

function handleEcho (b: Backend, req: IncomingMessage, res: ServerResponse): void {
  const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyLength: 0, sha256: '', aborted: false, complete: false }
  b.seen.push(s)
  b.inflight++
  let closed = false
  const done = (): void => { if (!closed) { closed = true; b.inflight-- } }
  res.on('close', () => {
    if (!res.writableFinished) s.aborted = true
    done()
  })
  const q = new URLSearchParams((req.url ?? '').split('?')[1] ?? '')
  const hash = createHash('sha256')
  req.on('data', (d: Buffer) => { s.bodyLength += d.length; hash.update(d) })
  req.on('error', () => { s.aborted = true })
  req.on('end', () => {
    s.sha256 = hash.digest('hex')
    s.complete = true
    if (q.has('hang')) return
    const answer = (): void => {
      if (res.destroyed) return
      const download = q.get('download')
      if (download !== null) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': download, 'x-backend': b.name })
        patternStream(Number(download)).pipe(res)
        return
      }
      if (q.has('die')) {
        // die=chunked: no Content-Length, so only a broken connection tells the client the body is cut.
        const h: Record<string, string> = { 'content-type': 'text/plain', 'x-backend': b.name }
        if (q.get('die') !== 'chunked') h['content-length'] = '100000'
        res.writeHead(200, h)
        res.write(Buffer.alloc(1000, 97))
        setTimeout(() => { res.socket?.destroy() }, 20)
        return
      }
      const echo: Echo = { backend: b.name, method: s.method, url: s.url, headers: s.headers, bodyLength: s.bodyLength, sha256: s.sha256 }
      const body = JSON.stringify(echo)
      const headers: Record<string, string> = { 'content-type': 'application/json', 'x-backend': b.name }
      if (q.has('timing')) headers['server-timing'] = 'app;dur=1.5, db;dur=0.3'
      if (q.has('sethdr')) {
        headers.connection = 'keep-alive, x-secret-hop'
        headers['x-secret-hop'] = 'drop me'
        headers['keep-alive'] = 'timeout=60'
        headers['proxy-authenticate'] = 'Basic'
        headers.trailer = 'x-never'
        headers['x-end-to-end'] = 'kept'
      }
      res.writeHead(Number(q.get('status') ?? 200), headers)
      res.end(body)
    }
    const delay = Number(q.get('delay') ?? b.delayMs)
    if (delay > 0) setTimeout(answer, delay)
    else answer()
  })
}

/** A deterministic stream of `total` bytes in 64 KiB chunks, never held in memory at once. */
export function patternStream (total: number): Readable {
  const block = Buffer.alloc(65536)
  for (let i = 0; i < block.length; i++) block[i] = (i * 31 + 7) & 0xff
  let sent = 0
  let n = 0
  return new Readable({
    highWaterMark: 65536,
    read () {
      if (sent >= total) { this.push(null); return }
      const size = Math.min(block.length, total - sent)
      const chunk = Buffer.from(block.subarray(0, size))
      chunk.writeUInt32BE(n++ >>> 0, 0) // vary the blocks so a dropped or repeated chunk changes the hash
      sent += size
      this.push(chunk)
    },
  })
}

/** The SHA-256 of patternStream(total), computed by streaming. */
export async function patternSha256 (total: number): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of patternStream(total)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/**
 * Where refused connections go: a loopback address that no test listens on. A port bound and released on
 * 127.0.0.1 is not enough: a server started later with port 0 may be given the same port, and the "dead"
 * backend answers (seen in CI). Every test server binds 127.0.0.1 (or ::1), never a wildcard address.
 */
export const REFUSING_HOST = '127.0.0.3'

/** A URL on which nothing listens: connections are refused. */
export async function refusedUrl (): Promise<string> {
  return `http://${REFUSING_HOST}:${await freePort(REFUSING_HOST)}`
}

/** A free port on `host`: bind :0, read the port, close. */
/** Ports this test process handed out already: the kernel may hand a released port out again at once. */
const handedOut = new Set<number>()

export async function freePort (host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const s = net.createServer()
    await new Promise<void>(resolve => s.listen(0, host, resolve))
    const port = portOf(s)
    await closeServer(s)
    if (handedOut.has(port)) continue
    handedOut.add(port)
    return port
  }
}

export interface RawBackend {
  readonly url: string
  readonly port: number
  /** How many request heads it received. */
  requests: number
}

/** A raw TCP "backend" that waits for a request head, writes `reply` as is, and closes. */
export async function startRawBackend (t: T, reply: string | Buffer): Promise<RawBackend> {
  const sockets = new Set<net.Socket>()
  const rb = { url: '', port: 0, requests: 0 }
  const server = net.createServer(sock => {
    sockets.add(sock)
    sock.on('close', () => sockets.delete(sock))
    sock.on('error', () => {})
    let buf = ''
    sock.on('data', d => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n\r\n')) {
        buf = ''
        rb.requests++
        sock.end(reply)
      }
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  rb.port = portOf(server)
  rb.url = `http://127.0.0.1:${rb.port}`
  t.after(async () => {
    for (const s of sockets) s.destroy()
    await closeServer(server)
  })
  return rb
}

// ---------------------------------------------------------------- the edge, in process

/** The config lines every in-process test edge shares: ephemeral admin and listener ports, quiet logs. */
export const BASE_TOML = `
[admin]
listen = "127.0.0.1:0"
[log]
access = "off"
level = "silent"
[[listeners]]
name = "web"
listen = "127.0.0.1:0"
`

export interface RunningEdge {
  readonly edge: Edge
  readonly port: number
  readonly origin: string
  /** Open client connections on the first listener. */
  connections (): Promise<number>
}

/** Starts an Edge from TOML text (prefix it with BASE_TOML or write a full config). */
export async function startEdge (t: T, toml: string): Promise<RunningEdge> {
  const config = parseConfigText(toml, 'test.toml')
  const edge = new Edge(config, { log: pino({ level: 'silent' }) })
  await edge.start()
  t.after(() => edge.close(0))
  const listener = edge.listeners()[0]
  if (listener === undefined) throw new Error('the edge has no listener')
  const port = listener.port
  return {
    edge,
    port,
    origin: `http://127.0.0.1:${port}`,
    connections: () => new Promise((resolve, reject) => {
      if (!(listener instanceof HttpListener)) { reject(new Error('not an HTTP listener')); return }
      listener.server.getConnections((err, n) => { if (err !== null) reject(err); else resolve(n) })
    }),
  }
}

// ---------------------------------------------------------------- clients

export interface Reply {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

export interface RequestOptions {
  readonly method?: string
  readonly path?: string
  readonly headers?: Record<string, string | string[]>
  readonly body?: string | Buffer
  readonly agent?: http.Agent | false
  readonly timeoutMs?: number
}

/** One HTTP request with node:http (a fresh connection unless an agent is given); the body as text. */
export function request (port: number, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      headers: opts.headers,
      agent: opts.agent ?? false,
    }, res => {
      const chunks: Buffer[] = []
      res.on('data', (d: Buffer) => chunks.push(d))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.setTimeout(opts.timeoutMs ?? 10_000, () => { req.destroy(new Error('client timeout')) })
    req.on('error', reject)
    req.end(opts.body)
  })
}

/** The echo JSON of a 200 reply (throws with the body otherwise, so failures explain themselves). */
export function echoOf (r: Reply): Echo {
  if (r.status !== 200) throw new Error(`expected 200, got ${r.status}: ${r.body}`)
  return JSON.parse(r.body) as Echo
}

/**
 * Writes raw bytes on a fresh TCP connection and collects everything until the server closes it or `waitMs`
 * passes. Returns the text received (latin1).
 */
export function rawExchange (port: number, bytes: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1')
    let out = ''
    const timer = setTimeout(() => { sock.destroy(); resolve(out) }, waitMs)
    sock.on('data', d => { out += d.toString('latin1') })
    sock.on('error', err => { if (out === '') { clearTimeout(timer); reject(err) } })
    sock.on('close', () => { clearTimeout(timer); resolve(out) })
    sock.on('connect', () => { sock.write(bytes) })
  })
}

// ---------------------------------------------------------------- the CLI, as a child process

export const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url))

/** A temp directory removed after the test. */
export async function tempDir (t: T): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'edge-proxy-test-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export interface CliResult { readonly code: number | null, readonly stdout: string, readonly stderr: string }

/** Runs the CLI to completion (for `check`), with a time limit. */
export function runCli (args: string[], timeoutMs = 10_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`CLI ${args.join(' ')} did not exit in ${timeoutMs} ms`)) }, timeoutMs)
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

export interface CliEdge {
  readonly child: ChildProcess
  readonly file: string
  readonly port: number
  readonly adminPort: number
  /** Every JSON line of the event log so far (stderr). */
  readonly events: Array<Record<string, unknown>>
  stderr: string
  readonly exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  waitForEvent (pred: (e: Record<string, unknown>) => boolean, timeoutMs?: number, what?: string): Promise<Record<string, unknown>>
  /** Rewrites the config file with the same listen / admin ports. */
  rewrite (body: string): Promise<void>
}

/**
 * Starts `node dist/cli/main.js --config FILE` with a temp config made of `body` plus free listener and admin
 * ports, and waits for its "listening" event (for workers > 1, `listeningCount` of them). Killed in t.after.
 * `admin` adds lines to the [admin] table (token, hosts).
 */
export async function spawnCli (t: T, body: string, opts: { listeningCount?: number, level?: string, admin?: string } = {}): Promise<CliEdge> {
  const dir = await tempDir(t)
  const file = join(dir, 'proxy.toml')
  const port = await freePort()
  const adminPort = await freePort()
  const render = (b: string): string => `
[admin]
listen = "127.0.0.1:${adminPort}"
${opts.admin ?? ''}
[log]
access = "off"
level = "${opts.level ?? 'info'}"
[[listeners]]
name = "web"
listen = "127.0.0.1:${port}"
${b}`
  await writeFile(file, render(body))
  const child = spawn(process.execPath, [CLI, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  const events: Array<Record<string, unknown>> = []
  const cli: CliEdge = {
    child,
    file,
    port,
    adminPort,
    events,
    stderr: '',
    exited: new Promise(resolve => { child.on('exit', (code, signal) => { resolve({ code, signal }) }) }),
    async waitForEvent (pred, timeoutMs = 10_000, what = 'log event') {
      let found: Record<string, unknown> | undefined
      await waitUntil(() => {
        found = events.find(pred)
        return found !== undefined || child.exitCode !== null || child.signalCode !== null
      }, timeoutMs, what)
      if (found === undefined) throw new Error(`CLI exited while waiting for ${what}; stderr:\n${cli.stderr}`)
      return found
    },
    rewrite: (b: string) => writeFile(file, render(b)),
  }
  let partial = ''
  child.stderr?.on('data', (d: Buffer) => {
    const text = d.toString()
    cli.stderr += text
    partial += text
    let nl: number
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = partial.slice(0, nl)
      partial = partial.slice(nl + 1)
      try { events.push(JSON.parse(line) as Record<string, unknown>) } catch { /* not JSON: kept in stderr */ }
    }
  })
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await cli.exited
    }
  })
  const want = opts.listeningCount ?? 1
  await waitUntil(() => events.filter(e => e.msg === 'listening').length >= want || child.exitCode !== null, 15_000, '"listening"')
  if (child.exitCode !== null) throw new Error(`CLI exited with ${child.exitCode}; stderr:\n${cli.stderr}`)
  await cli.waitForEvent(e => e.msg === 'admin listening', 10_000, '"admin listening"')
  return cli
}

export interface RawReply { readonly status: number, readonly headers: Record<string, string>, readonly body: string }

/** Parses the first HTTP/1.1 response in `text` (Content-Length, chunked or read-to-close bodies). */
export function parseRawResponse (text: string): RawReply {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`)
  const lines = text.slice(0, end).split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
  const headers: Record<string, string> = {}
  for (const l of lines.slice(1)) {
    const c = l.indexOf(':')
    const name = l.slice(0, c).trim().toLowerCase()
    const value = l.slice(c + 1).trim()
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
  }
  let rest = text.slice(end + 4)
  let body = rest
  if (headers['content-length'] !== undefined) {
    body = rest.slice(0, Number(headers['content-length']))
  } else if (headers['transfer-encoding'] === 'chunked') {
    body = ''
    for (;;) {
      const nl = rest.indexOf('\r\n')
      const size = parseInt(rest.slice(0, nl), 16)
      if (nl === -1 || Number.isNaN(size) || size === 0) break
      body += rest.slice(nl + 2, nl + 2 + size)
      rest = rest.slice(nl + 2 + size + 2)
    }
  }
  return { status, headers, body }
}
