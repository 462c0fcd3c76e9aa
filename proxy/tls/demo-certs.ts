// A CA and a leaf made in memory in one call (tests, demos), and the on-disk variant `npm start` uses: made once
// into .demo-certs/ and reused while still valid, so a browser or curl told to trust the CA keeps trusting it.
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createCa, issueCertificate, writeFileAtomic, writePair, type CertKeyPair } from './certs.js'

export interface LocalPki {
  readonly ca: CertKeyPair
  readonly leaf: CertKeyPair
}

/** A fresh CA and one leaf for `names`, nothing written. */
export async function createLocalPki (names: readonly string[], options: { days?: number, caName?: string } = {}): Promise<LocalPki> {
  const ca = await createCa(options.caName === undefined ? {} : { commonName: options.caName })
  const leaf = await issueCertificate(ca, options.days === undefined ? { names } : { names, days: options.days })
  return { ca, leaf }
}

export interface DemoCertificates extends LocalPki {
  readonly files: { readonly ca: string, readonly cert: string, readonly key: string }
  /** True when this call made new files. */
  readonly created: boolean
}

export const DEMO_NAMES: readonly string[] = ['localhost', '127.0.0.1', '::1']
const RENEW_BEFORE_MS = 86_400_000

/**
 * Returns the demo CA and leaf from `dir`, making them first if missing, unreadable, mismatched, or expiring
 * within a day. The CA key is not kept: a new leaf means a new CA, which is fine for a demo.
 */
export async function ensureDemoCertificates (dir = '.demo-certs', names: readonly string[] = DEMO_NAMES): Promise<DemoCertificates> {
  const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'localhost.pem'), key: join(dir, 'localhost.key') }
  try {
    const [caPem, certPem, keyPem] = await Promise.all([readFile(files.ca, 'utf8'), readFile(files.cert, 'utf8'), readFile(files.key, 'utf8')])
    const leaf = new X509Certificate(certPem)
    const ca = new X509Certificate(caPem)
    const fresh = new Date(leaf.validTo).getTime() - Date.now() > RENEW_BEFORE_MS
    if (fresh && leaf.checkIssued(ca) && leaf.verify(ca.publicKey) && leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      return { ca: { cert: caPem, key: '' }, leaf: { cert: certPem, key: keyPem }, files, created: false }
    }
  } catch {
    // Missing or broken: make new ones below.
  }
  const pki = await createLocalPki(names, { days: 365, caName: 'edge-proxy demo CA' })
  await writePair(dir, 'localhost', pki.leaf)
  await writeFileAtomic(files.ca, pki.ca.cert)
  return { ca: { cert: pki.ca.cert, key: '' }, leaf: pki.leaf, files, created: true }
}
