// The certificate store for TLS termination: one SecureContext per certificate, picked by SNI (exact name, then
// one-label wildcard, then the default), reloaded from disk without touching open connections. A replacement that
// fails to parse or does not match its key is refused and the previous certificate stays in service. With `ocsp`,
// the certificates it serves get OCSP answers stapled (stapler.ts).
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { basename, dirname, resolve } from 'node:path'
import tls, { type SecureContext } from 'node:tls'
import { EdgeError } from '../../config/errors.js'
import { describeCertificate } from './certs.js'
import { normalizeServerName } from '../../config/names.js'
import { NameTable } from './names.js'
import { FileWatcher } from './watch.js'
import { scanDirectory, stampOf, type CertificateFiles } from './cert-files.js'
import { OcspStapler, type StapleEvent } from './stapler.js'

export type { CertificateFiles } from './cert-files.js'

export interface CertStoreOptions {
  /** Explicit pairs, in precedence order (the first certificate claiming a name serves it). */
  readonly certificates?: readonly CertificateFiles[]
  /** Or a directory: every *.pem / *.crt with a key beside it (NAME.key, NAME-key.pem or NAME.key.pem). */
  readonly directory?: string
  /** Certificate file path or server name of the certificate for clients with no or unknown SNI. Default: first. */
  readonly defaultCertificate?: string
  readonly minVersion?: tls.SecureVersion
  /** PEM of the CA(s) client certificates must chain to; turns on mTLS in serverOptions(). */
  readonly clientCa?: string | Buffer
  /** Extra SecureContext options applied to every certificate (ciphers, ecdhCurve, ...). */
  readonly context?: tls.SecureContextOptions
  /** Watch the files and reload on change (default true). */
  readonly watch?: boolean
  readonly pollIntervalMs?: number
  readonly debounceMs?: number
  readonly expiryWarningDays?: number
  /** Staple OCSP answers for certificates that name a responder and carry their issuer (default false). */
  readonly ocsp?: boolean
  readonly onEvent?: (event: CertStoreEvent) => void
}

export type CertStoreEvent =
  | { readonly type: 'loaded', readonly cert: string, readonly names: readonly string[], readonly notAfter: Date }
  | { readonly type: 'rejected', readonly cert: string, readonly reason: string, readonly keptPrevious: boolean }
  | { readonly type: 'skipped', readonly cert: string, readonly reason: string }
  | { readonly type: 'removed', readonly cert: string }
  | { readonly type: 'expiring', readonly cert: string, readonly names: readonly string[], readonly notAfter: Date, readonly daysLeft: number }
  | { readonly type: 'expired', readonly cert: string, readonly names: readonly string[], readonly notAfter: Date }
  | StapleEvent

export interface CertificateStatus {
  readonly cert: string
  readonly names: readonly string[]
  readonly notAfter: Date
  readonly daysLeft: number
  readonly isDefault: boolean
  readonly expiresSoon: boolean
}

interface Loaded {
  readonly files: CertificateFiles
  readonly names: readonly string[]
  readonly notAfter: Date
  readonly certPem: string
  readonly keyPem: string
  readonly context: SecureContext
  /** mtime/size/inode of both files when read; equal stamps skip re-parsing. */
  readonly stamp: string
}

const DAY = 86_400_000

function checkOptions (options: CertStoreOptions): void {
  if ((options.certificates === undefined) === (options.directory === undefined)) {
    throw new EdgeError('EP_ERR_TLS_CERT', 'give either certificates or directory')
  }
}

export class CertStore {
  #opts: CertStoreOptions
  #entries: Loaded[] = []
  #table = new NameTable<Loaded>()
  #default: Loaded | undefined
  /** Stamps of files that failed, so a bad file is reported once, not on every poll. */
  readonly #failed = new Map<string, string>()
  readonly #servers = new Set<tls.Server>()
  #watcher: FileWatcher | undefined
  /** Loads run one at a time; a reload asked for while one waits joins the waiting one. */
  #queue: Promise<unknown> = Promise.resolve()
  #pendingReload: Promise<void> | undefined
  #stapler: OcspStapler | undefined
  #closed = false

  constructor (options: CertStoreOptions) {
    checkOptions(options)
    this.#opts = options
    this.#setStapling()
  }

