// Upgrade requests (WebSocket or any other protocol): route like a normal request, open a raw connection to the
// chosen backend, replay the handshake with forwarded headers, then splice both sockets until either side closes.
import net, { type Socket } from 'node:net'
import tls from 'node:tls'
import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { Duplex } from 'node:stream'
import type { EdgeTable } from './table.js'
import type { TunnelMembers } from './tunnels.js'
import type { PoolRuntime } from './pool.js'
import { clientIpOf, rewritePath, scanRequest } from './http-listener.js'
import { tlsConnectOptions } from './transport.js'

function refuse (socket: Socket, status: string, message: string, requestId: string): void {
  const body = `${status}\n${message}\nrequest-id: ${requestId}\n`
  if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-request-id: ${requestId}\r\n\r\n${body}`)
  else socket.destroy()
}

export function proxyUpgrade (req: IncomingMessage, socket: Socket, head: Buffer, table: EdgeTable, listener: string, proto: string, log: Logger, tunnels?: TunnelMembers): void {
  socket.on('error', () => { socket.destroy() })
  const clientIp = clientIpOf(socket)
  const scanned = scanRequest(req, proto, clientIp, true)
  if (scanned.bad !== undefined) { refuse(socket, '400 Bad Request', scanned.bad, scanned.requestId); return }
  const url = req.url ?? '/'
  let route = table.routers.get(listener)?.match(scanned.host, url, req.method ?? 'GET', req)
  let autoPool: PoolRuntime | undefined
  if (route === undefined || route.match.host === undefined) {
    const auto = tunnels?.autoRoute(scanned.host)
    if (auto !== undefined) { route = auto.route; autoPool = auto.pool }
  }
  if (route === undefined || route.action.kind !== 'pool') {
    refuse(socket, '404 Not Found', 'no route for this upgrade request', scanned.requestId)
    return
  }
  const pool = autoPool ?? table.pool(route.action.pool.name)
  const sel = pool?.select(req, url, clientIp, Date.now(), undefined)
  if (pool === undefined || sel?.member === undefined) {
    refuse(socket, '503 Service Unavailable', sel?.shard !== undefined ? `shard "${sel.shard.name}" unavailable` : 'no live backend', scanned.requestId)
    return
  }
  const member = sel.member
  const backend = member.backend
  member.requests++
  backend.requests++
  const target = new URL(backend.url)
  const port = Number(target.port !== '' ? target.port : target.protocol === 'https:' ? 443 : 80)
  const path = rewritePath(url, route, route.action.stripPrefix)
  const headers = scanned.headers
  if (route.action.hostHeader !== 'client') {
    for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'host') headers[i + 1] = route.action.hostHeader === 'backend' ? backend.host : route.action.hostHeader
  }
  let handshake = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\n`
  for (let i = 0; i < headers.length; i += 2) handshake += `${headers[i] as string}: ${headers[i + 1] as string}\r\n`
  handshake += '\r\n'

  const raw = backend.openRaw
  const upstream: Duplex = raw !== undefined
    ? raw(clientIp)
    : target.protocol === 'https:'
      ? tls.connect({ host: target.hostname, port, servername: target.hostname, ...tlsConnectOptions(backend.tls) })
      : net.connect({ host: target.hostname, port })
  if (upstream instanceof net.Socket) upstream.setNoDelay(true)
  socket.setNoDelay(true)
  backend.inflight++
  let connected = false
  let released = false
  const release = (): void => { if (!released) { released = true; backend.inflight-- } }
  const timer = setTimeout(() => { if (!connected) upstream.destroy(new Error('connect timeout')) }, route.action.connectTimeout)
  const onOpen = (): void => {
    connected = true
    clearTimeout(timer)
    upstream.write(handshake)
    if (head.length > 0) upstream.write(head)
    upstream.pipe(socket)
    socket.pipe(upstream)
  }
  if (raw !== undefined) setImmediate(onOpen) // a tunnel stream is open at once
  else upstream.once(target.protocol === 'https:' ? 'secureConnect' : 'connect', onOpen)
  upstream.on('error', (err) => {
    clearTimeout(timer)
    release()
    // A tunnel stream counts as connected at once, but its backend may still fail to reach the target (RESET
    // CONNECT_FAILED) before any answer: while nothing went back to the client, it can still get a 502.
    if (!connected || (raw !== undefined && socket.bytesWritten === 0)) {
      backend.failures++
      member.failures++
      log.debug({ err, backend: backend.url }, 'upgrade connect failed')
      refuse(socket, err.message === 'connect timeout' ? '504 Gateway Timeout' : '502 Bad Gateway', 'could not connect to the backend', scanned.requestId)
    } else {
      socket.destroy()
    }
  })
  upstream.on('close', () => { release(); socket.destroy() })
  socket.on('close', () => { upstream.destroy() })
}
