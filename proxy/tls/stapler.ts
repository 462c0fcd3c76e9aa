// OCSP stapling: for every served certificate that names a responder (Authority Information Access) and whose
// file carries its issuer, an answer is fetched in the background (at load, then halfway to its nextUpdate and
// at least hourly), checked (ocsp.ts), and handed to clients that ask for it (status_request) through the TLS
// server's 'OCSPRequest' event. Nothing is fetched on the handshake path: a handshake gets the answer in hand
// or none. A failure is reported and retried with backoff; the last good answer is served until it expires.
import http from 'node:http'
import https from 'node:https'
import type { X509Certificate } from 'node:crypto'
import { checkOcspResponse, issuerIn, ocspRequest, ocspUrlOf, pemCertificates } from './ocsp.js'

export type StapleEvent =
  | { readonly type: 'ocsp-stapled', readonly cert: string, readonly responder: string, readonly nextUpdate: Date | undefined, readonly renewed: boolean }
  | { readonly type: 'ocsp-failed', readonly cert: string, readonly responder: string, readonly reason: string, readonly retryInMs: number, readonly stillStapled: boolean }
  | { readonly type: 'ocsp-revoked', readonly cert: string, readonly responder: string, readonly status: 'revoked' | 'unknown' }
  | { readonly type: 'ocsp-skipped', readonly cert: string, readonly reason: string }

export interface StaplerOptions {
  readonly onEvent: (event: StapleEvent) => void
  /** Per fetch, connect to last byte (default 10 s). */
  readonly timeoutMs?: number
  /** The first retry after a failure (default 10 s); each further one waits twice as long, up to 1 h. */
  readonly retryBaseMs?: number
}

const MINUTE = 60_000
const HOUR = 60 * MINUTE
/** A responder's answer larger than this is not an OCSP response. */
const MAX_RESPONSE_BYTES = 64 * 1024

/** When to ask again after a good answer: halfway to its nextUpdate, kept within 1 min .. 1 h. */
export function refreshDelay (nextUpdate: Date | undefined, now: number): number {
  if (nextUpdate === undefined) return HOUR
  return Math.min(HOUR, Math.max(MINUTE, Math.floor((nextUpdate.getTime() - now) / 2)))
}

/** After `failures` failed fetches in a row: 10 s, 20 s, 40 s ... at most 1 h. */
export function retryDelay (failures: number, baseMs = 10_000): number {
  return Math.min(HOUR, baseMs * 2 ** Math.max(0, failures - 1))
}

interface Entry {
  readonly file: string
  readonly leaf: X509Certificate
  readonly issuer: X509Certificate
  readonly url: string
  readonly request: Buffer
  response: Buffer | undefined
  /** ms epoch after which `response` must no longer be served (its nextUpdate). */
  validUntil: number
  failures: number
  timer: NodeJS.Timeout | undefined
}

export class OcspStapler {
  readonly #opts: StaplerOptions
  /** By the leaf's DER (as a binary string): what the 'OCSPRequest' event hands over. */
  #entries = new Map<string, Entry>()
  /** Leaves (DER) already reported as not stapled: sync runs on every store poll, the report once. */
  #skipped = new Set<string>()
  /** Ends fetches under way when the stapler closes. */
  readonly #abort = new AbortController()
  #closed = false

  constructor (options: StaplerOptions) {
    this.#opts = options
  }

