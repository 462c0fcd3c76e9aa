// Payload codecs for the control frames. Decoders read through a bounds-checked cursor and return
// undefined on any malformed input; the session turns that into EP_ERR_TUNNEL_PROTOCOL.
import { isIP } from 'node:net'

export type Service = 'http' | 'tls' | 'tcp'
const serviceCodes: readonly (Service | undefined)[] = [undefined, 'http', 'tls', 'tcp']
export function serviceCode (s: Service): number { return s === 'http' ? 1 : s === 'tls' ? 2 : 3 }

export interface OpenInfo {
  family: 4 | 6
  /** The original client's address and port, as the edge saw them. */
  address: string
  port: number
  service: Service
  /** Host (http) or SNI (tls) of the original connection; '' when there was none. */
  servername: string
}

export interface NameClaim { service: Service, name: string }
export interface Settings { streamWindow: number, sessionWindow: number }
export interface Hello extends Settings { claims: NameClaim[] }
export interface Grant extends Settings { granted: NameClaim[], refused: NameClaim[] }

export const MAX_NAME = 253
export const MAX_CLAIMS = 256
export const MAX_MESSAGE_TEXT = 1024
const NAME_CHARS = /^[a-z0-9*._-]*$/

class Reader {
  off = 0
  ok = true
  constructor (readonly buf: Buffer) {}
  need (n: number): boolean {
    if (!this.ok || this.off + n > this.buf.length) { this.ok = false; return false }
    return true
  }
  u8 (): number { if (!this.need(1)) return 0; return this.buf[this.off++]! }
  u16 (): number { if (!this.need(2)) return 0; const v = this.buf.readUInt16BE(this.off); this.off += 2; return v }
  u32 (): number { if (!this.need(4)) return 0; const v = this.buf.readUInt32BE(this.off); this.off += 4; return v }
  bytes (n: number): Buffer { if (!this.need(n)) return Buffer.alloc(0); const v = this.buf.subarray(this.off, this.off + n); this.off += n; return v }
  text (n: number): string { return this.bytes(n).toString('latin1') }
  done (): boolean { return this.ok && this.off === this.buf.length }
}

// --- addresses: raw 4 or 16 bytes on the wire -------------------------------------------------------

function ipv4Bytes (s: string, out: Buffer, at: number): void {
  const parts = s.split('.')
  for (let i = 0; i < 4; i++) out[at + i] = Number(parts[i])
}

function ipv6Bytes (s: string, out: Buffer): void {
  out.fill(0)
  let tail = s
  const v4 = s.lastIndexOf('.') > 0 ? s.slice(s.lastIndexOf(':') + 1) : ''
  if (v4 !== '') { ipv4Bytes(v4, out, 12); tail = s.slice(0, s.length - v4.length) + '0:0' }
  const [head = '', rest] = tail.split('::')
  const hs = head === '' ? [] : head.split(':')
  const ts = rest === undefined || rest === '' ? [] : rest.split(':')
  for (let i = 0; i < hs.length; i++) out.writeUInt16BE(parseInt(hs[i]!, 16), i * 2)
  for (let i = 0; i < ts.length; i++) out.writeUInt16BE(parseInt(ts[i]!, 16), 16 - (ts.length - i) * 2)
  if (v4 !== '') ipv4Bytes(v4, out, 12)
}

/** An IP address as its 4 or 16 raw bytes (IPv4-mapped IPv6 stays 16 bytes). */
export function addressBytes (address: string): Buffer {
  if (isIP(address) === 6) { const b = Buffer.allocUnsafe(16); ipv6Bytes(address, b); return b }
  const b = Buffer.alloc(4)
  if (isIP(address) === 4) ipv4Bytes(address, b, 0)
  return b
}

