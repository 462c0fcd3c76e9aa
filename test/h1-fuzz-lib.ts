// The differential fuzzer of the edge's own HTTP/1.1 server (issue 12): the generator and mutator of request
// streams, and the comparison of what two edges forwarded for the same stream, one with http1_server = "edge" and
// one with "node" (test/h1-fuzz-harness.ts runs them). The edge passes when it forwarded the same requests as
// node:http, or only some of them (it refused something node:http forwarded: stricter). Besides the difference,
// two facts must hold on both servers whatever the input: every request a backend reads went through the edge's
// header processing (Via, X-Forwarded-Proto), and nothing under the "/deny" respond route reaches a backend.
// Used by test/h1-fuzz.test.ts (fixed seed, bounded) and bench/fuzz.ts (`npm run fuzz`).

// ---------------------------------------------------------------- a seeded PRNG

export type Rng = () => number

/** mulberry32: a 32-bit state, uniform floats in [0, 1). */
export function mulberry32 (seed: number): Rng {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The seed of case `index` of a run: every case can be regenerated alone from (seed, index). */
export function caseSeed (seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9E3779B1)) >>> 0
  h = Math.imul(h ^ (h >>> 16), 0x85EBCA6B) >>> 0
  h = Math.imul(h ^ (h >>> 13), 0xC2B2AE35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}

const int = (r: Rng, n: number): number => Math.floor(r() * n)
const chance = (r: Rng, p: number): boolean => r() < p
function pick<V> (r: Rng, list: readonly V[]): V {
  return list[int(r, list.length)] as V
}
/** Picks from [weight, value] pairs. */
function weighted<V> (r: Rng, list: ReadonlyArray<readonly [number, V]>): V {
  let total = 0
  for (const [w] of list) total += w
  let x = r() * total
  for (const [w, v] of list) { x -= w; if (x < 0) return v }
  return (list[list.length - 1] as readonly [number, V])[1]
}

// ---------------------------------------------------------------- the generator

/** A byte stream for one fresh connection, written in segments (cut at `cuts`) with `delays` ms between them. */
export interface FuzzCase {
  readonly bytes: Buffer
  readonly cuts: readonly number[]
  readonly delays: readonly number[]
}