  /** Follows the certificates now served: new ones are fetched at once, gone ones forgotten, kept ones kept. */
  sync (certs: ReadonlyArray<{ readonly file: string, readonly certPem: string }>): void {
    if (this.#closed) return
    const next = new Map<string, Entry>()
    const skipped = new Set<string>()
    const skip = (key: string, cert: string, reason: string): void => {
      skipped.add(key)
      if (!this.#skipped.has(key)) this.#emit({ type: 'ocsp-skipped', cert, reason })
    }
    for (const c of certs) {
      let chain: X509Certificate[]
      try { chain = pemCertificates(c.certPem) } catch { continue } // the store already refused what does not parse
      const leaf = chain[0]
      if (leaf === undefined) continue
      const key = leaf.raw.toString('binary')
      const kept = this.#entries.get(key)
      if (kept !== undefined && kept.file === c.file) { next.set(key, kept); continue }
      const url = ocspUrlOf(leaf)
      if (url === undefined) continue // names no responder: nothing to staple
      if (!/^https?:\/\//i.test(url)) { skip(key, c.file, `responder URL ${url} is not http(s)`); continue }
      const issuer = issuerIn(leaf, chain)
      if (issuer === undefined) { skip(key, c.file, 'the file has no issuer certificate after the leaf, which the OCSP request needs'); continue }
      let request: Buffer
      try { request = ocspRequest(leaf, issuer) } catch (err) { skip(key, c.file, (err as Error).message); continue }
      const e: Entry = { file: c.file, leaf, issuer, url, request, response: undefined, validUntil: 0, failures: 0, timer: undefined }
      next.set(key, e)
      this.#schedule(e, 0)
    }
    for (const [key, e] of this.#entries) if (next.get(key) !== e) clearTimeout(e.timer)
    this.#entries = next
    this.#skipped = skipped
  }

  /** The answer to staple for a certificate (DER), if a current good one is at hand. */
  staple (certDer: Buffer, now = Date.now()): Buffer | undefined {
    const e = this.#entries.get(certDer.toString('binary'))
    return e?.response !== undefined && now < e.validUntil ? e.response : undefined
  }

  close (): void {
    this.#closed = true
    this.#abort.abort()
    for (const e of this.#entries.values()) clearTimeout(e.timer)
    this.#entries.clear()
  }

  #schedule (e: Entry, ms: number): void {
    clearTimeout(e.timer)
    e.timer = setTimeout(() => { void this.#refresh(e) }, ms)
    e.timer.unref()
  }

  async #refresh (e: Entry): Promise<void> {
    let body: Buffer
    let verdict: ReturnType<typeof checkOcspResponse>
    try {
      body = await post(e.url, e.request, this.#opts.timeoutMs ?? 10_000, this.#abort.signal)
      verdict = checkOcspResponse(body, e.leaf, e.issuer)
    } catch (err) {
      if (this.#entries.get(e.leaf.raw.toString('binary')) !== e) return // replaced or closed meanwhile
      e.failures++
      const retryInMs = retryDelay(e.failures, this.#opts.retryBaseMs)
      this.#emit({ type: 'ocsp-failed', cert: e.file, responder: e.url, reason: (err as Error).message, retryInMs, stillStapled: e.response !== undefined && Date.now() < e.validUntil })
      this.#schedule(e, retryInMs)
      return
    }
    if (this.#entries.get(e.leaf.raw.toString('binary')) !== e) return
    const now = Date.now()
    e.failures = 0
    if (verdict.status !== 'good') {
      // Not served: a client would refuse the certificate on it, and the operator must hear of it first.
      e.response = undefined
      this.#emit({ type: 'ocsp-revoked', cert: e.file, responder: e.url, status: verdict.status })
    } else {
      const renewed = e.response !== undefined
      e.response = body
      e.validUntil = verdict.nextUpdate?.getTime() ?? verdict.thisUpdate.getTime() + 24 * HOUR
      this.#emit({ type: 'ocsp-stapled', cert: e.file, responder: e.url, nextUpdate: verdict.nextUpdate, renewed })
    }
    this.#schedule(e, refreshDelay(verdict.nextUpdate, now))
  }

  #emit (event: StapleEvent): void {
    try { this.#opts.onEvent(event) } catch { /* an observer's failure is not the stapler's */ }
  }
}

/** POSTs an OCSP request (RFC 6960 A.1) and returns the body of a 200 answer. */
function post (url: string, body: Buffer, timeoutMs: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http
    const req = client.request(url, {
      method: 'POST',
      agent: false,
      timeout: timeoutMs,
      signal,
      headers: { 'content-type': 'application/ocsp-request', accept: 'application/ocsp-response', 'content-length': body.length },
    }, res => {
      if (res.statusCode !== 200) { res.resume(); reject(new Error(`the responder answered HTTP ${res.statusCode ?? 0}`)); return }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (d: Buffer) => {
        size += d.length
        if (size > MAX_RESPONSE_BYTES) { req.destroy(new Error(`answer larger than ${MAX_RESPONSE_BYTES} bytes`)); return }
        chunks.push(d)
      })
      res.on('end', () => { resolve(Buffer.concat(chunks)) })
      res.on('error', reject)
    })
    const deadline = setTimeout(() => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) }, timeoutMs)
    req.on('close', () => { clearTimeout(deadline) })
    req.on('timeout', () => { req.destroy(new Error(`no answer within ${timeoutMs} ms`)) })
    req.on('error', reject)
    req.end(body)
  })
}
