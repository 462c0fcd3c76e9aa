// An incremental TLS ClientHello reader for SNI passthrough. Bytes are fed as they arrive (one at a time if the
// peer likes); the hello may be split over several handshake records (RFC 8446 §5.1 allows it). The result is
// need-more, done {sni, alpn}, or invalid: anything that is not a well-formed ClientHello within the size cap.
// It never throws, never reads past what it has, and copies each byte at most twice. Timing is the caller's job.
import { normalizeServerName } from '../../config/names.js'

export type HelloResult =
  | { readonly kind: 'need-more' }
  | {
    readonly kind: 'done'
    /** Normalized (lower case, no trailing dot); undefined when the client sent no server_name. */
    readonly sni: string | undefined
    readonly alpn: readonly string[]
    readonly legacyVersion: number
  }
  | { readonly kind: 'invalid', readonly reason: string }

export const DEFAULT_MAX_HELLO_BYTES = 16 * 1024

const NEED_MORE: HelloResult = Object.freeze({ kind: 'need-more' })
const RECORD_HANDSHAKE = 0x16
const HANDSHAKE_CLIENT_HELLO = 0x01
const MAX_RECORD = 16_384 // 2^14, the plaintext limit
const EXT_SERVER_NAME = 0
const EXT_ALPN = 16

function invalid (reason: string): HelloResult {
  return { kind: 'invalid', reason }
}

export class ClientHelloParser {
  readonly #max: number
  #raw: Buffer = Buffer.alloc(0)
  #rawLen = 0
  /** Offset in #raw of the next record header not yet consumed. */
  #recordPos = 0
  readonly #fragments: Buffer[] = []
  #hsLen = 0
  /** Length of the whole handshake message (4-byte header + body), once known. */
  #hsNeeded = -1
  #result: HelloResult = NEED_MORE

  constructor (maxBytes = DEFAULT_MAX_HELLO_BYTES) {
    this.#max = maxBytes
  }

  /** Every byte pushed so far (possibly past the hello); what a passthrough must replay to the backend. */
  get buffered (): Buffer {
    return this.#raw.subarray(0, this.#rawLen)
  }

