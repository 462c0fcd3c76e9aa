// `edge-proxy cert ...`: a local CA, leaf certificates signed by it, and a readable view of any certificate.
// main.ts hands it everything after "cert"; it returns the exit code (0 ok, 1 failed, 2 usage).
import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createCa, describeCertificate, fileStemFor, issueCertificate, writePair } from '../proxy/tls/certs.js'
import { normalizeServerName } from '../config/names.js'
import { isIP } from 'node:net'

export const CERT_HELP = `edge-proxy cert: local certificates for https listeners

Usage:
  edge-proxy cert ca --out DIR [--name CN] [--days 3650] [--force]
      make a local CA: DIR/ca.pem and DIR/ca.key (refuses to overwrite without --force)
  edge-proxy cert issue --ca DIR --name NAME [--name NAME...] [--out DIR] [--days 90]
      issue a server certificate for the names (DNS, *.wildcard or IP) signed by DIR/ca.pem + ca.key;
      writes OUT/<first name>.pem and .key ("*" becomes "_wildcard"); OUT defaults to the CA's DIR
  edge-proxy cert inspect FILE
      print subject, names, issuer, validity and days left of each certificate in FILE
`

export interface CertIo {
  readonly stdout: { write (s: string): unknown }
  readonly stderr: { write (s: string): unknown }
}

const DAY = 86_400_000

class UsageError extends Error {}

function days (value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > 36_500) throw new UsageError(`--days must be a whole number from 1 to 36500, got "${value}"`)
  return n
}

async function exists (file: string): Promise<boolean> {
  try { await access(file); return true } catch { return false }
}

async function caCommand (args: string[], io: CertIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { out: { type: 'string' }, name: { type: 'string' }, days: { type: 'string' }, force: { type: 'boolean' } },
    strict: true,
  })
  if (values.out === undefined) throw new UsageError('cert ca needs --out DIR')
  const files = [join(values.out, 'ca.pem'), join(values.out, 'ca.key')]
  if (values.force !== true) {
    for (const f of files) {
      if (await exists(f)) {
        io.stderr.write(`edge-proxy cert: ${f} exists; not overwriting a CA (every certificate it signed would stop being trusted). Use --force.\n`)
        return 1
      }
    }
  }
  const ca = await createCa({ days: days(values.days, 3650), ...(values.name === undefined ? {} : { commonName: values.name }) })
  const written = await writePair(values.out, 'ca', ca)
  io.stdout.write(`wrote ${written.cert}\nwrote ${written.key} (mode 0600)\n${summary(ca.cert)}`)
  return 0
}

function checkName (n: string): string {
  if (isIP(n) !== 0) return n
  const norm = normalizeServerName(n)
  if (norm === undefined || (norm.includes('*') && !/^\*\.[^*]+\.[^*]+$/.test(norm))) {
    throw new UsageError(`--name "${n}" is not a DNS name, a "*.example.com" wildcard or an IP address`)
  }
  return norm
}

async function issueCommand (args: string[], io: CertIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { ca: { type: 'string' }, name: { type: 'string', multiple: true }, out: { type: 'string' }, days: { type: 'string' } },
    strict: true,
  })
  if (values.ca === undefined) throw new UsageError('cert issue needs --ca DIR (holding ca.pem and ca.key)')
  const names = (values.name ?? []).map(checkName)
  if (names.length === 0) throw new UsageError('cert issue needs at least one --name')
  const [caCert, caKey] = await Promise.all([readFile(join(values.ca, 'ca.pem'), 'utf8'), readFile(join(values.ca, 'ca.key'), 'utf8')])
  const leaf = await issueCertificate({ cert: caCert, key: caKey }, { names, days: days(values.days, 90) })
  // Re-issuing overwrites on purpose: that is how a certificate is renewed, and the SNI store picks it up.
  const written = await writePair(values.out ?? values.ca, fileStemFor(names[0] as string), leaf)
  io.stdout.write(`wrote ${written.cert}\nwrote ${written.key} (mode 0600)\n${summary(leaf.cert)}`)
  return 0
}

/** Every PEM CERTIFICATE block in a file (a chain file holds several). */
export function splitPemCertificates (text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

function summary (pem: string, now = Date.now()): string {
  const info = describeCertificate(pem)
  const left = Math.floor((info.notAfter.getTime() - now) / DAY)
  const names = [...info.dnsNames.map(n => `DNS:${n}`), ...info.ipAddresses.map(ip => `IP:${ip}`)]
  const state = now > info.notAfter.getTime() ? 'EXPIRED' : now < info.notBefore.getTime() ? 'NOT YET VALID' : `${left} days left`
  return [
    `  subject:     ${info.subject}`,
    `  names:       ${names.length > 0 ? names.join(', ') : '(none)'}`,
    `  issuer:      ${info.issuer}${info.issuer === info.subject ? ' (self-signed)' : ''}`,
    `  valid:       ${info.notBefore.toISOString()} .. ${info.notAfter.toISOString()} (${state})`,
    `  ca:          ${info.isCa ? 'yes' : 'no'}`,
    `  serial:      ${info.serialNumber}`,
    `  sha256:      ${info.fingerprint256}`,
    '',
  ].join('\n')
}

async function inspectCommand (args: string[], io: CertIo): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, strict: true, allowPositionals: true })
  if (positionals.length !== 1) throw new UsageError('cert inspect needs exactly one FILE')
  const file = positionals[0] as string
  const blocks = splitPemCertificates(await readFile(file, 'utf8'))
  if (blocks.length === 0) { io.stderr.write(`edge-proxy cert: ${file} holds no PEM certificate\n`); return 1 }
  blocks.forEach((pem, i) => {
    io.stdout.write(`${file}${blocks.length > 1 ? ` [${i}]` : ''}:\n${summary(pem)}`)
  })
  return 0
}

/** Runs `cert <sub> ...`; argv excludes "cert" itself. */
export async function runCertCommand (argv: string[], io: CertIo = process): Promise<number> {
  const [sub, ...rest] = argv
  try {
    switch (sub) {
      case 'ca': return await caCommand(rest, io)
      case 'issue': return await issueCommand(rest, io)
      case 'inspect': return await inspectCommand(rest, io)
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(CERT_HELP)
        return sub === undefined ? 2 : 0
      default:
        throw new UsageError(`unknown cert command "${sub}"`)
    }
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      io.stderr.write(`edge-proxy cert: ${(err as Error).message}\n\n${CERT_HELP}`)
      return 2
    }
    io.stderr.write(`edge-proxy cert: ${(err as Error).message}\n`)
    return 1
  }
}
