// Shared helpers for the tls-* tests: a temp directory with a CA, pairs written by our own tooling, and a TLS
// client that reports which certificate the server presented.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import type { TestContext } from 'node:test'
import { createCa, fileStemFor, issueCertificate, writePair, type CertKeyPair, type LeafOptions } from '../proxy/tls/certs.js'

export interface Pki {
  readonly dir: string
  readonly ca: CertKeyPair
  /** Issues a leaf for names and writes <first name>.pem/.key into dir; returns the paths and PEMs. */
  issue (names: string[], options?: Partial<LeafOptions>): Promise<{ cert: string, key: string, pem: CertKeyPair }>
}

export async function tempDir (t: TestContext, prefix = 'edge-tls-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export async function makePki (t: TestContext, dir?: string): Promise<Pki> {
  const d = dir ?? await tempDir(t)
  const ca = await createCa({ commonName: 'edge-proxy test CA' })
  return {
    dir: d,
    ca,
    async issue (names, options = {}) {
      const pem = await issueCertificate(ca, { ...options, names })
      const files = await writePair(d, fileStemFor(names[0] as string), pem)
      return { ...files, pem }
    },
  }
}

export interface Handshake {
  readonly socket: tls.TLSSocket
  readonly names: string[]
  readonly fingerprint: string
  readonly authorized: boolean
}

/** Connects with `servername` (none when undefined), trusting `ca`; resolves after the handshake. */
export async function handshake (port: number, servername: string | undefined, ca: string, extra: tls.ConnectionOptions = {}): Promise<Handshake> {
  return await new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca,
      ...(servername === undefined ? {} : { servername }),
      // Chain trust is still checked; the name check is the test's own assertion.
      checkServerIdentity: () => undefined,
      ...extra,
    }, () => {
      const peer = socket.getPeerCertificate()
      const names = (peer.subjectaltname ?? '').split(', ').filter(s => s.startsWith('DNS:')).map(s => s.slice(4))
      resolve({ socket, names, fingerprint: peer.fingerprint256, authorized: socket.authorized })
    })
    socket.once('error', reject)
  })
}

export function onceEvent<T> (subscribe: (fn: (v: T) => void) => void, pred: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('timed out waiting for event')) }, timeoutMs)
    subscribe(v => { if (pred(v)) { clearTimeout(timer); resolve(v) } })
  })
}
