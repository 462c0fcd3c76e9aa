// Certificate tooling: a local CA, leaf certificates with SANs, and a parsed view of any certificate.
//
// Library choice. Keys and signatures come from node:crypto (native, async keygen, ECDSA P-256: small and cheap
// to handshake with). node-forge only encodes the X.509 structure (DN, validity, extensions) with its ASN.1 DER
// writer: it is synchronous, needs nothing else, and we sign its TBSCertificate ourselves, because forge's own
// signer only knows RSA. @peculiar/x509 would do the whole job with WebCrypto, but v2 imports tsyringe, which
// throws at import time unless a global Reflect-metadata polyfill is loaded first, and none is installed.
// Parsing goes through node:crypto's X509Certificate (OpenSSL), the same parser the TLS stack uses.
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { isIP } from 'node:net'
import { promisify } from 'node:util'
import forge from 'node-forge'

const asn1 = forge.asn1
const generateKeyPairAsync = promisify(generateKeyPair)
// Exported by forge at runtime but missing from @types/node-forge.
const getTBSCertificate = (forge.pki as unknown as { getTBSCertificate (c: forge.pki.Certificate): forge.asn1.Asn1 }).getTBSCertificate
const DAY = 86_400_000

/** A certificate and its private key, both PEM. */
export interface CertKeyPair { readonly cert: string, readonly key: string }

export interface CertificateInfo {
  readonly subject: string
  readonly commonName: string | undefined
  readonly dnsNames: readonly string[]
  readonly ipAddresses: readonly string[]
  readonly issuer: string
  readonly notBefore: Date
  readonly notAfter: Date
  readonly serialNumber: string
  readonly fingerprint256: string
  readonly isCa: boolean
}

/** Parses the first certificate of a PEM (a chain file's leaf comes first). Throws on anything unparsable. */
export function describeCertificate (pem: string | Buffer): CertificateInfo {
  const x = new X509Certificate(pem)
  const san = parseSubjectAltName(x.subjectAltName)
  // A leaf whose first name is over 64 characters has no CN (its names are in the SAN): an empty subject, which
  // node reports as undefined.
  const subject = (x.subject as string | undefined) ?? ''
  const cn = /^CN=(.*)$/m.exec(subject)?.[1]
  return {
    subject: subject.replace(/\n/g, ', '),
    commonName: cn,
    dnsNames: san.dns,
    ipAddresses: san.ip,
    issuer: ((x.issuer as string | undefined) ?? '').replace(/\n/g, ', '),
    notBefore: new Date(x.validFrom),
    notAfter: new Date(x.validTo),
    serialNumber: x.serialNumber,
    fingerprint256: x.fingerprint256,
    isCa: x.ca,
  }
}

/** Node renders SANs as `DNS:a, DNS:b, IP Address:1.2.3.4`, JSON-quoting values that contain separators. */
function parseSubjectAltName (s: string | undefined): { dns: string[], ip: string[] } {
  const dns: string[] = []
  const ip: string[] = []
  if (s === undefined) return { dns, ip }
  const re = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g
  for (let m = re.exec(s); m !== null && m[0].length > 0; m = re.exec(s)) {
    const kind = m[1] as string
    let value = m[2] as string
    if (value.startsWith('"')) { try { value = JSON.parse(value) as string } catch { continue } }
    if (kind === 'DNS') dns.push(value.toLowerCase())
    else if (kind === 'IP Address') ip.push(value)
  }
  return { dns, ip }
}

/** The file stem for a leaf named by its first name: "*.example.com" → "_wildcard.example.com". */
export function fileStemFor (name: string): string {
  return name.toLowerCase().replace(/\*/g, '_wildcard').replace(/[^a-z0-9._-]/g, '_')
}

async function newKey (): Promise<{ privateKey: KeyObject, publicKey: KeyObject }> {
  return await generateKeyPairAsync('ec', { namedCurve: 'prime256v1' })
}