  #setStapling (): void {
    if (this.#opts.ocsp === true && this.#stapler === undefined && !this.#closed) {
      this.#stapler = new OcspStapler({ onEvent: e => { this.#emit(e) } })
    } else if (this.#opts.ocsp !== true && this.#stapler !== undefined) {
      this.#stapler.close()
      this.#stapler = undefined
    }
  }

  /** Loads everything; throws if nothing loads, or if an explicitly listed pair is bad. */
  async start (): Promise<void> {
    await this.#exclusive(() => this.#initialLoad())
    this.#watch()
  }

  /**
   * Applies new options (a config reload) to this same store, so servers already holding its SNICallback follow.
   * Every context is rebuilt (minVersion or clientCa may differ). If the new set fails, nothing changes.
   */
  async reconfigure (options: CertStoreOptions): Promise<void> {
    checkOptions(options)
    await this.#exclusive(async () => {
      const saved = { opts: this.#opts, entries: this.#entries, failed: [...this.#failed] }
      this.#opts = options
      this.#setStapling()
      this.#entries = []
      this.#failed.clear()
      await this.#initialLoad().catch((err: unknown) => {
        this.#opts = saved.opts
        this.#setStapling()
        for (const [k, v] of saved.failed) this.#failed.set(k, v)
        this.#swap(saved.entries)
        throw err
      })
    })
    this.#watch()
  }

  async #initialLoad (): Promise<void> {
    const problems: string[] = []
    await this.#load(problems)
    if (this.#entries.length === 0 || (this.#opts.certificates !== undefined && problems.length > 0)) {
      throw new EdgeError('EP_ERR_TLS_CERT', problems.length > 0 ? problems.join('; ') : 'no certificate found')
    }
  }

  #exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn)
    this.#queue = run.catch(() => {})
    return run
  }

  #watch (): void {
    this.#watcher?.close()
    this.#watcher = undefined
    if (this.#opts.watch !== false && !this.#closed) {
      const files = this.#opts.certificates ?? []
      this.#watcher = new FileWatcher({
        dirs: this.#opts.directory !== undefined ? [this.#opts.directory] : files.flatMap(f => [dirname(f.cert), dirname(f.key)]),
        names: this.#opts.directory !== undefined ? undefined : new Set(files.flatMap(f => [basename(f.cert), basename(f.key)])),
        debounceMs: this.#opts.debounceMs ?? 200,
        pollMs: this.#opts.pollIntervalMs ?? 10_000,
        onChange: () => { this.reload().catch(() => {}) },
      })
      this.#watcher.start()
    }
  }

  /** Re-reads the files (SIGHUP). Never throws: problems are reported as events and the old certs stay. */
  async reload (): Promise<void> {
    if (this.#closed) return
    this.#pendingReload ??= this.#exclusive(async () => {
      this.#pendingReload = undefined
      if (!this.#closed) await this.#load([])
    })
    await this.#pendingReload
  }

  /** SNICallback for tls.createServer / https.createServer. One function per store, not per connection. */
  readonly SNICallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    cb(null, this.contextFor(servername))
  }

  contextFor (servername: string | undefined): SecureContext | undefined {
    return (this.#table.lookup(normalizeServerName(servername)) ?? this.#default)?.context
  }

  get defaultContext (): SecureContext | undefined { return this.#default?.context }

  /** Options for tls/https.createServer: default certificate, SNI, minimum version, ALPN, and mTLS if clientCa. */
  serverOptions (extra: { alpn?: readonly string[] } = {}): tls.TlsOptions {
    const d = this.#default
    return {
      ...this.#contextOptions(),
      ...(d === undefined ? {} : { cert: d.certPem, key: d.keyPem }),
      SNICallback: this.SNICallback,
      ...(extra.alpn === undefined ? {} : { ALPNProtocols: [...extra.alpn] }),
      ...(this.#opts.clientCa === undefined ? {} : { requestCert: true, rejectUnauthorized: true }),
    }
  }

  /**
   * Keeps `server`'s own context (used when the client sends no SNI) on the current default certificate, and
   * answers its clients' OCSP status requests from the stapler.
   */
  attach (server: tls.Server): void {
    this.#servers.add(server)
    server.on('OCSPRequest', this.#onOcspRequest)
    server.once('close', () => { this.#servers.delete(server) })
  }

  // Only for clients that send status_request; the answer is already in hand (or there is none).
  readonly #onOcspRequest = (cert: Buffer, _issuer: Buffer, cb: (err: Error | null, resp: Buffer | null) => void): void => {
    cb(null, this.#stapler?.staple(cert) ?? null)
  }

  certificates (now = Date.now()): CertificateStatus[] {
    const warnMs = (this.#opts.expiryWarningDays ?? 14) * DAY
    return this.#entries.map(e => ({
      cert: e.files.cert,
      names: e.names,
      notAfter: e.notAfter,
      daysLeft: Math.floor((e.notAfter.getTime() - now) / DAY),
      isDefault: e === this.#default,
      expiresSoon: e.notAfter.getTime() - now < warnMs,
    }))
  }

  close (): void {
    this.#closed = true
    this.#watcher?.close()
    this.#stapler?.close()
    this.#stapler = undefined
    this.#servers.clear()
  }

  #emit (event: CertStoreEvent): void {
    try { this.#opts.onEvent?.(event) } catch { /* a listener's failure is not the store's */ }
  }

  #contextOptions (): tls.SecureContextOptions {
    return {
      ...this.#opts.context,
      ...(this.#opts.minVersion === undefined ? {} : { minVersion: this.#opts.minVersion }),
      ...(this.#opts.clientCa === undefined ? {} : { ca: this.#opts.clientCa }),
    }
  }

  async #sources (): Promise<CertificateFiles[]> {
    if (this.#opts.certificates !== undefined) return this.#opts.certificates.map(f => ({ cert: resolve(f.cert), key: resolve(f.key) }))
    const { pairs, keyless } = await scanDirectory(this.#opts.directory as string)
    for (const cert of keyless) this.#skip(cert, 'no matching key file')
    return pairs
  }

  #skip (cert: string, reason: string): void {
    if (this.#failed.get(cert) === reason) return
    this.#failed.set(cert, reason)
    this.#emit({ type: 'skipped', cert, reason })
  }

  async #load (problems: string[]): Promise<void> {
    const previous = new Map(this.#entries.map(e => [e.files.cert, e]))
    const next: Loaded[] = []
    let sources: CertificateFiles[]
    try {
      sources = await this.#sources()
    } catch (err) {
      problems.push(`cannot list ${this.#opts.directory ?? ''}: ${(err as Error).message}`)
      return // keep everything as it is
    }
    for (const files of sources) {
      const old = previous.get(files.cert)
      let stamp = ''
      try { stamp = await stampOf(files) } catch { stamp = '' }
      if (old !== undefined && stamp !== '' && stamp === old.stamp) { next.push(old); continue }
      // A missing file is remembered as "" so it, too, is reported once.
      if (this.#failed.get(files.cert) === stamp) { if (old !== undefined) next.push(old); continue }
      try {
        const loaded = await this.#read(files, stamp)
        if (loaded === undefined) continue
        this.#failed.delete(files.cert)
        next.push(loaded)
        this.#emit({ type: 'loaded', cert: files.cert, names: loaded.names, notAfter: loaded.notAfter })
        this.#warnExpiry(loaded)
      } catch (err) {
        const reason = (err as Error).message
        problems.push(`${files.cert}: ${reason}`)
        this.#failed.set(files.cert, stamp)
        if (old !== undefined) next.push(old)
        this.#emit({ type: 'rejected', cert: files.cert, reason, keptPrevious: old !== undefined })
      }
    }
    for (const cert of previous.keys()) if (!next.some(e => e.files.cert === cert)) this.#emit({ type: 'removed', cert })
    if (next.length === 0) return // never swap to an empty store; keep serving what we had
    this.#swap(next)
  }

  /** Reads and checks one pair; throws with a reason a person can act on. undefined = a CA cert in a directory. */
  async #read (files: CertificateFiles, stamp: string): Promise<Loaded | undefined> {
    const [certPem, keyPem] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8')])
    let info
    try { info = describeCertificate(certPem) } catch (err) { throw new Error(`unparsable certificate (${(err as Error).message})`) }
    if (info.isCa && this.#opts.directory !== undefined) { this.#skip(files.cert, 'a CA certificate, not a server certificate'); return undefined }
    let key
    try { key = createPrivateKey(keyPem) } catch (err) { throw new Error(`unparsable key ${files.key} (${(err as Error).message})`) }
    if (!new X509Certificate(certPem).checkPrivateKey(key)) throw new Error(`key ${files.key} does not match the certificate`)
    const context = tls.createSecureContext({ ...this.#contextOptions(), cert: certPem, key: keyPem })
    const names = info.dnsNames.length > 0 ? info.dnsNames : [normalizeServerName(info.commonName)].filter(n => n !== undefined)
    return { files, names, notAfter: info.notAfter, certPem, keyPem, context, stamp }
  }

  #warnExpiry (e: Loaded, now = Date.now()): void {
    const left = e.notAfter.getTime() - now
    if (left <= 0) this.#emit({ type: 'expired', cert: e.files.cert, names: e.names, notAfter: e.notAfter })
    else if (left < (this.#opts.expiryWarningDays ?? 14) * DAY) {
      this.#emit({ type: 'expiring', cert: e.files.cert, names: e.names, notAfter: e.notAfter, daysLeft: Math.floor(left / DAY) })
    }
  }

  #swap (next: Loaded[]): void {
    const table = new NameTable<Loaded>()
    for (const e of next) for (const n of e.names) table.add(n, e)
    const want = this.#opts.defaultCertificate
    let def: Loaded | undefined
    if (want !== undefined) {
      def = next.find(e => e.files.cert === resolve(want)) ?? table.lookup(normalizeServerName(want))
    }
    def ??= next[0]
    const defaultChanged = def !== this.#default
    this.#entries = next
    this.#table = table
    this.#default = def
    this.#stapler?.sync(next.map(e => ({ file: e.files.cert, certPem: e.certPem })))
    if (defaultChanged && def !== undefined) {
      // setSecureContext affects new connections only; open ones keep their context.
      for (const s of this.#servers) s.setSecureContext({ ...this.#contextOptions(), cert: def.certPem, key: def.keyPem })
    }
  }
}