const METHODS: ReadonlyArray<readonly [number, string]> = [
  [30, 'GET'], [20, 'POST'], [5, 'PUT'], [5, 'HEAD'], [4, 'OPTIONS'], [3, 'DELETE'], [3, 'PATCH'], [2, 'CONNECT'],
  [2, 'TRACE'], [1, 'PRI'], [1, 'FOO'], [1, 'get'], [1, 'M-SEARCH'], [1, 'GET\t'],
]
const TARGETS: ReadonlyArray<readonly [number, string]> = [
  [30, '/'], [15, '/a/b?q=1'], [6, '/deny/secret'], [3, '/x/../deny/a'], [3, '//deny'], [3, '/%64eny/x'],
  [3, '/deny%2Fx'], [6, '/noup'], [3, '*'], [4, 'http://h.test/abs?x=1'], [2, 'http://h.test:8080'],
  [2, 'https://h.test/deny/abs'], [2, 'h.test:443'], [1, 'ftp://h.test/'], [1, '/a%00b'], [1, '/\xe9t\xe9'],
  [1, '/a?b=c#frag'], [1, `/${'a'.repeat(300)}`], [1, '/a b'], [1, 'http://u@h.test/'], [1, '/..'],
]
const VERSIONS: ReadonlyArray<readonly [number, string]> = [
  [70, 'HTTP/1.1'], [14, 'HTTP/1.0'], [2, 'HTTP/0.9'], [2, 'HTTP/2.0'], [2, 'HTTP/1.2'], [1, 'HTTP/9.9'],
  [1, 'HTTP/3.0'], [1, 'HTTP/0.0'], [1, 'HTTP/2'], [1, 'HTTP/1.10'], [1, 'http/1.1'], [1, 'HTTP/1.1 '],
  [1, 'HTP/1.1'], [1, ''], [1, 'HTTP/1.01'],
]
const VALID_VERSIONS: ReadonlyArray<readonly [number, string]> = [[80, 'HTTP/1.1'], [20, 'HTTP/1.0']]
const HOSTS: ReadonlyArray<readonly [number, string]> = [
  [70, 'h.test'], [5, 'h.test:8080'], [3, '127.0.0.1'], [2, '[::1]:80'], [3, 'h test'], [3, 'u@h.test'], [2, ''],
  [2, 'h.test, other.test'], [1, 'h_t.test'], [2, 'H.TEST'], [1, 'h.test.'], [1, 'h.test:'], [1, 'h.test:99999'],
  [1, 'h.test/x'], [1, ' h.test '], [1, 'h.test:80:80'],
]
const EXTRAS = [
  'User-Agent: fuzz', 'Accept: */*', 'X-A: 1', 'Cookie: a=1', 'Cookie: b=2', 'X-Forwarded-For: 1.2.3.4',
  'Via: 1.0 spoof', 'Forwarded: for=1.1.1.1', 'X-Request-Id: client-id', 'X-Forwarded-Proto: https',
  'X-Forwarded-Host: evil.test', 'X-Forwarded-Server-Name: evil.test', 'Proxy-Connection: keep-alive',
  'Keep-Alive: timeout=5', 'TE: trailers', 'Trailer: X-T', 'X-Empty:', 'X-Sp:   padded   ', 'x-UPPER: V',
  'Max-Forwards: 0', 'Authorization: Basic Zm9vOmJhcg==', 'Content-Type: text/plain', 'Proxy-Authorization: x',
  'X-Utf8: caf\xe9', 'X-Tab:\tv', 'Accept-Encoding: gzip', 'Sec-WebSocket-Version: 13',
]
const CONNECTIONS = [
  'close', 'keep-alive', 'Upgrade', 'keep-alive, Upgrade', 'x-hop', 'close, close', 'TE', 'Keep-Alive', 'upgrade, close',
]
const UPGRADES = ['websocket', 'WebSocket', 'h2c', 'foo/1', '']
const TES: ReadonlyArray<readonly [number, string]> = [
  [60, 'chunked'], [3, 'Chunked'], [3, 'gzip, chunked'], [3, 'identity, chunked'], [3, 'chunked, chunked'],
  [2, 'chunked, gzip'], [2, 'identity'], [2, 'chunked '], [2, ' chunked'], [1, 'x-custom'], [1, 'chunked;q=1'],
  [1, 'chun ked'],
]
/** A request inside a body: read as a second request by anything that mis-frames the first. */
const INNER = 'GET /smuggled HTTP/1.1\r\nHost: h.test\r\n\r\n'

function token (r: Rng, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(97 + int(r, 26))
  return s
}

function bodyBytes (r: Rng, n: number): string {
  if (n >= INNER.length && chance(r, 0.2)) return INNER + token(r, n - INNER.length)
  return token(r, n)
}

function chunkedBody (r: Rng): string {
  let out = ''
  const chunks = weighted(r, [[3, 0], [5, 1], [3, 2], [1, 3]])
  for (let i = 0; i < chunks; i++) {
    const data = bodyBytes(r, 1 + int(r, 50))
    let size = data.length.toString(16)
    if (chance(r, 0.1)) size = size.toUpperCase()
    if (chance(r, 0.05)) size = `00${size}`
    if (chance(r, 0.05)) size = pick(r, ['-1', '0x5', ' 5', '5 ', 'ffffffffffffffffff', 'z', '+5', ''])
    const ext = chance(r, 0.15) ? pick(r, [';a=b', ';x', '; y="q"', ';', ';a=b;c']) : ''
    out += `${size}${ext}\r\n${data}\r\n`
  }
  out += chance(r, 0.1) ? '0;end\r\n' : '0\r\n'
  if (chance(r, 0.2)) out += pick(r, ['X-T: v\r\n', 'X-T: v\r\nX-U: w\r\n', 'Content-Length: 5\r\n', 'Host: evil.test\r\n'])
  if (!chance(r, 0.05)) out += '\r\n'
  return out
}