function keyPem (key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 §4.2.1.2 method 1), as a binary string for forge. */
function keyIdentifier (publicKey: KeyObject): string {
  const spki = asn1.fromDer(forge.util.createBuffer((publicKey.export({ type: 'spki', format: 'der' })).toString('binary')))
  const bits = (spki.value as forge.asn1.Asn1[])[1]?.value as string
  return createHash('sha1').update(Buffer.from(bits.slice(1), 'binary')).digest('binary')
}

/** Signature algorithm for the issuer's key: ECDSA (P-256/P-384) or RSA PKCS#1 v1.5, both with SHA-2. */
function signatureAlgorithm (key: KeyObject): { oid: string, hash: string, nullParams: boolean } {
  if (key.asymmetricKeyType === 'ec') {
    return key.asymmetricKeyDetails?.namedCurve === 'secp384r1'
      ? { oid: '1.2.840.10045.4.3.3', hash: 'sha384', nullParams: false }
      : { oid: '1.2.840.10045.4.3.2', hash: 'sha256', nullParams: false }
  }
  if (key.asymmetricKeyType === 'rsa') return { oid: '1.2.840.113549.1.1.11', hash: 'sha256', nullParams: true }
  throw new Error(`unsupported issuer key type "${key.asymmetricKeyType ?? 'unknown'}"`)
}

function algorithmIdentifier (alg: { oid: string, nullParams: boolean }): forge.asn1.Asn1 {
  const parts = [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(alg.oid).getBytes())]
  if (alg.nullParams) parts.push(asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ''))
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, parts)
}

interface TbsInput {
  subjectCn: string | undefined
  /** The issuer's subject Name, DER-exact, or undefined for self-signed. */
  issuerName: forge.asn1.Asn1 | undefined
  publicKey: KeyObject
  signingKey: KeyObject
  days: number
  notBefore?: Date | undefined
  notAfter?: Date | undefined
  extensions: object[]
}

