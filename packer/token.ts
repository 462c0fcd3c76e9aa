// HS256 JWTs for tunnel clients, with node:crypto only. Claims: sub, names[], exp, iat.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { TunnelError } from './errors.js'

export interface TokenClaims {
  sub: string
  names: string[]
  /** Seconds since the epoch. */
  exp: number
  iat: number
}

const MAX_TOKEN = 8192
const MAX_NAMES = 256
const B64URL = /^[A-Za-z0-9_-]*$/
const HEADER = b64url(Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })))

function b64url (b: Buffer): string { return b.toString('base64url') }
function mac (secret: Buffer, input: string): Buffer { return createHmac('sha256', secret).update(input).digest() }

export function signToken (claims: { sub: string, names: string[], ttlMs: number, now?: number }, secret: Buffer): string {
  if (secret.length === 0) throw new TunnelError('EP_ERR_TUNNEL_SECRET', 'the token secret is empty')
  const iat = Math.floor((claims.now ?? Date.now()) / 1000)
  const body: TokenClaims = { sub: claims.sub, names: claims.names, iat, exp: iat + Math.ceil(claims.ttlMs / 1000) }
  const input = `${HEADER}.${b64url(Buffer.from(JSON.stringify(body)))}`
  return `${input}.${b64url(mac(secret, input))}`
}

function malformed (why: string): TunnelError { return new TunnelError('EP_ERR_TOKEN_MALFORMED', `malformed token: ${why}`) }

/** Verifies signature, then expiry; throws a TunnelError whose code says which check failed. */
export function verifyToken (token: string, secret: Buffer, now = Date.now()): TokenClaims {
  if (token.length > MAX_TOKEN) throw malformed(`longer than ${MAX_TOKEN} characters`)
  const parts = token.split('.')
  if (parts.length !== 3) throw malformed('expected three dot-separated parts')
  const [h, p, s] = parts as [string, string, string]
  if (!B64URL.test(h) || !B64URL.test(p) || !B64URL.test(s)) throw malformed('not base64url')
  let header: unknown
  try { header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) } catch { throw malformed('header is not JSON') }
  if (typeof header !== 'object' || header === null || (header as { alg?: unknown }).alg !== 'HS256') throw malformed('alg must be HS256')
  const expected = mac(secret, `${h}.${p}`)
  const given = Buffer.from(s, 'base64url')
  // Compare in constant time; a length mismatch is not secret (the MAC length is public).
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new TunnelError('EP_ERR_TOKEN_BAD_SIGNATURE', 'token signature does not match the secret')
  let c: Partial<TokenClaims>
  try { c = JSON.parse(Buffer.from(p, 'base64url').toString('utf8')) as Partial<TokenClaims> } catch { throw malformed('claims are not JSON') }
  if (typeof c !== 'object' || c === null) throw malformed('claims are not an object')
  if (typeof c.sub !== 'string') throw malformed('sub must be a string')
  if (!Array.isArray(c.names) || c.names.length > MAX_NAMES || !c.names.every(n => typeof n === 'string' && n.length > 0 && n.length <= 253)) {
    throw malformed(`names must be an array of at most ${MAX_NAMES} host names`)
  }
  if (typeof c.exp !== 'number' || !Number.isFinite(c.exp)) throw malformed('exp must be a number')
  if (c.exp * 1000 <= now) throw new TunnelError('EP_ERR_TOKEN_EXPIRED', `token expired at ${new Date(c.exp * 1000).toISOString()}`)
  return { sub: c.sub, names: c.names, exp: c.exp, iat: typeof c.iat === 'number' ? c.iat : 0 }
}

/** "env:NAME" reads the environment, "file:PATH" reads a file (trailing newline dropped), else the literal. */
export function resolveSecret (spec: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  let value: string
  if (spec.startsWith('env:')) {
    const name = spec.slice(4)
    const v = env[name]
    if (v === undefined || v === '') throw new TunnelError('EP_ERR_TUNNEL_SECRET', `environment variable ${name} is not set`)
    value = v
  } else if (spec.startsWith('file:')) {
    try { value = readFileSync(spec.slice(5), 'utf8').replace(/\r?\n$/, '') } catch (err) {
      throw new TunnelError('EP_ERR_TUNNEL_SECRET', `cannot read secret file ${spec.slice(5)}: ${(err as Error).message}`, { cause: err })
    }
  } else {
    value = spec
  }
  if (value === '') throw new TunnelError('EP_ERR_TUNNEL_SECRET', 'the tunnel secret is empty')
  return Buffer.from(value, 'utf8')
}

/** An HS256 key must hold at least as many bytes as the hash (RFC 7518 section 3.2). */
export const MIN_SECRET_BYTES = 32

/** A signing key: resolveSecret() and at least MIN_SECRET_BYTES long, else an error that says how to make one. */
export function resolveSigningKey (spec: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  const key = resolveSecret(spec, env)
  if (key.length < MIN_SECRET_BYTES) {
    throw new TunnelError('EP_ERR_TUNNEL_SECRET', `the tunnel secret is ${key.length} bytes; an HS256 key needs at least ${MIN_SECRET_BYTES}: make one with "edge-proxy token --new-secret" (or "openssl rand -base64 32")`)
  }
  return key
}

/** A fresh random key for [tunnel] secret: 32 random bytes, base64url (43 characters). */
export function newSecret (): string {
  return randomBytes(MIN_SECRET_BYTES).toString('base64url')
}