/** One request: request line, header lines, framing and body from the grammar. */
export function request (r: Rng, opts: GenerateOptions = {}): string {
  const method = weighted(r, METHODS)
  const version = weighted(r, opts.validVersions === true ? VALID_VERSIONS : VERSIONS)
  const lines: string[] = [version === '' ? `${method} ${weighted(r, TARGETS)}` : `${method} ${weighted(r, TARGETS)} ${version}`]
  if (chance(r, 0.88)) lines.push(`Host: ${weighted(r, HOSTS)}`)
  if (chance(r, 0.07)) lines.push(`${pick(r, ['Host', 'host', 'HOST'])}: ${chance(r, 0.5) ? 'h.test' : 'other.test'}`)
  for (let n = weighted(r, [[5, 0], [4, 1], [2, 2], [1, 3]]); n > 0; n--) lines.push(pick(r, EXTRAS))
  if (chance(r, 0.25)) {
    const c = pick(r, CONNECTIONS)
    lines.push(`Connection: ${c}`)
    if (c === 'x-hop') lines.push('X-Hop: secret')
  }
  if (chance(r, 0.15)) {
    lines.push(`Upgrade: ${pick(r, UPGRADES)}`)
    if (chance(r, 0.7)) lines.push('Connection: Upgrade')
    if (chance(r, 0.5)) lines.push('Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==')
  }
  if (chance(r, 0.05)) lines.push(`Expect: ${pick(r, ['100-continue', '100-Continue', 'weird'])}`)
  if (chance(r, 0.05) && lines.length > 1) {
    const at = 1 + int(r, lines.length - 1)
    lines.splice(at + 1, 0, `${pick(r, [' ', '\t', '  '])}folded`)
  }
  let body = ''
  const framing = weighted(r, [[method === 'GET' || method === 'HEAD' ? 12 : 4, 'none'], [5, 'length'], [5, 'chunked'], [1, 'both']])
  if (framing === 'length' || framing === 'both') {
    const data = bodyBytes(r, int(r, 60))
    const declared = chance(r, 0.85) ? data.length : Math.max(0, data.length + int(r, 11) - 5)
    const spelling = weighted(r, [[20, `${declared}`], [1, `+${declared}`], [1, `${declared}, ${declared}`],
      [1, ` ${declared} `], [1, `0${declared}`], [1, `${declared}x`], [1, '-1'], [1, '99999999999999999999']])
    lines.push(`${pick(r, ['Content-Length', 'content-length', 'Content-length'])}:${chance(r, 0.9) ? ' ' : ''}${spelling}`)
    if (chance(r, 0.05)) lines.push(`Content-Length: ${chance(r, 0.5) ? declared : declared + 1}`)
    body = data
  }
  if (framing === 'chunked' || framing === 'both') {
    lines.push(`Transfer-Encoding: ${weighted(r, TES)}`)
    if (chance(r, 0.05)) lines.push(`Transfer-Encoding: ${weighted(r, TES)}`)
    body = chunkedBody(r)
  }
  // Line endings: CRLF, or now and then a bare LF or CR on one line.
  const odd = chance(r, 0.06)
  let head = ''
  for (const l of lines) head += l + (odd && chance(r, 0.3) ? pick(r, ['\n', '\r', '\r\r\n']) : '\r\n')
  return `${head}\r\n${body}`
}

const BYTES = [0x00, 0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x7f, 0x80, 0xff, 0x0b, 0x0c, 0x2c, 0x3b, 0x22, 0x2f, 0x3f]
const INSERTS = ['\r\n', '\r\n\r\n', ' HTTP/1.1', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 3\r\n', '0\r\n\r\n',
  'Host: h.test\r\n', '\r\n ', INNER]

/** A position: anywhere, or beside a CR, LF, colon or space (where parsers decide things). */
function position (r: Rng, b: Buffer): number {
  if (b.length === 0) return 0
  if (chance(r, 0.5)) return int(r, b.length + 1)
  for (let tries = 0; tries < 8; tries++) {
    const i = int(r, b.length)
    const c = b[i] as number
    if (c === 0x0d || c === 0x0a || c === 0x3a || c === 0x20) return i + int(r, 2)
  }
  return int(r, b.length + 1)
}

function lineBounds (b: Buffer): number[] {
  const starts = [0]
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a && i + 1 < b.length) starts.push(i + 1)
  return starts
}