// forge builds the TBSCertificate; we swap in the real SubjectPublicKeyInfo and algorithm, then sign natively.
function buildCertificate (input: TbsInput): string {
  const cert = forge.pki.createCertificate()
  // Positive 128-bit serial: the top bit cleared keeps the DER INTEGER non-negative.
  const serial = randomBytes(16)
  serial[0] = ((serial[0] as number) & 0x7f) | 0x01
  cert.serialNumber = serial.toString('hex')
  const now = Date.now()
  cert.validity.notBefore = input.notBefore ?? new Date(now - 5 * 60_000) // tolerate some clock skew
  cert.validity.notAfter = input.notAfter ?? new Date(now + input.days * DAY)
  const attrs = input.subjectCn === undefined ? [] : [{ shortName: 'CN', value: input.subjectCn }]
  cert.setSubject(attrs)
  cert.setIssuer(attrs)
  cert.setExtensions(input.extensions)
  // Placeholder so forge can encode; replaced below. forge's own key encoding handles RSA only.
  cert.publicKey = forge.pki.setRsaPublicKey(new forge.jsbn.BigInteger('3'), new forge.jsbn.BigInteger('3'))
  const alg = signatureAlgorithm(input.signingKey)
  cert.siginfo.algorithmOid = alg.oid
  const tbs = getTBSCertificate(cert)
  const fields = tbs.value as forge.asn1.Asn1[]
  fields[2] = algorithmIdentifier(alg)
  if (input.issuerName !== undefined) fields[3] = input.issuerName
  fields[6] = asn1.fromDer(forge.util.createBuffer(input.publicKey.export({ type: 'spki', format: 'der' }).toString('binary')))
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary')
  // node:crypto emits DER ECDSA-Sig-Value for EC keys, exactly what X.509 carries.
  const signature = sign(alg.hash, tbsDer, input.signingKey)
  const full = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
    tbs,
    algorithmIdentifier(alg),
    asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString('binary')}`),
  ])
  const der = asn1.toDer(full).getBytes()
  return forge.pem.encode({ type: 'CERTIFICATE', body: der }).replace(/\r\n/g, '\n')
}

function rawExtension (oid: string, value: forge.asn1.Asn1): object {
  return { id: oid, critical: false, value }
}

function subjectKeyId (publicKey: KeyObject): object {
  return rawExtension('2.5.29.14', asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, keyIdentifier(publicKey)))
}

export interface CaOptions { readonly commonName?: string, readonly days?: number }

/** A new self-signed CA (P-256), allowed to sign leaves only (pathLen 0). */
export async function createCa (options: CaOptions = {}): Promise<CertKeyPair> {
  const { privateKey, publicKey } = await newKey()
  const cert = buildCertificate({
    subjectCn: options.commonName ?? 'edge-proxy local CA',
    issuerName: undefined,
    publicKey,
    signingKey: privateKey,
    days: options.days ?? 3650,
    extensions: [
      { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
      subjectKeyId(publicKey),
    ],
  })
  return { cert, key: keyPem(privateKey) }
}

export interface LeafOptions {
  readonly names: readonly string[]
  readonly days?: number
  /** Also valid as a TLS client certificate (mTLS). */
  readonly clientAuth?: boolean
  /** Overrides for tests of expiry handling. */
  readonly notBefore?: Date
  readonly notAfter?: Date
}

/** A server certificate for `names` (DNS names, "*.x" wildcards, or IP addresses), signed by `ca`. */
export async function issueCertificate (ca: CertKeyPair, options: LeafOptions): Promise<CertKeyPair> {
  if (options.names.length === 0) throw new Error('at least one name is required')
  const caKey = createPrivateKey(ca.key)
  const caCert = new X509Certificate(ca.cert)
  if (!caCert.ca) throw new Error('the CA certificate is not a CA (basicConstraints cA is false)')
  if (!caCert.checkPrivateKey(caKey)) throw new Error('the CA key does not match the CA certificate')
  const caTbs = (asn1.fromDer(forge.util.createBuffer(caCert.raw.toString('binary'))).value as forge.asn1.Asn1[])[0]
  const caFields = caTbs?.value as forge.asn1.Asn1[]
  // Subject sits at index 5 in a v3 TBSCertificate (after the [0] version tag).
  const issuerName = caFields[caFields[0]?.tagClass === asn1.Class.CONTEXT_SPECIFIC ? 5 : 4]
  const altNames = options.names.map(n => isIP(n) !== 0 ? { type: 7, ip: n } : { type: 2, value: n.toLowerCase() })
  const first = options.names[0] as string
  const { privateKey, publicKey } = await newKey()
  const cert = buildCertificate({
    subjectCn: first.length <= 64 ? first.toLowerCase() : undefined,
    issuerName,
    publicKey,
    signingKey: caKey,
    days: options.days ?? 90,
    notBefore: options.notBefore,
    notAfter: options.notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true, ...(options.clientAuth === true ? { clientAuth: true } : {}) },
      { name: 'subjectAltName', altNames },
      subjectKeyId(publicKey),
      rawExtension('2.5.29.35', asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
        asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, false, keyIdentifier(createPublicKey(caKey))),
      ])),
    ],
  })
  return { cert, key: keyPem(privateKey) }
}

/** Writes via a temp file and rename, so readers (and the SNI store's watcher) never see half a file. */
export async function writeFileAtomic (file: string, data: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(file), { recursive: true })
  const tmp = join(dirname(file), `.${randomBytes(6).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', mode)
  try {
    await fh.writeFile(data)
    await fh.sync()
  } finally {
    await fh.close()
  }
  try {
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw err
  }
}

/** Writes `<stem>.pem` (0644) and `<stem>.key` (0600); the key goes first so a watcher sees a matching pair last. */
export async function writePair (dir: string, stem: string, pair: CertKeyPair): Promise<{ cert: string, key: string }> {
  const files = { cert: join(dir, `${stem}.pem`), key: join(dir, `${stem}.key`) }
  await writeFileAtomic(files.key, pair.key, 0o600)
  await writeFileAtomic(files.cert, pair.cert, 0o644)
  return files
}
