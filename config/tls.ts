// Config pieces for TLS: the keys of an https listener (certificates, default_certificate, alpn, min_version,
// ciphers, client_ca) and a pool's `tls` table for https:// backends. Files are checked and read here, once, at load;
// relative paths resolve against the config file's directory.
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import tls from 'node:tls'
import { z } from 'zod'
import type { BackendTlsConfig, ListenerTlsConfig } from './types.js'

type PathItem = string | number
export type AddProblem = (path: readonly PathItem[], message: string) => void

/**
 * TLS 1.2 suites the edge offers when it terminates TLS: Mozilla's "intermediate" profile (v5.7), forward-secret
 * AEAD only, no CBC (LUCKY13), no RSA key exchange. TLS 1.3 suites are all AEAD and stay OpenSSL's defaults.
 * The client's order is honoured, as the profile says: every suite listed is strong, and the client knows
 * whether it has AES hardware.
 */
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES256-GCM-SHA384', 'DHE-RSA-CHACHA20-POLY1305',
].join(':')

const certPair = z.strictObject({ cert: z.string().min(1), key: z.string().min(1) })

/** Spread into listenerSchema. Only meaningful with protocol = "https" (checked in resolveListenerTls). */
export const listenerTlsKeys = {
  certificates: z.union([z.array(certPair).min(1), z.string().min(1)], { error: 'certificates is a list of { cert = "...", key = "..." } or a directory path' }).optional(),
  default_certificate: z.string().min(1).optional(),
  alpn: z.array(z.enum(['h2', 'http/1.1'])).min(1).optional(),
  min_version: z.enum(['TLSv1.2', 'TLSv1.3']).optional(),
  ciphers: z.string().min(1).optional(),
  client_ca: z.string().min(1).optional(),
}

/** [pools.NAME.tls]: how the edge connects to https:// backends. */
export const poolTlsSchema = z.strictObject({
  ca: z.string().min(1).optional(),
  servername: z.string().min(1).optional(),
  insecure: z.boolean().default(false),
  cert: z.string().min(1).optional(),
  key: z.string().min(1).optional(),
})

type RawListenerTls = { [K in keyof typeof listenerTlsKeys]?: z.infer<(typeof listenerTlsKeys)[K]> }
export type RawPoolTls = z.infer<typeof poolTlsSchema>

/** The directory relative paths are resolved against: the config file's, or the working directory for text. */
export function baseDirOf (file: string): string {
  return isAbsolute(file) ? resolve(file, '..') : process.cwd()
}

function readText (file: string, path: readonly PathItem[], add: AddProblem, what: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    add(path, code === 'ENOENT' ? `${what} ${file} does not exist` : `cannot read ${what} ${file}: ${(err as Error).message}`)
    return undefined
  }
}

/** SAN DNS names of a PEM certificate, or undefined after reporting why it is not one. */
function checkPair (cert: string, key: string, path: readonly PathItem[], add: AddProblem): string[] | undefined {
  const certPem = readText(cert, [...path, 'cert'], add, 'certificate file')
  const keyPem = readText(key, [...path, 'key'], add, 'key file')
  if (certPem === undefined || keyPem === undefined) return undefined
  let x: X509Certificate
  try { x = new X509Certificate(certPem) } catch { add([...path, 'cert'], `${cert} is not a PEM certificate`); return undefined }
  let k
  try { k = createPrivateKey(keyPem) } catch { add([...path, 'key'], `${key} is not a PEM private key`); return undefined }
  if (!x.checkPrivateKey(k)) { add([...path, 'key'], `${key} does not match the certificate ${cert}`); return undefined }
  return (x.subjectAltName ?? '').split(', ').filter(s => s.startsWith('DNS:')).map(s => s.slice(4).toLowerCase())
}

function readCa (file: string, path: readonly PathItem[], add: AddProblem): string | undefined {
  const pem = readText(file, path, add, 'CA file')
  if (pem === undefined) return undefined
  try { void new X509Certificate(pem) } catch { add(path, `${file} is not a PEM certificate`); return undefined }
  return pem
}

const TLS_KEYS = ['certificates', 'default_certificate', 'alpn', 'min_version', 'ciphers', 'client_ca'] as const