/** Applies one random mutation: insert, replace or delete a byte; duplicate or delete a line; insert a snippet; cut. */
export function mutate (r: Rng, b: Buffer): Buffer {
  const byte = (): number => chance(r, 0.8) ? pick(r, BYTES) : int(r, 256)
  const kind = weighted(r, [[5, 'insert'], [5, 'replace'], [3, 'delete'], [2, 'dupline'], [1, 'delline'], [2, 'snippet'], [1, 'cut'], [1, 'swap']])
  const at = position(r, b)
  switch (kind) {
    case 'insert': return Buffer.concat([b.subarray(0, at), Buffer.from([byte()]), b.subarray(at)])
    case 'replace': { if (at >= b.length) return b; const c = Buffer.from(b); c[at] = byte(); return c }
    case 'delete': return Buffer.concat([b.subarray(0, at), b.subarray(at + 1)])
    case 'swap': { if (at + 1 >= b.length) return b; const c = Buffer.from(b); c[at] = b[at + 1] as number; c[at + 1] = b[at] as number; return c }
    case 'snippet': return Buffer.concat([b.subarray(0, at), Buffer.from(pick(r, INSERTS), 'latin1'), b.subarray(at)])
    case 'cut': return b.subarray(0, at)
    default: {
      const starts = lineBounds(b)
      const i = int(r, starts.length)
      const s = starts[i] as number
      const e = starts[i + 1] ?? b.length
      if (kind === 'dupline') return Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)])
      return Buffer.concat([b.subarray(0, s), b.subarray(e)])
    }
  }
}

export interface GenerateOptions {
  /** Only HTTP/1.0 and HTTP/1.1 request lines (to look past a class of crash that hides the rest). */
  readonly validVersions?: boolean
}

/** Case `index` of the run with `seed`: 1-4 pipelined requests, 0-5 mutations, one to five segments. */
export function generate (seed: number, index: number, opts: GenerateOptions = {}): FuzzCase {
  const r = mulberry32(caseSeed(seed, index))
  let text = ''
  for (let n = weighted(r, [[45, 1], [30, 2], [15, 3], [10, 4]]); n > 0; n--) {
    text += request(r, opts)
  }
  let bytes: Buffer = Buffer.from(text, 'latin1')
  for (let n = weighted(r, [[40, 0], [30, 1], [15, 2], [10, 3], [5, 5]]); n > 0; n--) bytes = mutate(r, bytes)
  const cuts: number[] = []
  const delays: number[] = []
  if (bytes.length > 1 && chance(r, 0.4)) {
    const set = new Set<number>()
    for (let n = 1 + int(r, 4); n > 0; n--) set.add(1 + int(r, bytes.length - 1))
    for (const c of [...set].sort((a, b) => a - b)) { cuts.push(c); delays.push(int(r, 6)) }
  }
  return { bytes, cuts, delays }
}

/** A case sent in one write. */
export function oneWrite (bytes: string | Buffer): FuzzCase {
  return { bytes: typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes, cuts: [], delays: [] }
}

// ---------------------------------------------------------------- what reached a backend, normalised

/** One request as a backend read it off the wire (the edge's forwarding), or bytes that were no request. */
export interface Received {
  /** The head up to its blank line, latin1; for `junk`, the bytes themselves. */
  head: string
  body: Buffer[]
  complete: boolean
  /** Answered 101: `tunnel` holds what came after the head. */
  upgraded: boolean
  tunnel: Buffer[]
  /** Bytes that could not be read as a request (a tunnel the backend did not agree to, say). */
  junk: boolean
  /** performance.now() when the head (or the first junk byte) arrived. */
  readonly at: number
}

/** A received request reduced to what must be the same on both servers (request ids vary; nothing else may). */
export interface Forwarded {
  /** The request line and header lines, "\n"-joined; x-request-id values as "*". */
  readonly head: string
  /** The body after de-framing (latin1), or a tunnel's bytes after the 101, or junk. */
  readonly body: string
  readonly complete: boolean
  readonly upgraded: boolean
  readonly junk: boolean
  /** The head carries the edge's own headers: one X-Forwarded-Proto and a Via ending in this edge. */
  readonly marked: boolean
  /** The request line's target. */
  readonly target: string
  /** What is compared: the head without its framing headers (the body is compared de-framed; whether the proxy
   * sends a body it has whole with Content-Length or streams it chunked depends on timing, not on the server). */
  readonly key: string
  readonly at: number
}

