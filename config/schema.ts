// The shape of proxy.toml, as zod schemas. Raw (as written) types come from here; resolved types live in types.ts.
import { z } from 'zod'
import { address, duration } from './primitives.js'
import { poolHealthKeys } from './health.js'
import { listenerTlsKeys, poolTlsSchema } from './tls.js'
import { shadowSchema } from './shadow.js'
import { alertsKeys, scaleKeys } from './scale.js'
import { haSchema } from './ha.js'

export { address, duration }

/** A backend's weight range: the file's, the registration API's and the CLI's. */
export const BACKEND_WEIGHT = Object.freeze({ min: 1, max: 1000 })

const backendUrl = z.string()
const backendEntry = z.union([
  backendUrl,
  z.strictObject({ url: backendUrl, weight: z.number().int().min(BACKEND_WEIGHT.min).max(BACKEND_WEIGHT.max).default(1) }),
], { error: 'expected a backend URL string or { url = "...", weight = N }' })

export const poolSchema = z.strictObject({
  balance: z.enum(['round_robin', 'least_conn', 'p2c', 'hash']).default('round_robin'),
  backends: z.array(backendEntry).default([]),
  hash_key: z.string().optional(),
  shards: z.record(z.string(), z.array(backendEntry)).optional(),
  unreachable_cooldown: duration.default(1000),
  tunnel: z.string().min(1).optional(),
  ...poolHealthKeys,
  tls: poolTlsSchema.optional(),
  shadow: shadowSchema.optional(),
  ...scaleKeys,
})

const routeMatch = z.strictObject({
  host: z.string().min(1).optional(),
  path_prefix: z.string().startsWith('/', { error: 'a path prefix starts with "/"' }).optional(),
  methods: z.array(z.string().min(1)).min(1).optional(),
  headers: z.record(z.string(), z.string()).optional(),
  sni: z.string().min(1).optional(),
})

export const routeSchema = z.strictObject({
  name: z.string().min(1).optional(),
  listener: z.union([z.string(), z.array(z.string())]).optional(),
  match: routeMatch.prefault({}),
  pool: z.string().optional(),
  strip_prefix: z.boolean().default(false),
  host_header: z.string().default('client'),
  timeout: duration.default(30_000),
  connect_timeout: duration.default(5_000),
  idle_timeout: duration.default(60_000),
  redirect: z.strictObject({
    to: z.string().min(1),
    status: z.union([z.literal(301), z.literal(302), z.literal(303), z.literal(307), z.literal(308)], { error: 'redirect status is one of 301, 302, 303, 307, 308' }).default(302),
    append_path: z.boolean().default(false),
  }).optional(),
  respond: z.strictObject({
    status: z.number().int().min(100).max(599).default(200),
    body: z.string().default(''),
    content_type: z.string().default('text/plain; charset=utf-8'),
  }).optional(),
})

export const listenerSchema = z.strictObject({
  name: z.string().min(1),
  listen: address,
  protocol: z.enum(['http', 'https', 'tls']).default('http'),
  ...listenerTlsKeys,
})

export const configSchema = z.strictObject({
  server: z.strictObject({
    workers: z.union([z.number().int().min(1).max(256), z.literal('auto')], { error: 'workers is a whole number from 1, or "auto"' }).default(1),
    shutdown_timeout: duration.default(10_000),
    max_header_bytes: z.number().int().min(1024).max(1 << 20).default(16_384),
    headers_timeout: duration.default(10_000),
    keepalive_timeout: duration.default(5_000),
    http1_server: z.enum(['edge', 'node'], { error: 'http1_server is "edge" (the edge\'s own HTTP/1.1 server) or "node" (node:http)' }).default('edge'),
    // No bytes either way for this long ends an upgraded (WebSocket) splice or a TLS passthrough ("0": never).
    tunnel_idle_timeout: duration.default(3_600_000),
  }).prefault({}),
  admin: z.strictObject({
    listen: address.default({ host: '127.0.0.1', port: 9901 }),
    token: z.string().min(1).optional(),
    // Names a request's Host may carry besides the listen host, localhost, 127.0.0.1 and [::1] (DNS rebinding).
    hosts: z.array(z.string().min(1)).default([]),
  }).prefault({}),
  log: z.strictObject({
    access: z.string().min(1).default('stdout'),
    level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    format: z.enum(['json', 'pretty'], { error: 'log format is "json" or "pretty"' }).optional(),
  }).prefault({}),
  tunnel: z.strictObject({
    listen: address,
    secret: z.string().min(1, { error: 'a tunnel secret is needed: "env:NAME", "file:PATH" or the key itself' }),
    allow: z.array(z.string().min(1)).min(1, { error: 'allow lists the names tunnels may claim, e.g. ["*.tunnel.test"]' }),
    auto_route: z.boolean().default(true),
    tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
    heartbeat: duration.default(15_000),
    max_streams: z.number().int().min(1).max(65_536).default(1024),
    stream_window: z.number().int().min(65_536).max(16 * 1024 * 1024).default(256 * 1024),
  }).optional(),
  ha: haSchema.optional(),
  listeners: z.array(listenerSchema, { error: 'expected [[listeners]] tables' }).min(1, { error: 'at least one [[listeners]] entry is needed' }).optional(),
  routes: z.array(routeSchema).default([]),
  pools: z.record(z.string(), poolSchema).default({}),
  ...alertsKeys,
})

export type RawConfig = z.infer<typeof configSchema>
export type RawPool = z.infer<typeof poolSchema>
export type RawRoute = z.infer<typeof routeSchema>

/** The keys each table accepts, for "did you mean" hints. */
export function knownKeys (schema: z.ZodType): string[] {
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape
  return shape === undefined ? [] : Object.keys(shape)
}