  get result (): HelloResult { return this.#result }

  push (chunk: Uint8Array): HelloResult {
    if (this.#result.kind !== 'need-more') return this.#result
    try {
      this.#append(chunk)
      this.#result = this.#advance()
    } catch (err) {
      // Unreachable by design; a bug here must not take the listener down.
      this.#result = invalid(`parser error: ${(err as Error).message}`)
    }
    return this.#result
  }

  #append (chunk: Uint8Array): void {
    const need = this.#rawLen + chunk.length
    if (need > this.#raw.length) {
      // Doubling keeps 1-byte writes linear; one chunk may overshoot the cap (a socket read), never more.
      const next = Buffer.allocUnsafe(Math.max(need, Math.min(this.#raw.length * 2 || 512, this.#max)))
      this.#raw.copy(next, 0, 0, this.#rawLen)
      this.#raw = next
    }
    this.#raw.set(chunk, this.#rawLen)
    this.#rawLen = need
  }

  #advance (): HelloResult {
    const raw = this.#raw
    // Cheap early verdicts, so an HTTP request or a scanner on a TLS port is turned away on its first bytes.
    if (this.#rawLen >= 1 && raw[0] !== RECORD_HANDSHAKE) return invalid('not a TLS handshake record')
    if (this.#rawLen >= 2 && raw[1] !== 3) return invalid('not a TLS record version')
    for (;;) {
      const avail = Math.min(this.#rawLen, this.#max) - this.#recordPos
      if (avail < 5) break
      const p = this.#recordPos
      if (raw[p] !== RECORD_HANDSHAKE) return invalid('non-handshake record before the ClientHello ended')
      if (raw[p + 1] !== 3) return invalid('not a TLS record version')
      const len = raw.readUInt16BE(p + 3)
      if (len === 0 || len > MAX_RECORD) return invalid(`bad record length ${len}`)
      if (avail < 5 + len) break
      this.#fragments.push(raw.subarray(p + 5, p + 5 + len))
      this.#hsLen += len
      this.#recordPos = p + 5 + len
      if (this.#hsNeeded < 0 && this.#hsLen >= 4) {
        const head = this.#joined(4)
        if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('first handshake message is not a ClientHello')
        this.#hsNeeded = 4 + head.readUIntBE(1, 3)
        if (this.#hsNeeded > this.#max) return invalid(`ClientHello of ${this.#hsNeeded} bytes exceeds the ${this.#max}-byte cap`)
      }
      if (this.#hsNeeded >= 0 && this.#hsLen >= this.#hsNeeded) {
        return parseClientHello(this.#joined(this.#hsNeeded).subarray(4, this.#hsNeeded))
      }
    }
    if (this.#rawLen >= this.#max) return invalid(`no complete ClientHello within ${this.#max} bytes`)
    return NEED_MORE
  }

  /** The first n bytes of the handshake stream, joined once if it came in several records. */
  #joined (n: number): Buffer {
    const first = this.#fragments[0] as Buffer
    if (first.length >= n) return first
    const all = Buffer.concat(this.#fragments)
    this.#fragments.length = 0
    this.#fragments.push(all)
    return all
  }
}

/** Parses a ClientHello body (after the 4-byte handshake header). Bounds-checked everywhere. */
export function parseClientHello (b: Buffer): HelloResult {
  let p = 0
  if (b.length < 2 + 32 + 1) return invalid('ClientHello too short')
  const legacyVersion = b.readUInt16BE(0)
  p = 34
  const sessionLen = b[p] as number
  if (sessionLen > 32) return invalid('session id longer than 32 bytes')
  p += 1 + sessionLen
  if (p + 2 > b.length) return invalid('truncated cipher suites')
  const suitesLen = b.readUInt16BE(p)
  if (suitesLen < 2 || suitesLen % 2 !== 0) return invalid('bad cipher suites length')
  p += 2 + suitesLen
  if (p + 1 > b.length) return invalid('truncated compression methods')
  const compLen = b[p] as number
  if (compLen < 1) return invalid('no compression methods')
  p += 1 + compLen
  if (p > b.length) return invalid('truncated compression methods')
  let sni: string | undefined
  const alpn: string[] = []
  if (p === b.length) return { kind: 'done', sni, alpn, legacyVersion } // no extensions at all (pre-TLS 1.2 style)
  if (p + 2 > b.length) return invalid('truncated extensions')
  const extEnd = p + 2 + b.readUInt16BE(p)
  if (extEnd !== b.length) return invalid('extensions length does not match the ClientHello')
  p += 2
  let sawSni = false
  let sawAlpn = false
  while (p < extEnd) {
    if (p + 4 > extEnd) return invalid('truncated extension header')
    const type = b.readUInt16BE(p)
    const len = b.readUInt16BE(p + 2)
    const start = p + 4
    p = start + len
    if (p > extEnd) return invalid('extension overruns the ClientHello')
    if (type === EXT_SERVER_NAME) {
      if (sawSni) return invalid('duplicate server_name extension')
      sawSni = true
      const r = readServerName(b, start, p)
      if (typeof r !== 'string' && r !== undefined) return r
      sni = r
    } else if (type === EXT_ALPN) {
      if (sawAlpn) return invalid('duplicate ALPN extension')
      sawAlpn = true
      if (len < 2 || b.readUInt16BE(start) !== len - 2) return invalid('bad ALPN list length')
      for (let q = start + 2; q < p;) {
        const n = b[q] as number
        if (n === 0 || q + 1 + n > p) return invalid('bad ALPN protocol name')
        alpn.push(b.toString('latin1', q + 1, q + 1 + n))
        q += 1 + n
      }
    }
  }
  return { kind: 'done', sni, alpn, legacyVersion }
}

function readServerName (b: Buffer, start: number, end: number): string | undefined | HelloResult {
  // An empty server_name extension is what a server echoes; from a client it carries no name.
  if (end === start) return undefined
  if (end - start < 2 || b.readUInt16BE(start) !== end - start - 2) return invalid('bad server_name list length')
  let name: string | undefined
  for (let q = start + 2; q < end;) {
    if (q + 3 > end) return invalid('truncated server_name entry')
    const type = b[q] as number
    const n = b.readUInt16BE(q + 1)
    if (n === 0 || q + 3 + n > end) return invalid('bad server_name entry length')
    if (type === 0 && name === undefined) {
      name = normalizeServerName(b.toString('latin1', q + 3, q + 3 + n))
      if (name === undefined || name.includes('*')) return invalid('server_name is not a DNS host name')
    }
    q += 3 + n
  }
  return name
}