export function normalise (r: Received): Forwarded {
  const bytes = Buffer.concat(r.upgraded ? r.tunnel : r.body).toString('latin1')
  if (r.junk) return { head: '', body: bytes, complete: false, upgraded: false, junk: true, marked: false, target: '', key: '', at: r.at }
  const lines = r.head.split('\r\n')
  let xfp = 0
  let via = ''
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i] as string
    const c = l.indexOf(':')
    const name = l.slice(0, c).toLowerCase()
    if (name === 'x-request-id') lines[i] = `${l.slice(0, c)}: *`
    else if (name === 'x-forwarded-proto') xfp++
    else if (name === 'via') via = l.slice(c + 1).trim()
  }
  const target = (lines[0] ?? '').split(' ')[1] ?? ''
  const key = lines.filter(l => !/^(content-length|transfer-encoding):/i.test(l)).join('\n')
  return { head: lines.join('\n'), body: bytes, complete: r.complete, upgraded: r.upgraded, junk: false, marked: xfp === 1 && via.endsWith('1.1 edge-proxy'), target, key, at: r.at }
}

// ---------------------------------------------------------------- what each edge did

export type Engine = 'edge' | 'node'
export const ENGINES: readonly Engine[] = ['edge', 'node']

/** What one edge did with a case. */
export interface SideResult {
  readonly engine: Engine
  /** Status lines of the answers, in order. */
  readonly answers: string[]
  /** Answers that came from the backend (x-rec). */
  readonly backendAnswers: number
  /** performance.now() of the last bytes the edge sent on the connection. */
  readonly lastDataAt: number
  readonly forwarded: Forwarded[]
  /** The edge closed the connection before our FIN. */
  readonly closedFirst: boolean
  /** Our FIN did not make it close within a second. */
  readonly keptAfterFin: boolean
  /** The process died or stopped answering: its last words (the stack it logged). */
  readonly crashed: string | undefined
  /** An exception the edge caught and logged as an internal error (a bug, answered 500): the stack. */
  readonly internal: string | undefined
}

// ---------------------------------------------------------------- the verdict

export interface Verdict {
  /** false: a finding. */
  readonly ok: boolean
  /** The class: same for every input that shows the same difference (the fuzz run reports one example each). */
  readonly cls: string
  readonly detail: string
}

const same = (a: Forwarded, b: Forwarded): boolean =>
  a.key === b.key && a.body === b.body && a.complete === b.complete && a.upgraded === b.upgraded && a.junk === b.junk

/** `a` is `b` cut short (the edge stopped reading a body node:http read on). */
const prefixOf = (a: Forwarded, b: Forwarded): boolean =>
  a.key === b.key && !a.complete && b.body.startsWith(a.body) && a.upgraded === b.upgraded && a.junk === b.junk

/** What differs first between two forwarded requests, as a class name. */
function firstDifference (a: Forwarded, b: Forwarded): string {
  if (a.junk !== b.junk) return 'junk'
  const la = a.key.split('\n')
  const lb = b.key.split('\n')
  if (la[0] !== lb[0]) return 'request-line'
  for (let i = 1; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) return `header:${((la[i] ?? lb[i] ?? '').split(':')[0] ?? '').toLowerCase()}`
  }
  if (a.upgraded !== b.upgraded) return 'upgraded'
  if (a.body !== b.body) return a.upgraded ? 'tunnel-bytes' : 'body'
  return 'complete'
}

/** A crash's class: the error line without its variable parts, and the first frame's function. */
function crashSignature (words: string): string {
  const lines = words.split('\n')
  const err = lines.find(l => /(Error|Exception)\b/.test(l) && !/^\s*at /.test(l)) ?? lines[0] ?? ''
  const frame = /^\s*at (\S+)/.exec(lines.find(l => /^\s*at /.test(l)) ?? '')?.[1] ?? ''
  return `${err.trim().replace(/"[^"]*"|'[^']*'|\d+/g, '_').slice(0, 120)} at ${frame}`
}

/**
 * Judges one case. Findings, in order: a crash; an exception the edge caught (logged as an internal error); a
 * forwarded request without the edge's headers or under "/deny", or a connection held open after the client's
 * FIN (on either server); the edge forwarding what node:http did not, or something else. The edge forwarding
 * some of node:http's requests (or one cut short) and no other is fine ("edge-stricter").
 */
