// OCSP (RFC 6960) for stapling: the responder URL a certificate names, the request for one certificate, and the
// checks a response must pass before the edge hands it to clients (a responder over plain HTTP could be anyone).
//
// DER goes through node-forge's ASN.1 reader and writer, already used for certificates (certs.ts): no OCSP
// package is installed (@peculiar/asn1-ocsp would be the typed one). Certificates and signatures are checked by
// node:crypto. A response is only trusted when re-encoding it gives back the same bytes, so the signed part that
// is verified is exactly the part that was received.
import { X509Certificate, createHash, verify } from 'node:crypto'
import forge from 'node-forge'

const asn1 = forge.asn1
type Asn1 = forge.asn1.Asn1

const OID_SHA1 = '1.3.14.3.2.26'
const OID_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1'
const OID_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9'
/** CertID hash algorithms a responder may answer with. */
const HASHES: Record<string, string> = {
  [OID_SHA1]: 'sha1', '2.16.840.1.101.3.4.2.1': 'sha256', '2.16.840.1.101.3.4.2.2': 'sha384', '2.16.840.1.101.3.4.2.3': 'sha512',
}
/** Signature algorithms → the digest node:crypto's verify() takes (null: the key type says, as for Ed25519). */
const SIGNATURES: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256', '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512', '1.2.840.10045.4.1': 'sha1',
  '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512', '1.2.840.113549.1.1.5': 'sha1',
  '1.3.101.112': null,
}
const STATUSES = ['good', 'revoked', 'unknown'] as const

export type CertStatus = typeof STATUSES[number]

export interface OcspResponse {
  readonly status: CertStatus
  readonly thisUpdate: Date
  /** Absent when the responder says newer information may come at any time. */
  readonly nextUpdate: Date | undefined
}

/** The first OCSP responder URL of the certificate's Authority Information Access, if any. */
export function ocspUrlOf (cert: X509Certificate): string | undefined {
  for (const line of (cert.infoAccess ?? '').split('\n')) {
    const m = /^OCSP - URI:(\S+)$/.exec(line.trim())
    if (m?.[1] !== undefined) return m[1]
  }
  return undefined
}

/** Every certificate of a PEM file, in order (a chain file: the leaf, then its issuers). */
export function pemCertificates (pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(b => new X509Certificate(b))
}

/** The certificate in `chain` that issued `leaf` (name and signature), or undefined. */
export function issuerIn (leaf: X509Certificate, chain: readonly X509Certificate[]): X509Certificate | undefined {
  return chain.find(c => c !== leaf && leaf.checkIssued(c) && leaf.verify(c.publicKey))
}

function parse (der: Buffer): Asn1 {
  return asn1.fromDer(forge.util.createBuffer(der.toString('binary')), { strict: true, parseAllBytes: true, decodeBitStrings: false } as unknown as boolean)
}
function toDer (node: Asn1): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary')
}
const U = asn1.Class.UNIVERSAL
const C = asn1.Class.CONTEXT_SPECIFIC
const T = asn1.Type

/** The children of a constructed node of this tag; throws naming `what` on anything else. */
function kids (node: Asn1 | undefined, what: string, type: number = T.SEQUENCE, cls: forge.asn1.Class = U): Asn1[] {
  if (node?.type !== type || node.tagClass !== cls || !Array.isArray(node.value)) throw new Error(`malformed OCSP response (${what})`)
  return node.value
}
/** The contents of a primitive node of this tag. */
function bytes (node: Asn1 | undefined, what: string, type: number, cls: forge.asn1.Class = U): string {
  if (node?.type !== type || node.tagClass !== cls || typeof node.value !== 'string') throw new Error(`malformed OCSP response (${what})`)
  return node.value
}
function seq (children: Asn1[]): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, children)
}
function prim (type: number, value: string): Asn1 {
  return asn1.create(asn1.Class.UNIVERSAL, type, false, value)
}

/** The TBSCertificate fields of a certificate (the [0] version tag, when present, shifts them by one). */
function tbsFields (cert: X509Certificate): Asn1[] {
  const fields = kids(kids(parse(cert.raw), 'certificate')[0], 'tbsCertificate')
  return fields[0]?.tagClass === C ? fields.slice(1) : fields
}

/** What identifies a certificate to its responder: the issuer's name and key hashed, and the serial. */
interface CertId { readonly serial: string, hashes (alg: string): { name: string, key: string } }

function certIdOf (leaf: X509Certificate, issuer: X509Certificate): CertId {
  const serial = bytes(tbsFields(leaf)[0], 'serial', T.INTEGER)
  const fields = tbsFields(issuer)
  const nameDer = toDer(fields[4] as Asn1) // the issuer's subject, DER-exact
  // subjectPublicKey's BIT STRING contents without the unused-bits byte (RFC 6960 4.1.1).
  const keyBits = Buffer.from(bytes(kids(fields[5], 'spki')[1], 'spki bits', T.BITSTRING), 'binary').subarray(1)
  return {
    serial,
    hashes: alg => ({ name: createHash(alg).update(nameDer).digest('binary'), key: createHash(alg).update(keyBits).digest('binary') }),
  }
}

