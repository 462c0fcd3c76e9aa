// TOML -> schema -> resolved, deep-frozen Config. Every problem carries file, key path, line and reason.
import { readFile } from 'node:fs/promises'
import { resolve as resolvePath } from 'node:path'
import { availableParallelism } from 'node:os'
import { parse as parseToml, TomlError } from 'smol-toml'
import type { z } from 'zod'
import { configSchema, poolSchema, routeSchema, type RawConfig, type RawPool, type RawRoute } from './schema.js'
import { locate } from './locate.js'
import { EdgeError } from './errors.js'
import { closest } from './suggest.js'
import { isIP } from 'node:net'
import { formatAddress, isLoopbackIp, loopbackProblem, type Address } from './address.js'
import { resolvePoolHealth } from './health.js'
import { resolveSecret, resolveSigningKey } from '../packer/token.js'
import { resolveAlerts, resolveScale } from './scale.js'
import { resolveHa } from './ha.js'
import { dirname } from 'node:path'
import type { TunnelConfig } from './types.js'
import { baseDirOf, resolveListenerTls, resolvePoolTls } from './tls.js'
import { resolveShadow } from './shadow.js'
import { isWildcardPattern, normalizeServerName } from './names.js'
import type {
  BackendConfig, Config, HashKey, ListenerConfig, PoolConfig, PoolRouteAction, RouteAction, RouteConfig, ShardConfig,
} from './types.js'

export interface ConfigProblem {
  readonly file: string
  readonly path: string
  readonly line: number | undefined
  /** Only for TOML syntax errors (smol-toml reports it); schema problems name a key, which is enough. */
  readonly column?: number
  readonly message: string
}