function formatIPv6 (b: Buffer): string {
  const g: number[] = []
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i))
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  }
  let bestAt = -1; let bestLen = 1
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen) { bestAt = i; bestLen = j - i }
    i = j
  }
  const hex = g.map(x => x.toString(16))
  if (bestAt < 0) return hex.join(':')
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`
}

// --- OPEN ------------------------------------------------------------------------------------------

export function encodeOpen (o: OpenInfo): Buffer {
  const family = isIP(o.address) === 6 ? 6 : 4
  const addrLen = family === 6 ? 16 : 4
  const name = Buffer.from(o.servername.toLowerCase().slice(0, MAX_NAME), 'latin1')
  const buf = Buffer.allocUnsafe(4 + addrLen + 1 + name.length)
  buf[0] = family
  buf[1] = serviceCode(o.service)
  buf.writeUInt16BE(o.port & 0xffff, 2)
  const addr = buf.subarray(4, 4 + addrLen)
  if (family === 6) ipv6Bytes(o.address, addr)
  else if (isIP(o.address) === 4) ipv4Bytes(o.address, addr, 0)
  else addr.fill(0) // no usable address (e.g. a unix socket): 0.0.0.0
  buf[4 + addrLen] = name.length
  name.copy(buf, 5 + addrLen)
  return buf
}

export function decodeOpen (buf: Buffer): OpenInfo | undefined {
  const r = new Reader(buf)
  const family = r.u8()
  const service = serviceCodes[r.u8()]
  const port = r.u16()
  if (family !== 4 && family !== 6) return undefined
  const raw = r.bytes(family === 4 ? 4 : 16)
  const name = r.text(r.u8())
  if (!r.done() || service === undefined || !NAME_CHARS.test(name)) return undefined
  const address = family === 4 ? `${raw[0]}.${raw[1]}.${raw[2]}.${raw[3]}` : formatIPv6(raw)
  return { family, address, port, service, servername: name }
}

// --- HELLO / GRANT ---------------------------------------------------------------------------------

function claimsSize (claims: readonly NameClaim[]): number {
  let n = 2
  for (const c of claims) n += 2 + Buffer.byteLength(c.name, 'latin1')
  return n
}

function writeClaims (buf: Buffer, at: number, claims: readonly NameClaim[]): number {
  buf.writeUInt16BE(claims.length, at); at += 2
  for (const c of claims) {
    buf[at++] = serviceCode(c.service)
    const len = buf.write(c.name, at + 1, 'latin1')
    buf[at] = len
    at += 1 + len
  }
  return at
}

function readClaims (r: Reader): NameClaim[] | undefined {
  const count = r.u16()
  if (count > MAX_CLAIMS) return undefined
  const out: NameClaim[] = []
  for (let i = 0; i < count && r.ok; i++) {
    const service = serviceCodes[r.u8()]
    const name = r.text(r.u8())
    if (service === undefined || name === '' || !NAME_CHARS.test(name)) return undefined
    out.push({ service, name })
  }
  return r.ok ? out : undefined
}

function checkClaims (claims: readonly NameClaim[]): void {
  if (claims.length > MAX_CLAIMS) throw new RangeError(`at most ${MAX_CLAIMS} names per session`)
  for (const c of claims) if (c.name.length > MAX_NAME || !NAME_CHARS.test(c.name)) throw new RangeError(`bad name "${c.name}"`)
}

export function encodeHello (h: Hello): Buffer {
  checkClaims(h.claims)
  const buf = Buffer.allocUnsafe(8 + claimsSize(h.claims))
  buf.writeUInt32BE(h.streamWindow, 0)
  buf.writeUInt32BE(h.sessionWindow, 4)
  writeClaims(buf, 8, h.claims)
  return buf
}

export function decodeHello (buf: Buffer): Hello | undefined {
  const r = new Reader(buf)
  const streamWindow = r.u32()
  const sessionWindow = r.u32()
  const claims = readClaims(r)
  return claims !== undefined && r.done() ? { streamWindow, sessionWindow, claims } : undefined
}

export function encodeGrant (g: Grant): Buffer {
  checkClaims(g.granted); checkClaims(g.refused)
  const buf = Buffer.allocUnsafe(8 + claimsSize(g.granted) + claimsSize(g.refused))
  buf.writeUInt32BE(g.streamWindow, 0)
  buf.writeUInt32BE(g.sessionWindow, 4)
  writeClaims(buf, writeClaims(buf, 8, g.granted), g.refused)
  return buf
}

export function decodeGrant (buf: Buffer): Grant | undefined {
  const r = new Reader(buf)
  const streamWindow = r.u32()
  const sessionWindow = r.u32()
  const granted = readClaims(r)
  const refused = readClaims(r)
  if (granted === undefined || refused === undefined || !r.done()) return undefined
  return { streamWindow, sessionWindow, granted, refused }
}

// --- RESET / GOAWAY --------------------------------------------------------------------------------

export interface CodeMessage { code: number, message: string, lastStreamId: number }

/** RESET: u32 code, u16 length, text. GOAWAY: u32 last stream id first, then the same. */
export function encodeCodeMessage (code: number, message: string, lastStreamId?: number): Buffer {
  const text = Buffer.from(message.slice(0, MAX_MESSAGE_TEXT), 'utf8').subarray(0, MAX_MESSAGE_TEXT)
  const lead = lastStreamId === undefined ? 0 : 4
  const buf = Buffer.allocUnsafe(lead + 6 + text.length)
  if (lastStreamId !== undefined) buf.writeUInt32BE(lastStreamId, 0)
  buf.writeUInt32BE(code, lead)
  buf.writeUInt16BE(text.length, lead + 4)
  text.copy(buf, lead + 6)
  return buf
}

export function decodeCodeMessage (buf: Buffer, withLastStreamId: boolean): CodeMessage | undefined {
  const r = new Reader(buf)
  const lastStreamId = withLastStreamId ? r.u32() : 0
  const code = r.u32()
  const len = r.u16()
  if (len > MAX_MESSAGE_TEXT) return undefined
  const message = r.bytes(len).toString('utf8')
  return r.done() ? { code, message, lastStreamId } : undefined
}