/** An OCSPRequest (DER) for `leaf`, SHA-1 CertID as responders expect, no nonce (a stapled answer is shared). */
export function ocspRequest (leaf: X509Certificate, issuer: X509Certificate): Buffer {
  const id = certIdOf(leaf, issuer)
  const h = id.hashes('sha1')
  const certId = seq([
    seq([prim(T.OID, asn1.oidToDer(OID_SHA1).getBytes()), prim(T.NULL, '')]),
    prim(T.OCTETSTRING, h.name),
    prim(T.OCTETSTRING, h.key),
    prim(T.INTEGER, id.serial),
  ])
  return toDer(seq([seq([seq([seq([certId])])])]))
}

/** The certificates that may sign for `issuer`: itself, or one it issued for OCSP signing (RFC 6960 4.2.2.2). */
function signers (issuer: X509Certificate, included: readonly X509Certificate[]): X509Certificate[] {
  return [issuer, ...included.filter(c => c.checkIssued(issuer) && c.verify(issuer.publicKey) && c.keyUsage?.includes(OID_OCSP_SIGNING) === true)]
}

/**
 * Checks a DER OCSPResponse for `leaf` and says what it states. Throws with the reason when it is not a
 * successful, DER-exact, correctly signed answer about this very certificate, or is not current at `now`.
 */
export function checkOcspResponse (der: Buffer, leaf: X509Certificate, issuer: X509Certificate, now = Date.now()): OcspResponse {
  let top: Asn1
  try { top = parse(der) } catch (err) { throw new Error(`not DER (${(err as Error).message})`) }
  if (!toDer(top).equals(der)) throw new Error('not DER-exact')
  const [statusNode, bytesTag] = kids(top, 'OCSPResponse')
  const code = bytes(statusNode, 'responseStatus', T.ENUMERATED).charCodeAt(0)
  if (code !== 0) throw new Error(`the responder answered status ${code} (${['', 'malformedRequest', 'internalError', 'tryLater', '', 'sigRequired', 'unauthorized'][code] ?? 'unknown'})`)
  const [typeNode, octets] = kids(kids(bytesTag, 'responseBytes', 0, C)[0], 'ResponseBytes')
  if (asn1.derToOid(bytes(typeNode, 'responseType', T.OID)) !== OID_OCSP_BASIC) throw new Error('not a basic OCSP response')
  const basic = kids(parse(Buffer.from(bytes(octets, 'response', T.OCTETSTRING), 'binary')), 'BasicOCSPResponse')
  const [tbs, sigAlg, sigBits, certsTag] = basic
  const algOid = asn1.derToOid(bytes(kids(sigAlg, 'signatureAlgorithm')[0], 'signature OID', T.OID))
  const digest = SIGNATURES[algOid]
  if (digest === undefined) throw new Error(`unsupported signature algorithm ${algOid}`)
  const sig = bytes(sigBits, 'signature', T.BITSTRING)
  if (sig.charCodeAt(0) !== 0) throw new Error('malformed OCSP response (signature padding)')
  const signature = Buffer.from(sig, 'binary').subarray(1)
  const signed = toDer(tbs as Asn1)
  const included = certsTag === undefined ? [] : kids(kids(certsTag, 'certs', 0, C)[0], 'certs').map(c => new X509Certificate(toDer(c)))
  if (!signers(issuer, included).some(s => verify(digest, signed, s.publicKey, signature))) {
    throw new Error('the signature is not the issuer\'s nor a responder\'s it authorised')
  }
  // ResponseData: [0] version (optional), responderID, producedAt, responses, [1] extensions (optional).
  let data = kids(tbs, 'ResponseData')
  if (data[0]?.tagClass === C && data[0].type === 0) data = data.slice(1)
  const id = certIdOf(leaf, issuer)
  for (const single of kids(data[2], 'responses')) {
    const [certId, status, thisUpdate, ...rest] = kids(single, 'SingleResponse')
    const [alg, nameHash, keyHash, serial] = kids(certId, 'CertID')
    const hash = HASHES[asn1.derToOid(bytes(kids(alg, 'hashAlgorithm')[0], 'hash OID', T.OID))]
    if (hash === undefined || bytes(serial, 'serial', T.INTEGER) !== id.serial) continue
    const h = id.hashes(hash)
    if (bytes(nameHash, 'issuerNameHash', T.OCTETSTRING) !== h.name || bytes(keyHash, 'issuerKeyHash', T.OCTETSTRING) !== h.key) continue
    const state = status?.tagClass === C ? (STATUSES as readonly CertStatus[])[status.type] : undefined
    if (state === undefined) throw new Error('malformed OCSP response (certStatus)')
    const from = asn1.generalizedTimeToDate(bytes(thisUpdate, 'thisUpdate', T.GENERALIZEDTIME))
    const next = rest.find(n => n.tagClass === C && n.type === 0)
    const until = next === undefined ? undefined : asn1.generalizedTimeToDate(bytes(kids(next, 'nextUpdate', 0, C)[0], 'nextUpdate', T.GENERALIZEDTIME))
    if (from.getTime() > now + 5 * 60_000) throw new Error(`thisUpdate ${from.toISOString()} is in the future`)
    if (until !== undefined && until.getTime() <= now) throw new Error(`expired at ${until.toISOString()} (nextUpdate)`)
    return { status: state, thisUpdate: from, nextUpdate: until }
  }
  throw new Error('no answer about this certificate in the response')
}