export class ConfigError extends EdgeError {
  declare readonly code: 'EP_ERR_CONFIG'
  readonly problems: readonly ConfigProblem[]
  constructor (problems: ConfigProblem[]) {
    super('EP_ERR_CONFIG', problems.map(formatProblem).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

export function formatProblem (p: ConfigProblem): string {
  const where = p.line === undefined ? p.file : p.column === undefined ? `${p.file}:${p.line}` : `${p.file}:${p.line}:${p.column}`
  return `${where}: ${p.path === '' ? '' : `${p.path}: `}${p.message}`
}

type PathItem = string | number

function pathText (path: readonly PathItem[]): string {
  let s = ''
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`
    else s += s === '' ? p : `.${p}`
  }
  return s
}

class Problems {
  readonly list: ConfigProblem[] = []
  constructor (readonly file: string, readonly text: string) {}
  add (path: readonly PathItem[], message: string): void {
    this.list.push({ file: this.file, path: pathText(path), line: locate(this.text, path), message })
  }
}

export async function loadConfigFile (file: string): Promise<Config> {
  const abs = resolvePath(file)
  let text: string
  try {
    text = await readFile(abs, 'utf8')
  } catch (err) {
    throw new ConfigError([{ file: abs, path: '', line: undefined, message: `cannot read the file: ${(err as Error).message}` }])
  }
  const config = parseConfigText(text, abs)
  await checkAdminName(config, new Problems(abs, text))
  return config
}

/**
 * An admin listen *name* without a token: loopback only if every address it resolves to is ("127.0.0.1.nip.io"
 * and "127.attacker.example" are names, and may resolve anywhere). Resolving is async, so it happens here, where
 * the edge and `edge-proxy check` read the file, and not in parseConfigText (also run by workers and reloads,
 * which never bind the admin). AdminServer.listen checks the address it bound as well.
 */
async function checkAdminName (config: Config, problems: Problems): Promise<void> {
  const { address, token } = config.admin
  if (token !== undefined || isIP(address.host) !== 0) return
  const problem = await loopbackProblem(address.host)
  if (problem === undefined) return
  problems.add(['admin', 'listen'], notLoopback(address, problem))
  throw new ConfigError(problems.list)
}

export function parseConfigText (text: string, file = '<text>'): Config {
  let doc: unknown
  try {
    doc = parseToml(text)
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = err.message.split('\n')[0] ?? err.message
      throw new ConfigError([{ file, path: '', line: err.line, column: err.column, message: `TOML syntax: ${reason}` }])
    }
    throw err
  }
  const problems = new Problems(file, text)
  const parsed = configSchema.safeParse(doc, { reportInput: true })
  if (!parsed.success) {
    for (const issue of parsed.error.issues) addZodIssue(problems, issue)
    // Report the file's other problems too (a bad backend URL, an unknown pool), not only the first kind: drop the
    // keys that failed, and if the rest then parses, check it as well, leaving out what sits under a dropped key.
    const failed = parsed.error.issues.map(i => pathText(i.path.filter((p): p is string | number => typeof p !== 'symbol')))
    const repaired = withoutPaths(doc, parsed.error.issues.map(i => i.path))
    const again = repaired === undefined ? undefined : configSchema.safeParse(repaired)
    if (again?.success === true) {
      const more = new Problems(file, text)
      try { resolveConfig(again.data, more) } catch { /* a half-valid file may trip a check that assumes more */ }
      for (const p of more.list) if (!failed.some(f => f === '' || p.path === f || p.path.startsWith(`${f}.`) || p.path.startsWith(`${f}[`))) problems.list.push(p)
    }
    throw new ConfigError(problems.list)
  }
  const config = resolveConfig(parsed.data, problems)
  if (problems.list.length > 0) throw new ConfigError(problems.list)
  return deepFreeze(config)
}

function addZodIssue (problems: Problems, issue: z.core.$ZodIssue): void {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol')
  if (issue.code === 'unrecognized_keys') {
    const known = knownKeysAt(path)
    for (const key of issue.keys) {
      const hint = closest(key, known)
      problems.add([...path, key], `unknown key${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; known keys here: ${known.join(', ')}`)
    }
    return
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    problems.add(path, `is required (${issue.message})`)
    return
  }
  if (issue.code === 'invalid_union' && isTable(issue.input)) {
    // A table matched no branch: the branch that takes tables says which of its keys is wrong (`weight = "2"`).
    const branch = issue.errors.find(errs => errs.length > 0 && errs.every(e => e.path.length > 0))
    if (branch !== undefined) {
      for (const e of branch) addZodIssue(problems, { ...e, path: [...issue.path, ...e.path] } as z.core.$ZodIssue)
      return
    }
  }
  if (issue.code === 'invalid_type' && issue.input !== undefined) {
    // zod's own wording ("Invalid input: expected number, received string") becomes the TOML reader's.
    const expected = issue.message.startsWith('Invalid input') ? `expected a ${issue.expected}` : issue.message
    const hint = typeof issue.input === 'number' && expected.includes('duration') ? ` (write it with a unit: "${issue.input}s")` : ''
    problems.add(path, `${expected}; got ${describeValue(issue.input)}${hint}`)
    return
  }
  if (issue.code === 'too_small' && issue.origin === 'string' && issue.minimum === 1 && issue.message.startsWith('Too small')) {
    problems.add(path, 'must not be empty')
    return
  }
  problems.add(path, issue.message)
}

function isTable (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** What a wrong value is, in TOML's words: `the number 10`, `the string "2"`, `a table`. */
function describeValue (v: unknown): string {
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`
  if (typeof v === 'number' || typeof v === 'bigint') return `the number ${String(v)}`
  if (typeof v === 'boolean') return `the boolean ${String(v)}`
  if (Array.isArray(v)) return 'an array'
  if (v instanceof Date) return 'a date'
  return 'a table'
}

/** A deep copy of a parsed TOML document without the values at `paths` (table keys only), or undefined. */
function withoutPaths (doc: unknown, paths: ReadonlyArray<readonly PropertyKey[]>): unknown {
  const copy = structuredClone(doc)
  for (const path of paths) {
    const last = path[path.length - 1]
    if (path.length === 0 || typeof last !== 'string') return undefined // an array element or the root: no repair
    let at: unknown = copy
    for (const p of path.slice(0, -1)) at = (at as Record<PropertyKey, unknown> | undefined)?.[p as string]
    if (isTable(at)) delete at[last]
  }
  return copy
}

// Walks the schema along a data path to list the keys a table accepts.
function knownKeysAt (path: readonly PathItem[]): string[] {
  let s: unknown = configSchema
  const unwrap = (x: unknown): unknown => {
    for (;;) {
      const def = (x as { _zod?: { def?: Record<string, unknown> } })._zod?.def
      if (def === undefined) return x
      if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault') x = def.innerType
      else if (def.type === 'pipe') x = def.in
      else if (def.type === 'union') x = (def.options as unknown[]).find(o => (o as { _zod: { def: { type: string } } })._zod.def.type === 'object') ?? x
      else return x
      if (def.type === 'union') return x
    }
  }
  for (const p of path) {
    s = unwrap(s)
    const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def
    if (def.type === 'object') s = (def.shape as Record<string, unknown>)[p as string]
    else if (def.type === 'array') s = def.element
    else if (def.type === 'record') s = def.valueType
    else return []
    if (s === undefined) return []
  }
  s = unwrap(s)
  const def = (s as { _zod: { def: Record<string, unknown> } })._zod.def
  return def.type === 'object' ? Object.keys(def.shape as object) : []
}

const supportedSchemes = new Set(['http:', 'https:', 'h2c:', 'tcp:'])

function resolveBackend (entry: RawPool['backends'][number], path: PathItem[], problems: Problems): BackendConfig | undefined {
  const raw = typeof entry === 'string' ? entry : entry.url
  const weight = typeof entry === 'string' ? 1 : entry.weight
  const r = backendOrigin(raw)
  if ('error' in r) {
    problems.add(typeof entry === 'string' ? path : [...path, 'url'], r.error)
    return undefined
  }
  return { url: r.url, weight }
}

/** A backend URL as the config takes it: the normalised origin, or why not (also used by the admin API). */
export function backendOrigin (raw: string): { url: string } | { error: string } {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    return { error: `"${raw}" is not a URL; write e.g. "http://127.0.0.1:9001"` }
  }
  if (!supportedSchemes.has(u.protocol)) {
    return { error: `"${raw}": backend URLs are http://, https://, h2c:// (HTTP/2 without TLS) or tcp:// (tls passthrough) (got ${u.protocol.slice(0, -1)})` }
  }
  // h2c: and tcp: are not "special" URL schemes: URL.origin is "null" and the path is "" rather than "/".
  if (u.protocol === 'tcp:' || u.protocol === 'h2c:') {
    if (u.hostname === '' || (u.protocol === 'tcp:' && u.port === '') || u.pathname !== '' || u.search !== '' || u.hash !== '' || u.username !== '') {
      return { error: `"${raw}": write ${u.protocol}//HOST:PORT, with no path, query or credentials` }
    }
    return { url: `${u.protocol}//${u.host}` }
  }
  if ((u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '' || u.username !== '') {
    return { error: `"${raw}": a backend URL is an origin (scheme, host, port) with no path, query or credentials` }
  }
  return { url: u.origin }
}

function parseHashKey (text: string | undefined, path: PathItem[], problems: Problems): HashKey {
  if (text === undefined || text === 'ip') return { kind: 'ip' }
  const m = /^(header|cookie|query|path):(.+)$/.exec(text)
  if (m !== null) {
    const kind = m[1] as 'header' | 'cookie' | 'query' | 'path'
    const arg = m[2] as string
    if (kind === 'path') {
      const n = Number(arg)
      if (Number.isInteger(n) && n >= 1) return { kind, index: n }
    } else if (kind === 'header') {
      return { kind, name: arg.toLowerCase() }
    } else {
      return { kind, name: arg }
    }
  }
  problems.add(path, `"${text}" is not a hash key: use header:NAME, cookie:NAME, query:NAME, path:N (N from 1) or ip`)
  return { kind: 'ip' }
}

function resolvePool (name: string, raw: RawPool, problems: Problems, hasSmtp = false): PoolConfig {
  const base: PathItem[] = ['pools', name]
  const backends: BackendConfig[] = []
  raw.backends.forEach((b, i) => {
    const r = resolveBackend(b, [...base, 'backends', i], problems)
    if (r !== undefined) backends.push(r)
  })
  let shards: ShardConfig[] | undefined
  if (raw.shards !== undefined) {
    if (raw.balance !== 'hash') problems.add([...base, 'balance'], `a sharded pool needs balance = "hash" (got "${raw.balance}")`)
    if (raw.backends.length > 0) problems.add([...base, 'backends'], 'a sharded pool lists its backends under [pools.NAME.shards], not in backends')
    shards = []
    for (const [shardName, list] of Object.entries(raw.shards)) {
      const sb: BackendConfig[] = []
      list.forEach((b, i) => {
        const r = resolveBackend(b, [...base, 'shards', shardName, i], problems)
        if (r !== undefined) sb.push(r)
      })
      if (list.length === 0) problems.add([...base, 'shards', shardName], 'a shard needs at least one backend')
      shards.push({ name: shardName, backends: sb })
      backends.push(...sb)
    }
    if (shards.length === 0) problems.add([...base, 'shards'], 'a sharded pool needs at least one shard')
  }
  const seen = new Set<string>()
  for (const b of backends) {
    if (seen.has(b.url)) problems.add([...base], `backend ${b.url} is listed twice`)
    seen.add(b.url)
  }
  if (raw.tunnel !== undefined && raw.shards !== undefined) problems.add([...base, 'tunnel'], 'a sharded pool cannot take tunnel members')
  if (raw.hash_key !== undefined && raw.balance !== 'hash') {
    problems.add([...base, 'hash_key'], `hash_key only applies to balance = "hash" (got "${raw.balance}")`)
  }
  const tls = poolTransport(raw, backends, base, problems)
  const scale = raw.scale === undefined ? undefined : resolveScale(raw.scale, [...base, 'scale'], hasSmtp, (p, m) => { problems.add(p, m) })
  if (scale !== undefined && raw.shards !== undefined) problems.add([...base, 'scale'], 'a sharded pool cannot be scaled (its members come from the config file)')
  return {
    name,
    balance: raw.balance,
    backends,
    hashKey: parseHashKey(raw.hash_key, [...base, 'hash_key'], problems),
    shards,
    unreachableCooldown: raw.unreachable_cooldown,
    tunnel: raw.tunnel?.toLowerCase(),
    ...poolHealth(raw),
    ...(tls === undefined ? {} : { tls }),
    ...(scale === undefined ? {} : { scale }),
  }
}

/** A pool with every default, as if written `[pools.NAME]` with only `raw` in it (for pools made at run time). */
export function defaultPoolConfig (name: string, raw: Record<string, unknown>): PoolConfig {
  const problems = new Problems('<built-in>', '')
  return deepFreeze(resolvePool(name, poolSchema.parse(raw), problems))
}

function poolAction (pool: PoolConfig, raw: Pick<RawRoute, 'strip_prefix' | 'host_header' | 'timeout' | 'connect_timeout' | 'idle_timeout'>): PoolRouteAction {
  return {
    kind: 'pool',
    pool,
    stripPrefix: raw.strip_prefix,
    hostHeader: raw.host_header,
    timeout: raw.timeout,
    connectTimeout: raw.connect_timeout,
    idleTimeout: raw.idle_timeout,
  }
}

/** The schema's route defaults ([[routes]] with nothing but `pool`), resolved once. */
const routeDefaults = routeSchema.parse({})

/** A route action to `pool` with every route default (timeout, connect_timeout, ...), for routes made at run time. */
export function defaultPoolAction (pool: PoolConfig): PoolRouteAction {
  return deepFreeze(poolAction(pool, routeDefaults))
}

/** The route defaults the schema gives (ms), e.g. connect_timeout for connections no route names. */
export const defaultRoute: Readonly<Pick<PoolRouteAction, 'timeout' | 'connectTimeout' | 'idleTimeout'>> = Object.freeze({
  timeout: routeDefaults.timeout,
  connectTimeout: routeDefaults.connect_timeout,
  idleTimeout: routeDefaults.idle_timeout,
})

function poolHealth (raw: Pick<RawPool, 'health' | 'outlier' | 'retry' | 'limits'>): Pick<PoolConfig, 'healthCheck' | 'outlier' | 'retry' | 'limits'> {
  const h = resolvePoolHealth(raw)
  return { healthCheck: h.health, outlier: h.outlier, retry: h.retry, limits: h.limits }
}

/** tcp:// pools serve tls passthrough only, so they cannot mix with HTTP backends; `tls` needs https:// ones. */
function poolTransport (raw: RawPool, backends: readonly BackendConfig[], base: PathItem[], problems: Problems): PoolConfig['tls'] {
  const tcp = backends.filter(b => b.url.startsWith('tcp:')).length
  if (tcp > 0 && tcp < backends.length) problems.add([...base, 'backends'], 'a pool is either all tcp:// backends (for tls passthrough routes) or none')
  if (tcp > 0 && raw.hash_key !== undefined && raw.hash_key !== 'ip') problems.add([...base, 'hash_key'], 'a tcp:// pool can only hash on "ip": a raw connection has no headers, cookies or path')
  if (raw.tls === undefined) return undefined
  if (!backends.some(b => b.url.startsWith('https:'))) problems.add([...base, 'tls'], 'tls settings apply to https:// backends and this pool has none')
  return resolvePoolTls(raw.tls, [...base, 'tls'], baseDirOf(problems.file), (p, m) => { problems.add(p, m) })
}

const hostPattern = /^(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$/

function resolveRoute (raw: RawRoute, index: number, pools: Map<string, PoolConfig>, listenerNames: Set<string>, problems: Problems): RouteConfig {
  const base: PathItem[] = ['routes', index]
  const name = raw.name ?? `route-${index + 1}`
  const actions = [raw.pool !== undefined, raw.redirect !== undefined, raw.respond !== undefined].filter(Boolean).length
  if (actions !== 1) problems.add(base, `route "${name}" needs exactly one of pool, redirect or respond (has ${actions})`)
  let host: string | undefined
  if (raw.match.host !== undefined) {
    host = raw.match.host.toLowerCase()
    if (!hostPattern.test(host)) problems.add([...base, 'match', 'host'], `"${raw.match.host}" is not a host name or "*.example.com" wildcard`)
    if (host.endsWith('.')) host = host.slice(0, -1)
  }
  let listeners: Set<string> | undefined
  if (raw.listener !== undefined) {
    listeners = new Set(Array.isArray(raw.listener) ? raw.listener : [raw.listener])
    for (const l of listeners) {
      if (!listenerNames.has(l)) {
        const hint = closest(l, [...listenerNames])
        problems.add([...base, 'listener'], `no listener named "${l}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`)
      }
    }
  }
  let action: RouteAction
  if (raw.redirect !== undefined) {
    action = { kind: 'redirect', to: raw.redirect.to, status: raw.redirect.status, appendPath: raw.redirect.append_path }
  } else if (raw.respond !== undefined) {
    action = { kind: 'respond', status: raw.respond.status, body: raw.respond.body, contentType: raw.respond.content_type }
  } else {
    const pool = raw.pool === undefined ? undefined : pools.get(raw.pool)
    if (raw.pool !== undefined && pool === undefined) {
      const hint = closest(raw.pool, [...pools.keys()])
      problems.add([...base, 'pool'], `route "${name}" names pool "${raw.pool}", which is not defined${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; define it as [pools.${raw.pool}]`)
    }
    // An undefined pool is a problem already; the placeholder only lets resolution go on to find more.
    action = poolAction(pool ?? resolvePool(raw.pool ?? '', poolSchema.parse({}), problems), raw)
  }
  if (raw.strip_prefix && raw.match.path_prefix === undefined) problems.add([...base, 'strip_prefix'], 'strip_prefix needs match.path_prefix')
  return {
    name,
    index,
    listeners,
    match: {
      host,
      pathPrefix: raw.match.path_prefix,
      methods: raw.match.methods === undefined ? undefined : new Set(raw.match.methods.map(m => m.toUpperCase())),
      headers: raw.match.headers === undefined
        ? undefined
        : Object.entries(raw.match.headers).map(([k, v]) => ({ name: k.toLowerCase(), value: v === '*' ? null : v })),
    },
    action,
  }
}

/** [admin]: a token unless the listen IP is loopback (a name is judged once resolved: checkAdminName), and hosts. */
function resolveAdmin (raw: RawConfig, problems: Problems): Config['admin'] {
  const listen = raw.admin.listen
  if (isIP(listen.host) !== 0 && !isLoopbackIp(listen.host) && raw.admin.token === undefined) {
    problems.add(['admin', 'listen'], notLoopback(listen, 'is not loopback'))
  }
  const hosts: string[] = []
  raw.admin.hosts.forEach((h, i) => {
    const name = h.toLowerCase().replace(/^\[(.*)\]$/, '$1')
    if (!/^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/.test(name) && isIP(name) !== 6) {
      problems.add(['admin', 'hosts', i], `"${h}" is not a host name: write the name alone ("admin.example.internal", "[fd00::1]"), without scheme, port or path`)
      return
    }
    hosts.push(name)
  })
  return { address: listen, token: raw.admin.token, hosts }
}

function notLoopback (listen: Address, why: string): string {
  return `the admin listener on ${formatAddress(listen)} ${why}: set [admin] token, sent by clients as "Authorization: Bearer <token>"`
}

function resolveConfig (raw: RawConfig, problems: Problems): Config {
  const admin = resolveAdmin(raw, problems)
  const listeners: ListenerConfig[] = []
  const names = new Set<string>()
  const addrs = new Map<string, string>()
  addrs.set(formatAddress(raw.admin.listen), 'admin')
  if (raw.listeners === undefined) problems.add(['listeners'], 'is required: at least one [[listeners]] table, e.g. [[listeners]] with name = "web" and listen = "127.0.0.1:8080"')
  ;(raw.listeners ?? []).forEach((l, i) => {
    if (names.has(l.name)) problems.add(['listeners', i, 'name'], `two listeners are named "${l.name}"`)
    names.add(l.name)
    const a = formatAddress(l.listen)
    const other = addrs.get(a)
    if (other !== undefined && l.listen.port !== 0) problems.add(['listeners', i, 'listen'], `${a} is already used by ${other === 'admin' ? '[admin] listen' : `listener "${other}"`}`)
    addrs.set(a, l.name)
    const tls = resolveListenerTls(l, ['listeners', i], baseDirOf(problems.file), (p, m) => { problems.add(p, m) })
    listeners.push({ name: l.name, address: l.listen, protocol: l.protocol, ...(tls === undefined ? {} : { tls }) })
  })
  const protocols = new Map(listeners.map(l => [l.name, l.protocol]))
  const pools = new Map<string, PoolConfig>()
  const alerts = resolveAlerts(raw.alerts, (p, m) => { problems.add(p, m) })
  for (const [name, p] of Object.entries(raw.pools)) pools.set(name, resolvePool(name, p, problems, alerts.smtp !== undefined))
  resolveShadows(raw, pools, problems)
  const routes: RouteConfig[] = []
  const routeNames = new Set<string>()
  raw.routes.forEach((r, i) => {
    const route = routeTls(resolveRoute(r, i, pools, names, problems), r, protocols, problems)
    if (routeNames.has(route.name)) problems.add(['routes', i, 'name'], `two routes are named "${route.name}"`)
    routeNames.add(route.name)
    routes.push(route)
  })
  checkBackendTls(pools, problems)
  const workers = raw.server.workers === 'auto' ? availableParallelism() : raw.server.workers
  const tunnel = resolveTunnel(raw, problems, workers, addrs)
  for (const p of pools.values()) {
    if (p.tunnel !== undefined && tunnel === undefined) problems.add(['pools', p.name, 'tunnel'], `pool "${p.name}" takes tunnel members, but there is no [tunnel] table`)
  }
  return {
    file: problems.file,
    server: {
      workers,
      shutdownTimeout: raw.server.shutdown_timeout,
      maxHeaderBytes: raw.server.max_header_bytes,
      headersTimeout: raw.server.headers_timeout,
      keepAliveTimeout: raw.server.keepalive_timeout,
      http1Server: raw.server.http1_server,
      tunnelIdleTimeout: raw.server.tunnel_idle_timeout,
      upgradeDrain: raw.server.upgrade_drain,
    },
    admin,
    tunnel,
    ha: raw.ha === undefined ? undefined : resolveHa(raw.ha, baseDirOf(problems.file), spec => resolveSecret(fileRelative(problems.file, spec)), (p, m) => { problems.add(p, m) }),
    log: { access: raw.log.access, level: raw.log.level, format: raw.log.format ?? (process.stderr.isTTY ? 'pretty' : 'json') },
    listeners,
    routes,
    pools,
    alerts,
  }
}

/** [pools.NAME.shadow] once every pool is known: the shadow pool is another pool of the file. */
function resolveShadows (raw: RawConfig, pools: Map<string, PoolConfig>, problems: Problems): void {
  const known = new Map([...pools].map(([n, p]) => [n, { tcp: p.backends.length > 0 && p.backends.every(b => b.url.startsWith('tcp:')) }]))
  const ctx = {
    pools: known,
    baseDir: baseDirOf(problems.file),
    parseHashKey: (text: string, path: PathItem[]) => parseHashKey(text, path, problems),
    add: (path: PathItem[], message: string) => { problems.add(path, message) },
    closest,
  }
  for (const [name, p] of Object.entries(raw.pools)) {
    const shadow = resolveShadow(name, p.shadow, ctx)
    const pool = pools.get(name)
    if (shadow !== undefined && pool !== undefined) pools.set(name, { ...pool, shadow })
  }
}

/** A "file:PATH" secret spec with PATH made relative to the config file, like every other path in it. */
function fileRelative (configFile: string, spec: string): string {
  return spec.startsWith('file:') ? `file:${resolvePath(baseDirOf(configFile), spec.slice(5))}` : spec
}

function resolveTunnel (raw: RawConfig, problems: Problems, workers: number, addrs: Map<string, string>): TunnelConfig | undefined {
  const t = raw.tunnel
  if (t === undefined) return undefined
  let secret: Buffer = Buffer.alloc(0)
  const base = problems.file.startsWith('<') ? process.cwd() : dirname(problems.file)
  try {
    // file: paths are relative to the config file, like every other path in it.
    secret = resolveSigningKey(fileRelative(problems.file, t.secret))
  } catch (err) {
    problems.add(['tunnel', 'secret'], (err as Error).message)
  }
  if (workers > 1) {
    // A tunnel session lives in the process that accepted it; other workers could not reach it.
    problems.add(['tunnel'], `tunnels need [server] workers = 1 for now (got ${workers}): a tunnel session lives in one process`)
  }
  const a = formatAddress(t.listen)
  const other = addrs.get(a)
  if (other !== undefined && t.listen.port !== 0) problems.add(['tunnel', 'listen'], `${a} is already used by ${other === 'admin' ? '[admin] listen' : `listener "${other}"`}`)
  addrs.set(a, 'tunnel')
  return {
    address: t.listen,
    secret,
    allow: t.allow.map(n => n.toLowerCase()),
    autoRoute: t.auto_route,
    tls: t.tls === undefined ? undefined : { cert: resolvePath(base, t.tls.cert), key: resolvePath(base, t.tls.key) },
    heartbeat: t.heartbeat,
    maxStreams: t.max_streams,
    streamWindow: t.stream_window,
  }
}

/**
 * match.sni and the protocol rules: a route on a tls listener routes connections to a tcp:// pool by server name
 * only; routes on http/https listeners never use tcp:// pools. Routes without `listener` skip tls listeners.
 */
function routeTls (route: RouteConfig, raw: RawRoute, protocols: ReadonlyMap<string, string>, problems: Problems): RouteConfig {
  const base: PathItem[] = ['routes', route.index]
  const named = route.listeners === undefined ? undefined : [...route.listeners].filter(n => protocols.has(n))
  const tlsCount = named?.filter(n => protocols.get(n) === 'tls').length ?? 0
  let sni: string | undefined
  if (raw.match.sni !== undefined) {
    sni = normalizeServerName(raw.match.sni)
    if (sni === undefined || (sni.includes('*') && !isWildcardPattern(sni))) {
      problems.add([...base, 'match', 'sni'], `"${raw.match.sni}" is not a server name or "*.example.com" wildcard (one label)`)
    }
    const plain = named?.filter(n => protocols.get(n) === 'http') ?? []
    if (plain.length > 0) problems.add([...base, 'match', 'sni'], `match.sni needs an https or tls listener; "${plain.join('", "')}" is plain http`)
  }
  const action = route.action
  const tcpPool = action.kind === 'pool' && action.pool.backends.length > 0 && action.pool.backends.every(b => b.url.startsWith('tcp:'))
  if (named !== undefined && tlsCount > 0) {
    if (tlsCount < named.length) problems.add([...base, 'listener'], 'a route is either for tls listeners (connections) or for http/https ones (requests), not both')
    const m = raw.match
    for (const k of ['host', 'path_prefix', 'methods', 'headers'] as const) {
      if (m[k] !== undefined) problems.add([...base, 'match', k], `match.${k} cannot apply on a tls listener, which sees no HTTP request: use match.sni`)
    }
    if (action.kind !== 'pool') problems.add(base, `route "${route.name}" is on a tls listener, which can only pass connections to a pool of tcp:// backends`)
    else if (!tcpPool && action.pool.backends.length > 0) problems.add([...base, 'pool'], `pool "${action.pool.name}" has HTTP backends; a tls listener passes raw connections and needs tcp:// backends`)
  } else if (tcpPool) {
    problems.add([...base, 'pool'], `pool "${action.kind === 'pool' ? action.pool.name : ''}" has tcp:// backends, which only tls passthrough routes can use; name a protocol = "tls" listener in this route's listener`)
  }
  return sni === undefined ? route : { ...route, match: { ...route.match, sni } }
}

/** A backend is one connection pool per process, so two pools cannot verify the same https:// URL differently. */
function checkBackendTls (pools: ReadonlyMap<string, PoolConfig>, problems: Problems): void {
  const seen = new Map<string, { pool: string, key: string }>()
  for (const p of pools.values()) {
    const key = JSON.stringify(p.tls ?? null)
    for (const b of p.backends) {
      if (!b.url.startsWith('https:')) continue
      const other = seen.get(b.url)
      if (other === undefined) seen.set(b.url, { pool: p.name, key })
      else if (other.key !== key) problems.add(['pools', p.name, 'tls'], `backend ${b.url} is also in pool "${other.pool}" with other tls settings; use the same settings in both`)
    }
  }
}

function deepFreeze<T> (value: T, seen = new Set<unknown>()): T {
  if (value === null || typeof value !== 'object' || seen.has(value)) return value
  seen.add(value)
  if (Buffer.isBuffer(value)) return value
  if (value instanceof Map) {
    for (const v of value.values()) deepFreeze(v, seen)
  } else if (value instanceof Set) {
    // Sets hold primitives here.
  } else {
    for (const v of Object.values(value)) deepFreeze(v, seen)
  }
  return Object.freeze(value)
}

/** A one-screen summary for `edge-proxy check`. */
export function summarize (c: Config): string {
  const lines = [`config ${c.file}: OK`]
  lines.push(`  workers ${c.server.workers}, HTTP/1.1 server ${c.server.http1Server}, admin ${formatAddress(c.admin.address)}, access log ${c.log.access}`)
  for (const l of c.listeners) {
    const tls = l.tls === undefined ? '' : ` (${l.tls.directory ?? `${l.tls.certificates?.length ?? 0} certificates`}, alpn ${l.tls.alpn.join(',')}${l.tls.clientCa === undefined ? '' : ', client certificates required'})`
    lines.push(`  listener ${l.name} ${l.protocol}://${formatAddress(l.address)}${tls}`)
  }
  for (const r of c.routes) {
    const m = r.match
    const conds = [m.sni && `sni=${m.sni}`, m.host && `host=${m.host}`, m.pathPrefix && `path_prefix=${m.pathPrefix}`, m.methods && `methods=${[...m.methods].join(',')}`, m.headers && `headers=${m.headers.map(h => h.name).join(',')}`].filter(Boolean).join(' ')
    const to = r.action.kind === 'pool' ? `pool ${r.action.pool.name}` : r.action.kind === 'redirect' ? `redirect ${r.action.status} ${r.action.to}` : `respond ${r.action.status}`
    lines.push(`  route ${r.name}: ${conds === '' ? '(any)' : conds} -> ${to}`)
  }
  if (c.ha !== undefined) {
    const h = c.ha
    lines.push(`  ha ${h.nodeId} priority ${h.priority}${h.preempt ? ' preempt' : ''}, heartbeat udp ${formatAddress(h.listen)} -> ${h.peers.map(formatAddress).join(', ') || '(no peers yet)'}, every ${h.advertInterval}ms, dead after ${h.deadAfter}; ${h.ipMode === 'linux' ? `${h.floatingIp?.cidr ?? ''} on ${h.interface ?? ''}` : 'ip by command'}${h.witness === undefined ? '' : `, witness ${formatAddress(h.witness)}`}`)
  }
  for (const p of c.pools.values()) {
    const detail = p.shards === undefined ? `${p.backends.length} backends` : `${p.shards.length} shards (${p.shards.map(s => `${s.name}:${s.backends.length}`).join(', ')})`
    lines.push(`  pool ${p.name}: ${p.balance}, ${detail}`)
    const sh = p.shadow
    if (sh !== undefined) lines.push(`    shadow -> pool ${sh.pool}: sample ${sh.sample}, methods ${[...sh.methods].join(',')}${sh.secondary ? ', secondary' : ''}${sh.store === undefined ? '' : `, store ${sh.store}`}`)
    const s = p.scale
    if (s !== undefined) {
      const target = s.target.kind === 'auto' ? `auto (learned, at most ${s.targetCeiling}ms)` : `${s.target.ms}ms${s.target.ms > s.targetCeiling ? ` (override: above target_ceiling ${s.targetCeiling}ms)` : ''}`
      const by = s.provider.kind === 'process' ? `process "${s.provider.command}" on ports ${s.provider.ports[0]}-${s.provider.ports[1]}` : s.provider.kind === 'command' ? `command "${s.provider.run}"` : `webhook ${s.provider.url}`
      lines.push(`    scale: ${s.metric} target ${target}, ${s.min}-${s.max} backends every ${s.interval}ms, ${by}${s.maxCostPerHour === undefined ? '' : `, at most ${s.maxCostPerHour} per hour`}`)
    }
  }
  return lines.join('\n')
}
