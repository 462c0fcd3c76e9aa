// The admin listener: status page, /healthz, /api/status, /api/shadow, /api/events (SSE), /metrics, drain, reload and upgrade. Loopback by
// default; off loopback a token (Bearer, or a session cookie the status page gets from /?token=) guards every
// endpoint. Before the token, it refuses a Host that is not its own and state-changing calls from other origins
// (proxy/ops/admin-guard.ts).
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import type net from 'node:net'
import { timingSafeEqual } from 'node:crypto'
import type { Logger } from 'pino'
import { formatAddress, isLoopbackIp, type Address } from '../../config/address.js'
import type { EventLog } from './events.js'
import { STATUS_PAGE } from './status-page.js'
import { EdgeError, listenError } from '../../config/errors.js'
import { HostPolicy, Sessions, crossOriginReason } from './admin-guard.js'

export interface AdminDeps {
  readonly log: Logger
  /** Loads and applies the config file again; resolves with a summary or rejects with the reason. */
  reload (): Promise<string>
  /** Extra JSON for /healthz (role, generation, workers). */
  health (): Record<string, unknown>
  /** Prometheus text covering every worker. */
  metrics (): Promise<string>
  /** The edge's status, merged over every worker. */
  status (): Promise<unknown>
  /** Sets or clears draining on a pool's backend in every worker; rejects with a reason. */
  drain (pool: string, backend: string, draining: boolean): Promise<string>
  /** The last 15 minutes per pool and member (GET /api/history; /api/status carries it too); absent: 404. */
  history? (): unknown
  /** GET /api/ha: this node's HA role, peers and transitions; absent (standalone): 404. */
  readonly ha?: () => unknown
  /**
   * Replaces the serving processes with new ones from the code on disk (POST /api/upgrade); resolves when done,
   * with `ok` and the steps. Absent: the endpoint answers 404.
   */
  readonly upgrade?: (workersOnly: boolean) => Promise<{ readonly ok: boolean, readonly error?: string, readonly steps: readonly string[] }>
  /** Runtime registration (/api/pools/NAME/backends); absent: those endpoints answer 404. */
  readonly members?: MemberOps
  readonly events: EventLog
}

/** A pool member as the registration API shows it. */
export interface MemberJson {
  readonly url: string
  readonly weight: number
  readonly source: string
  readonly state: string
}

/** The registration API's operations; each rejects with an AdminRefusal (400, 404, 409) when it changes nothing. */
export interface MemberOps {
  /** Registers a member (body: {url, weight}) in every worker. */
  add (pool: string, body: unknown): Promise<MemberJson>
  /** Drains then removes an API member in every worker; `drain` is the ?drain= text (default 30s). */
  remove (pool: string, url: string, drain: string | null): Promise<string>
  /** Every member of a pool with its source and state. */
  list (pool: string): Promise<MemberJson[]>
}

/** A refused admin call: the HTTP status to answer (400 bad input, 404 unknown, 409 conflict) and why. */
export class AdminRefusal extends Error {
  constructor (readonly status: 400 | 404 | 409, message: string) {
    super(message)
  }
}

/** Registration bodies are small; anything larger is refused before it is parsed. */
const MAX_BODY = 64 * 1024

export interface AdminOptions {
  readonly address: Address
  readonly token: string | undefined
  /** Names a request's Host may carry besides the listen host and the loopback names (`[admin] hosts`). */
  readonly hosts: readonly string[]
}

function json (res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' })
  res.end(text)
}

/** The request body as text, or undefined when it is over `max` bytes. */
function readBody (req: IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size <= max) chunks.push(c)
    })
    req.on('end', () => { resolve(size > max ? undefined : Buffer.concat(chunks).toString('utf8')) })
    req.on('error', reject)
  })
}

function same (given: string, token: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(token)
  return a.length === b.length && timingSafeEqual(a, b)
}

function text (res: ServerResponse, status: number, body: string, headers: http.OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers })
  res.end(body)
}

/** Methods that change nothing; every other one (POST /api/reload, drain, any later POST or DELETE) is checked. */
function safeMethod (method: string | undefined): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS'
}