export function judge (r: Record<Engine, SideResult>): Verdict {
  const crashed = ENGINES.filter(e => r[e].crashed !== undefined)
  if (crashed.length > 0) {
    const side = crashed.length === 2 ? 'both' : crashed[0] as string
    const words = r[crashed[0] as Engine].crashed as string
    return { ok: false, cls: `crash:${side}: ${crashSignature(words)}`, detail: crashed.map(e => `${e}: ${r[e].crashed ?? ''}`).join('\n') }
  }
  const faulted = ENGINES.filter(e => r[e].internal !== undefined)
  if (faulted.length > 0) {
    const side = faulted.length === 2 ? 'both' : faulted[0] as string
    return { ok: false, cls: `internal-error:${side}: ${crashSignature(r[faulted[0] as Engine].internal as string)}`, detail: faulted.map(e => `${e}: ${r[e].internal ?? ''}`).join('\n') }
  }
  // Facts of each server on its own; "both" when node:http lets it through as well.
  const side = (bad: (e: Engine) => unknown): string | undefined => {
    const who = ENGINES.filter(e => bad(e) !== undefined && bad(e) !== false)
    return who.length === 0 ? undefined : who.length === 2 ? 'both' : who[0]
  }
  const unmarked = (e: Engine): Forwarded | undefined => r[e].forwarded.find(x => !x.marked)
  const denied = (e: Engine): Forwarded | undefined => r[e].forwarded.find(x => x.target.startsWith('/deny'))
  const u = side(unmarked)
  if (u !== undefined) {
    const x = (unmarked('edge') ?? unmarked('node')) as Forwarded
    return { ok: false, cls: `unmarked:${u}${x.junk ? ':junk' : ''}`, detail: `reached the backend without the edge's headers: ${JSON.stringify(x.junk ? x.body : x.head)}` }
  }
  const d = side(denied)
  if (d !== undefined) {
    const x = (denied('edge') ?? denied('node')) as Forwarded
    return { ok: false, cls: `deny-reached:${d}`, detail: `forwarded ${JSON.stringify(x.head.split('\n')[0])} past the /deny respond route` }
  }
  // Both servers are half-open, but a client's FIN with nothing left to answer closes the connection: one still
  // open a second later is held for nothing (a socket per request, for as long as the client likes).
  const k = side(e => r[e].keptAfterFin)
  if (k !== undefined) return { ok: false, cls: `kept-open-after-fin:${k}`, detail: 'the connection was still open 1 s after the client\'s FIN' }
  // Compared as multisets: node:http hands pipelined requests to the proxy at once, so they reach the backend on
  // several pooled connections in any order; the edge's own server starts each after the answer before it.
  const E = r.edge.forwarded
  const N = r.node.forwarded
  const used = new Set<number>()
  const extra: Forwarded[] = []
  for (const x of E) {
    let k = N.findIndex((y, i) => !used.has(i) && same(x, y))
    if (k === -1) k = N.findIndex((y, i) => !used.has(i) && prefixOf(x, y))
    if (k === -1) extra.push(x)
    else used.add(k)
  }
  if (extra.length === 0) {
    if (used.size === N.length) return { ok: true, cls: 'same', detail: '' }
    return { ok: true, cls: 'edge-stricter', detail: `node:http forwarded ${N.length - used.size} more` }
  }
  const x = extra[0] as Forwarded
  if (extra.length === 1 && x === E[E.length - 1] && abandonedInFlight(r.edge)) {
    return { ok: true, cls: 'abandoned-in-flight', detail: 'the edge forwarded a request before later bytes made it answer 400 and close; whether it reached the backend first is a race' }
  }
  if (extra.every(f => E.indexOf(f) < r.edge.backendAnswers) && abortedEarlier(r.node, r.edge)) {
    return { ok: true, cls: 'node-aborted-earlier', detail: 'the edge served requests in order before an error; node:http answered an error out of order and dropped them' }
  }
  const rest = N.filter((_, i) => !used.has(i))
  const line = (f: Forwarded): string => f.head.split('\n')[0] ?? ''
  const y = rest.find(f => line(f) === line(x)) ?? rest[0]
  if (y === undefined) return { ok: false, cls: `edge-forwarded-more${x.junk ? ':junk' : hostHint(x)}`, detail: `only the edge forwarded ${JSON.stringify(x.junk ? x.body : line(x))}` }
  return { ok: false, cls: `different:${firstDifference(x, y)}`, detail: `edge ${JSON.stringify(x)}\nnode ${JSON.stringify(y)}` }
}