/** The cipher list as OpenSSL takes it, or undefined after reporting what OpenSSL refused. */
function checkCiphers (ciphers: string, path: readonly PathItem[], add: AddProblem): string | undefined {
  try {
    tls.createSecureContext({ ciphers })
    return ciphers
  } catch (err) {
    add(path, `OpenSSL refuses the cipher list "${ciphers}" (${(err as Error).message}); it is an OpenSSL cipher string such as "${DEFAULT_CIPHERS.split(':').slice(0, 2).join(':')}"`)
    return undefined
  }
}

/** The resolved TLS settings of a listener; reports keys that do not fit its protocol. */
export function resolveListenerTls (raw: RawListenerTls & { protocol: string }, base: readonly PathItem[], dir: string, add: AddProblem): ListenerTlsConfig | undefined {
  if (raw.protocol !== 'https') {
    for (const k of TLS_KEYS) {
      if (raw[k] !== undefined) add([...base, k], `${k} only applies to protocol = "https" (this listener is "${raw.protocol}")`)
    }
    return undefined
  }
  if (raw.certificates === undefined) {
    add([...base, 'certificates'], 'an https listener needs certificates = [{ cert = "...", key = "..." }] or a directory path')
    return undefined
  }
  let certificates: { cert: string, key: string }[] | undefined
  let directory: string | undefined
  const names: string[] = []
  if (typeof raw.certificates === 'string') {
    directory = resolve(dir, raw.certificates)
    let isDir = false
    try { isDir = statSync(directory).isDirectory() } catch { /* reported below */ }
    if (!isDir) add([...base, 'certificates'], `${directory} is not a directory`)
  } else {
    certificates = raw.certificates.map((c, i) => {
      const pair = { cert: resolve(dir, c.cert), key: resolve(dir, c.key) }
      names.push(...(checkPair(pair.cert, pair.key, [...base, 'certificates', i], add) ?? []))
      return pair
    })
  }
  let defaultCertificate: string | undefined
  if (raw.default_certificate !== undefined) {
    const asFile = resolve(dir, raw.default_certificate)
    if (certificates !== undefined) {
      if (certificates.some(c => c.cert === asFile)) defaultCertificate = asFile
      else if (names.includes(raw.default_certificate.toLowerCase())) defaultCertificate = raw.default_certificate.toLowerCase()
      else add([...base, 'default_certificate'], `"${raw.default_certificate}" is neither one of this listener's certificate files nor a name they cover`)
    } else {
      // A directory's names are only known when it is scanned: a path that exists is a file, anything else a name.
      let exists = false
      try { exists = statSync(asFile).isFile() } catch { /* a server name */ }
      defaultCertificate = exists ? asFile : raw.default_certificate.toLowerCase()
    }
  }
  let clientCa: string | undefined
  if (raw.client_ca !== undefined) clientCa = readCa(resolve(dir, raw.client_ca), [...base, 'client_ca'], add)
  const ciphers = raw.ciphers === undefined ? DEFAULT_CIPHERS : checkCiphers(raw.ciphers, [...base, 'ciphers'], add) ?? DEFAULT_CIPHERS
  return {
    certificates,
    directory,
    defaultCertificate,
    alpn: raw.alpn ?? ['h2', 'http/1.1'],
    minVersion: raw.min_version ?? 'TLSv1.2',
    ciphers,
    clientCa,
  }
}

/** The resolved `tls` table of a pool (read CA / client certificate files). */
export function resolvePoolTls (raw: RawPoolTls, base: readonly PathItem[], dir: string, add: AddProblem): BackendTlsConfig {
  const ca = raw.ca === undefined ? undefined : readCa(resolve(dir, raw.ca), [...base, 'ca'], add)
  let cert: string | undefined
  let key: string | undefined
  if ((raw.cert === undefined) !== (raw.key === undefined)) add(base, 'a client certificate needs both cert and key')
  else if (raw.cert !== undefined && raw.key !== undefined) {
    const c = resolve(dir, raw.cert)
    const k = resolve(dir, raw.key)
    if (checkPair(c, k, base, add) !== undefined) {
      cert = readFileSync(c, 'utf8')
      key = readFileSync(k, 'utf8')
    }
  }
  return { ca, servername: raw.servername, insecure: raw.insecure, cert, key }
}