export class AdminServer {
  readonly server: http.Server
  private readonly hosts: HostPolicy
  private readonly sessions = new Sessions()
  constructor (readonly opts: AdminOptions, readonly deps: AdminDeps) {
    this.hosts = new HostPolicy(opts.address.host, opts.hosts)
    this.server = http.createServer((req, res) => {
      // A bug in one admin call answers 500; it must not end the process that owns the admin.
      try {
        this.handle(req, res)
      } catch (err) {
        this.deps.log.error({ err, path: req.url }, 'internal error in the admin API')
        if (!res.headersSent) json(res, 500, { error: 'internal error' })
        else res.destroy()
      }
    })
    this.server.on('clientError', (_err, socket) => { socket.destroy() })
  }

  /** Binds the admin address, or takes over `handle` (the admin socket an older edge process handed over). */
  async listen (handle?: net.Server): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (err) => { reject(listenError('the admin listener ([admin] listen)', formatAddress(this.opts.address), err)) })
      const done = (): void => {
        this.server.off('error', reject)
        resolve()
      }
      if (handle !== undefined) this.server.listen(handle, done)
      else this.server.listen(this.opts.address.port, this.opts.address.host, done)
    })
    // Without a token only loopback may reach it. The config load judged the listen name by what it resolved to;
    // judge the address actually bound too, in case the name's answer changed since.
    const bound = this.server.address()
    const ip = bound !== null && typeof bound === 'object' ? bound.address : ''
    if (this.opts.token === undefined && !isLoopbackIp(ip)) {
      await new Promise<void>(resolve => { this.server.close(() => { resolve() }) })
      throw new EdgeError('EP_ERR_CONFIG', `the admin listener bound ${ip} for "${this.opts.address.host}", which is not loopback: set [admin] token`)
    }
  }

  get port (): number {
    const a = this.server.address()
    return a !== null && typeof a === 'object' ? a.port : 0
  }

  /** The Bearer header, or (for the status page, whose fetch and EventSource cannot set headers) a session cookie. */
  private authorized (req: IncomingMessage): boolean {
    const token = this.opts.token
    if (token === undefined) return true
    const auth = req.headers.authorization ?? ''
    if (auth.startsWith('Bearer ')) return same(auth.slice(7), token)
    return this.sessions.valid(req.headers.cookie)
  }

  /**
   * A browser opens the page once as /?token=T: a right token starts a session whose random value becomes a
   * SameSite=Strict, HttpOnly cookie (the token itself leaves the address bar and is never stored in the
   * browser), and the browser is sent back to /.
   */
  private pageLogin (req: IncomingMessage, res: ServerResponse): boolean {
    const token = this.opts.token
    if (token === undefined || req.method !== 'GET') return false
    const q = (req.url ?? '').indexOf('?')
    const given = q === -1 ? null : new URLSearchParams((req.url ?? '').slice(q + 1)).get('token')
    if (given === null || !same(given, token)) return false
    res.writeHead(303, { location: './', 'set-cookie': this.sessions.cookie(this.sessions.create()), 'cache-control': 'no-store' })
    res.end()
    return true
  }

  private handle (req: IncomingMessage, res: ServerResponse): void {
    const wrongHost = this.hosts.refuse(req.headers.host)
    if (wrongHost !== undefined) {
      // 421 Misdirected Request: this server does not answer for that name (RFC 9110 15.5.20).
      text(res, 421, `421 misdirected request: ${wrongHost}\n`)
      return
    }
    if (!safeMethod(req.method)) {
      const foreign = crossOriginReason(req)
      if (foreign !== undefined) {
        text(res, 403, `403 forbidden: ${foreign}; the admin API takes ${req.method ?? ''} only from itself or from clients that send no Origin (curl, scripts)\n`)
        return
      }
    }
    const path = (req.url ?? '/').split('?')[0]
    if (path === '/' && this.pageLogin(req, res)) return
    if (!this.authorized(req)) {
      text(res, 401, '401 unauthorized: send Authorization: Bearer <admin token> (in a browser, open /?token=<admin token> once)\n', { 'www-authenticate': 'Bearer' })
      return
    }
    if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(STATUS_PAGE), 'cache-control': 'no-store' })
      res.end(req.method === 'HEAD' ? undefined : STATUS_PAGE)
      return
    }
    if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      json(res, 200, { status: 'ok', pid: process.pid, ...this.deps.health() })
      return
    }
    if (path === '/metrics' && req.method === 'GET') {
      this.deps.metrics().then(
        text => {
          res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'cache-control': 'no-store' })
          res.end(text)
        },
        (err: Error) => { json(res, 500, { error: `metrics unavailable: ${err.message}` }) },
      )
      return
    }
    if (path === '/api/status' && req.method === 'GET') {
      this.deps.status().then(
        st => { json(res, 200, { ...(st as object), events: this.deps.events.recent(50) }) },
        (err: Error) => { json(res, 500, { error: `status unavailable: ${err.message}` }) },
      )
      return
    }
    if (path === '/api/shadow' && req.method === 'GET') {
      // Shadow traffic per pool and endpoint, over every worker (the status's shadow part).
      this.deps.status().then(
        st => { json(res, 200, (st as { shadow?: unknown }).shadow ?? { pools: [] }) },
        (err: Error) => { json(res, 500, { error: `status unavailable: ${err.message}` }) },
      )
      return
    }
    if (path === '/api/history' && req.method === 'GET' && this.deps.history !== undefined) {
      json(res, 200, this.deps.history())
      return
    }
    if (path === '/api/ha' && req.method === 'GET') {
      if (this.deps.ha === undefined) json(res, 404, { error: 'standalone: no [ha] in the config' })
      else json(res, 200, this.deps.ha())
      return
    }
    if (path === '/api/events' && req.method === 'GET') {
      this.streamEvents(req, res)
      return
    }
    const members = path === undefined ? null : /^\/api\/pools\/([^/]+)\/backends(?:\/([^/]+))?$/.exec(path)
    if (members !== null && this.deps.members !== undefined) {
      this.members(this.deps.members, req, res, members[1] as string, members[2])
      return
    }
    const drain = path === undefined ? null : /^\/api\/pools\/([^/]+)\/backends\/([^/]+)\/(drain|undrain)$/.exec(path)
    if (drain !== null) {
      if (req.method !== 'POST') { res.writeHead(405, { allow: 'POST' }); res.end(); return }
      let pool: string
      let backend: string
      try {
        pool = decodeURIComponent(drain[1] as string)
        backend = decodeURIComponent(drain[2] as string)
      } catch {
        json(res, 400, { ok: false, error: 'bad URL encoding in the path' })
        return
      }
      this.deps.drain(pool, backend, drain[3] === 'drain').then(
        message => { json(res, 200, { ok: true, message }) },
        (err: Error) => { json(res, 404, { ok: false, error: err.message }) },
      )
      return
    }
    if (path === '/api/reload') {
      if (req.method !== 'POST') { res.writeHead(405, { allow: 'POST' }); res.end(); return }
      // One object either way: ok, the generation now running, and each problem as its own string.
      this.deps.reload().then(
        summary => { json(res, 200, { ok: true, generation: this.deps.health().generation, summary, lines: summary.split('\n').filter(l => l !== ''), errors: [] }) },
        (err: Error) => { json(res, 400, { ok: false, generation: this.deps.health().generation, error: err.message, errors: err.message.split('\n').filter(l => l !== '') }) },
      )
      return
    }
    if (path === '/api/upgrade' && this.deps.upgrade !== undefined) {
      if (req.method !== 'POST') { res.writeHead(405, { allow: 'POST' }); res.end(); return }
      this.upgrade(this.deps.upgrade, req, res)
      return
    }
    const unencoded = path === undefined ? null : /^\/api\/pools\/([^/]+)\/backends\/(.+?)(\/drain|\/undrain)?$/.exec(path)
    if (unencoded !== null && unencoded[2]?.includes('/') === true) {
      // "/api/pools/demo/backends/http://127.0.0.1:9001/drain": the URL's own slashes split the path.
      const example = `/api/pools/${unencoded[1] ?? ''}/backends/${encodeURIComponent(unencoded[2])}${unencoded[3] ?? ''}`
      json(res, 400, { ok: false, error: `the backend URL in the path must be URL-encoded (encodeURIComponent), e.g. ${example}` })
      return
    }
    json(res, 404, { error: `no admin endpoint ${req.method ?? ''} ${path ?? ''}` })
  }

  /**
   * POST /api/upgrade[?workers_only=1], or a JSON body {"workers_only": true}: answers once the upgrade is over,
   * 200 with the steps when the new processes serve and the old ones are gone, 409 with the steps and the error
   * when it did not happen (the running processes keep serving).
   */
  private upgrade (upgrade: NonNullable<AdminDeps['upgrade']>, req: IncomingMessage, res: ServerResponse): void {
    const q = (req.url ?? '').indexOf('?')
    const query = q === -1 ? null : new URLSearchParams((req.url ?? '').slice(q + 1)).get('workers_only')
    readBody(req, MAX_BODY).then(text => {
      if (text === undefined) { json(res, 413, { ok: false, error: `the body is over ${MAX_BODY} bytes` }); return }
      let workersOnly = query !== null && query !== '0' && query !== 'false'
      if (text.trim() !== '') {
        let body: unknown
        try { body = JSON.parse(text) } catch { body = undefined }
        const flag = typeof body === 'object' && body !== null ? (body as { workers_only?: unknown }).workers_only : undefined
        if (body === undefined || (flag !== undefined && typeof flag !== 'boolean')) {
          json(res, 400, { ok: false, error: 'the body is JSON like {"workers_only": true}, or empty' })
          return
        }
        if (flag === true) workersOnly = true
      }
      upgrade(workersOnly).then(
        result => { json(res, result.ok ? 200 : 409, result) },
        (err: Error) => { json(res, 500, { ok: false, error: err.message, steps: [] }) },
      )
    }, () => { res.destroy() })
  }

  /** GET and POST /api/pools/NAME/backends, DELETE /api/pools/NAME/backends/URL-ENCODED[?drain=30s]. */
  private members (ops: MemberOps, req: IncomingMessage, res: ServerResponse, rawPool: string, rawUrl: string | undefined): void {
    let pool: string
    let url: string | undefined
    try {
      pool = decodeURIComponent(rawPool)
      url = rawUrl === undefined ? undefined : decodeURIComponent(rawUrl)
    } catch {
      json(res, 400, { ok: false, error: 'bad URL encoding in the path' })
      return
    }
    const refused = (err: unknown): void => {
      if (err instanceof AdminRefusal) { json(res, err.status, { ok: false, error: err.message }); return }
      this.deps.log.error({ err, path: req.url }, 'internal error in the admin API')
      json(res, 500, { ok: false, error: 'internal error' })
    }
    if (url === undefined) {
      if (req.method === 'GET') {
        ops.list(pool).then(list => { json(res, 200, list) }, refused)
        return
      }
      if (req.method !== 'POST') { res.writeHead(405, { allow: 'GET, POST' }); res.end(); return }
      readBody(req, MAX_BODY).then(text => {
        if (text === undefined) { json(res, 413, { ok: false, error: `the body is over ${MAX_BODY} bytes` }); return }
        let body: unknown
        try {
          body = JSON.parse(text)
        } catch {
          json(res, 400, { ok: false, error: 'the body is not JSON; send e.g. {"url": "http://127.0.0.1:9003", "weight": 2}' })
          return
        }
        ops.add(pool, body).then(m => { json(res, 201, m) }, refused)
      }, () => { res.destroy() })
      return
    }
    if (req.method !== 'DELETE') { res.writeHead(405, { allow: 'DELETE' }); res.end(); return }
    const q = (req.url ?? '').indexOf('?')
    const drain = q === -1 ? null : new URLSearchParams((req.url ?? '').slice(q + 1)).get('drain')
    ops.remove(pool, url, drain).then(message => { json(res, 202, { ok: true, message }) }, refused)
  }

  private streamEvents (req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' })
    for (const e of this.deps.events.recent(50)) res.write(`data: ${JSON.stringify(e)}\n\n`)
    const off = this.deps.events.subscribe(e => { res.write(`data: ${JSON.stringify(e)}\n\n`) })
    // Comments keep proxies and browsers from timing the stream out.
    const ping = setInterval(() => { res.write(': ping\n\n') }, 15_000)
    req.on('close', () => { off(); clearInterval(ping) })
  }

  close (): Promise<void> {
    return new Promise(resolve => {
      this.server.close(() => { resolve() })
      this.server.closeAllConnections()
    })
  }
}