/** What is odd about a forwarded request's Host (issue 12 item 7), so such findings class apart. */
function hostHint (f: Forwarded): string {
  const host = /\nhost: ([^\n]*)/.exec(f.head)?.[1]
  if (host === undefined || host === '') return ':no-host'
  return /[\s@,]/.test(host) ? ':bad-host' : ''
}

/**
 * The edge's last forwarded request was under way (sent, not yet answered) when later bytes on the connection
 * made the edge answer an error and close: it is abandoned, and whether it had reached the backend by then
 * depends on the pooled connection's state. The edge runs one request at a time, so only the last one can be.
 */
function abandonedInFlight (s: SideResult): boolean {
  const last = s.forwarded[s.forwarded.length - 1]
  const status = Number(/ (\d{3})/.exec(s.answers[s.answers.length - 1] ?? '')?.[1] ?? 0)
  return last !== undefined && s.closedFirst && s.forwarded.length === s.backendAnswers + 1 &&
    s.answers.length > s.backendAnswers && status >= 400 && last.at <= s.lastDataAt
}

/**
 * node:http cut the connection with an error sooner than the edge (fewer answers, the last an error): it answers
 * a refused upgrade or unparsable bytes at once, out of order, and drops the requests pipelined before them that
 * were still under way. Requests the edge forwarded and answered in order before that point are not a laxer edge.
 */
function abortedEarlier (node: SideResult, edge: SideResult): boolean {
  const status = Number(/ (\d{3})/.exec(node.answers[node.answers.length - 1] ?? '')?.[1] ?? 0)
  return node.closedFirst && status >= 400 && node.answers.length < edge.answers.length
}

/** A case, its outcome and its verdict, as a report a person can rerun. */
export function describe (c: FuzzCase, r: Record<Engine, SideResult>, v: Verdict, where: string): string {
  const side = (s: SideResult): string => `  ${s.engine}: answers ${JSON.stringify(s.answers)}${s.closedFirst ? ' (closed)' : s.keptAfterFin ? ' (kept open after our FIN)' : ''}` +
    `\n    forwarded ${JSON.stringify(s.forwarded.map(f => f.junk ? { junk: f.body } : { head: f.head, body: f.body, complete: f.complete, upgraded: f.upgraded }))}`
  return `${where}: ${v.cls}\n  bytes ${JSON.stringify(c.bytes.toString('latin1'))}` +
    `${c.cuts.length > 0 ? `\n  cuts ${JSON.stringify(c.cuts)} delays ${JSON.stringify(c.delays)}` : ''}` +
    `\n${side(r.edge)}\n${side(r.node)}\n  ${v.detail.split('\n').join('\n  ')}`
}

// ---------------------------------------------------------------- shrinking

/**
 * ddmin over lines, then over bytes: the smallest input (sent in one write) that `fails` still classes as
 * `cls`. Bounded by `maxRuns` evaluations.
 */
export async function shrink (bytes: Buffer, fails: (b: Buffer) => Promise<boolean>, maxRuns = 200): Promise<Buffer> {
  let runs = 0
  const test = async (b: Buffer): Promise<boolean> => { runs++; return await fails(b) }
  let cur = bytes
  for (const unit of ['line', 'byte'] as const) {
    let parts = unit === 'line' ? splitLines(cur) : [...cur].map(x => Buffer.from([x]))
    let n = 2
    while (parts.length >= 2 && runs < maxRuns) {
      const size = Math.ceil(parts.length / n)
      let reduced = false
      for (let i = 0; i < parts.length && runs < maxRuns; i += size) {
        const rest = [...parts.slice(0, i), ...parts.slice(i + size)]
        if (rest.length === 0) continue
        if (await test(Buffer.concat(rest))) { parts = rest; n = Math.max(n - 1, 2); reduced = true; break }
      }
      if (!reduced) {
        if (n >= parts.length) break
        n = Math.min(n * 2, parts.length)
      }
    }
    cur = Buffer.concat(parts)
  }
  return cur
}

function splitLines (b: Buffer): Buffer[] {
  const out: Buffer[] = []
  let s = 0
  for (let i = 0; i < b.length; i++) if (b[i] === 0x0a) { out.push(b.subarray(s, i + 1)); s = i + 1 }
  if (s < b.length) out.push(b.subarray(s))
  return out
}
