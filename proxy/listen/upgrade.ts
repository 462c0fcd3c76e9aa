// Upgrade requests (WebSocket or any other protocol): route like a normal request, open a raw connection to the
// chosen backend, replay the handshake with forwarded headers, and switch to splicing both sockets only when the
// backend answers 101 (RFC 9110 7.8). Any other answer is passed to the client and the connection closes: the
// client's bytes after its handshake never reach the backend unparsed, past the edge's routes.
import net, { type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import tls from 'node:tls'
import { STATUS_CODES, type IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import type { Duplex } from 'node:stream'
import type { EdgeTable } from '../route/table.js'
import { clientIpOf, rewritePath, scanRequest, versionRefusal } from './request.js'
import { tlsConnectOptions } from '../upstream/transport.js'
import { parserEvents, responseParser } from './h1.js'
import { idleTimeout } from './idle.js'

/**
 * Set on a client socket spliced to a WebSocket backend: ends both sides with a WebSocket close frame, code 1001
 * (going away), as an upgrade's drain does when upgrade_drain runs out.
 */
export const kGoAway = Symbol('edge.goAway')

/** Close frames with code 1001: to the client unmasked, to the backend masked (RFC 6455 5.3). */
function closeFrames (): { toClient: Buffer, toBackend: Buffer } {
  const mask = randomBytes(4)
  return {
    toClient: Buffer.from([0x88, 0x02, 0x03, 0xe9]),
    toBackend: Buffer.from([0x88, 0x82, mask[0] as number, mask[1] as number, mask[2] as number, mask[3] as number, 0x03 ^ (mask[0] as number), 0xe9 ^ (mask[1] as number)]),
  }
}

export interface UpgradeOptions {
  /** Largest backend answer head read before the switch. */
  readonly maxHeaderBytes: number
  /** A splice with no bytes either way for this long is closed (0: never). */
  readonly idleTimeout: number
}

function answer (socket: Socket, status: string, headers: string, body: string): void {
  if (!socket.writable) { socket.destroy(); return }
  socket.once('finish', () => { socket.destroy() })
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\n${headers}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}

function refuse (socket: Socket, status: string, message: string, requestId: string): void {
  answer(socket, status, `content-type: text/plain; charset=utf-8\r\nx-request-id: ${requestId}\r\n`, `${status}\n${message}\nrequest-id: ${requestId}\n`)
}

/** Response headers that describe the backend connection, not the answer: the client's connection closes instead. */
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer'])

export function proxyUpgrade (req: IncomingMessage, socket: Socket, head: Buffer, table: EdgeTable, listener: string, proto: string, log: Logger, opts: UpgradeOptions): void {
  socket.on('error', () => { socket.destroy() })
  const clientIp = clientIpOf(socket)
  const scanned = scanRequest(req, proto, clientIp, true)
  const refusal = versionRefusal(req, false)
  if (refusal !== undefined) { refuse(socket, '505 HTTP Version Not Supported', refusal, scanned.requestId); return }
  if (scanned.bad !== undefined) { refuse(socket, '400 Bad Request', scanned.bad, scanned.requestId); return }
  const url = req.url ?? '/'
  const resolved = table.resolver.resolve(listener, scanned.host, url, req.method ?? 'GET', req)
  if (resolved === undefined) {
    refuse(socket, '404 Not Found', 'no route for this upgrade request', scanned.requestId)
    return
  }
  const route = resolved.route
  const action = route.action
  // The edge's own answers hold for upgrade requests too: the connection closes after them.
  if (action.kind === 'respond') {
    answer(socket, `${action.status} ${statusText(action.status)}`, `content-type: ${action.contentType}\r\nx-request-id: ${scanned.requestId}\r\n`, action.body)
    return
  }
  if (action.kind === 'redirect') {
    let to = action.to
    if (action.appendPath) to += rewritePath(url, route, true).slice(to.endsWith('/') ? 1 : 0)
    answer(socket, `${action.status} ${statusText(action.status)}`, `location: ${to}\r\nx-request-id: ${scanned.requestId}\r\n`, '')
    return
  }
  const pool = resolved.pool
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
  const path = rewritePath(url, route, action.stripPrefix)
  const headers = scanned.headers
  if (action.hostHeader !== 'client') {
    for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'host') headers[i + 1] = action.hostHeader === 'backend' ? backend.host : action.hostHeader
  }
  let handshake = `${req.method ?? 'GET'} ${path} HTTP/1.1\r\n`
  for (let i = 0; i < headers.length; i += 2) handshake += `${headers[i] as string}: ${headers[i + 1] as string}\r\n`
  handshake += '\r\n'

  const opener = backend.opener
  const upstream: Duplex = opener !== undefined
    ? opener.openRaw(clientIp)
    : target.protocol === 'https:'
      ? tls.connect({ host: target.hostname, port, servername: target.hostname, ...tlsConnectOptions(backend.tls) })
      : net.connect({ host: target.hostname, port })
  if (upstream instanceof net.Socket) upstream.setNoDelay(true)
  socket.setNoDelay(true)
  backend.inflight++
  let connected = false
  let released = false
  /** Something of the backend's answer went to the client (a 1xx head, the final answer's head, or the switch). */
  let sent = false
  let switched = false
  const release = (): void => { if (!released) { released = true; backend.inflight-- } }
  const timer = setTimeout(() => { if (!connected) upstream.destroy(new Error('connect timeout')) }, action.connectTimeout)
  // The route's timeout bounds the wait for the backend's answer to the handshake, as for any request.
  const answerTimer = action.timeout > 0
    ? setTimeout(() => { if (!switched) upstream.destroy(new Error('answer timeout')) }, action.timeout)
    : undefined
  const parser = responseParser(opts.maxHeaderBytes)
  const websocket = String(req.headers.upgrade ?? '').toLowerCase() === 'websocket'
  /** Without llhttp's response parser (not on this Node): what was read of the answer's head so far. */
  let headText = ''
  let finalStatus = 0
  let switchTo: string | undefined
  let ended = false

  const splice = (rest: Buffer): void => {
    switched = true
    sent = true
    if (answerTimer !== undefined) clearTimeout(answerTimer)
    upstream.removeListener('data', onAnswer)
    if (switchTo !== undefined) socket.write(switchTo, 'latin1')
    if (rest.length > 0) socket.write(rest)
    if (head.length > 0) upstream.write(head)
    upstream.pipe(socket)
    socket.pipe(upstream)
    if (websocket) {
      (socket as Socket & { [kGoAway]?: () => void })[kGoAway] = () => {
        // Between messages is where this lands in practice; a frame cut in its middle ends the same way.
        upstream.unpipe(socket)
        socket.unpipe(upstream)
        const frames = closeFrames()
        socket.end(frames.toClient)
        upstream.end(frames.toBackend)
        setTimeout(() => { socket.destroy(); upstream.destroy() }, 1000).unref()
      }
    }
    // The client socket first: whatever timeout its HTTP server left on it is replaced.
    idleTimeout(socket, upstream, opts.idleTimeout)
  }

  const onAnswer = (chunk: Buffer): void => {
    if (parser === undefined) {
      headText += chunk.toString('latin1')
      const end = headText.indexOf('\r\n\r\n')
      if (end === -1) { if (headText.length > opts.maxHeaderBytes) upstream.destroy(new Error('answer head too large')); return }
      if (!/^HTTP\/1\.[01] 101 /.test(headText)) { upstream.destroy(new Error('the backend did not switch protocols')); return }
      switchTo = headText
      splice(Buffer.alloc(0))
      return
    }
    const r = parser.execute(chunk)
    if (typeof r !== 'number') { upstream.destroy(new Error(`the backend's answer is not HTTP/1.1 (${(r as Error & { code?: string }).code ?? 'parse error'})`)); return }
    // llhttp stops at the end of a 101 head: the bytes after it are the new protocol's.
    if (switchTo !== undefined && !switched) splice(chunk.subarray(r))
  }

  if (parser !== undefined && parserEvents !== undefined) {
    parser[parserEvents.headersComplete] = (_major: number, _minor: number, hdrs: string[], _method: number, _url: string, status: number, reason: string): number => {
      let out = `HTTP/1.1 ${status} ${reason}\r\n`
      // A 101's Connection/Upgrade/Sec-WebSocket-* are the switch itself and go on; other answers lose hop-by-hop.
      for (let i = 0; i < hdrs.length; i += 2) {
        const name = hdrs[i] as string
        if (status === 101 || !HOP.has(name.toLowerCase())) out += `${name}: ${hdrs[i + 1] as string}\r\n`
      }
      if (status === 101) { switchTo = `${out}\r\n`; return 0 }
      // 1xx heads (100, 103) go on as they are; the final answer is the last on this connection.
      sent = true
      if (status < 200) { socket.write(`${out}\r\n`, 'latin1'); return 0 }
      finalStatus = status
      socket.write(`${out}x-request-id: ${scanned.requestId}\r\nconnection: close\r\n\r\n`, 'latin1')
      return 0
    }
    parser[parserEvents.body] = (b: Buffer): void => { if (finalStatus !== 0) socket.write(b) }
    parser[parserEvents.messageComplete] = (): void => {
      if (finalStatus === 0 || ended) return
      // The backend said no: its answer ends the client's connection (read to its close), nothing is spliced.
      ended = true
      log.debug({ backend: backend.url, status: finalStatus }, 'backend refused the upgrade')
      upstream.removeListener('data', onAnswer)
      upstream.destroy()
      socket.once('finish', () => { socket.destroy() })
      socket.end()
    }
  }
  const freeParser = (): void => { if (parser !== undefined) setImmediate(() => { parser.close() }) }

  const onOpen = (): void => {
    connected = true
    clearTimeout(timer)
    upstream.on('data', onAnswer)
    upstream.write(handshake)
  }
  if (opener !== undefined) setImmediate(onOpen) // a tunnel stream is open at once
  else upstream.once(target.protocol === 'https:' ? 'secureConnect' : 'connect', onOpen)
  upstream.on('error', (err) => {
    clearTimeout(timer)
    if (answerTimer !== undefined) clearTimeout(answerTimer)
    release()
    // While nothing went back to the client (a tunnel stream counts as connected at once, but its backend may still
    // fail to reach the target), the client can still get a 502 or 504.
    if (!sent) {
      backend.failures++
      member.failures++
      log.debug({ err, backend: backend.url }, 'upgrade failed before an answer')
      const timedOut = err.message === 'connect timeout' || err.message === 'answer timeout'
      if (!ended) refuse(socket, timedOut ? '504 Gateway Timeout' : '502 Bad Gateway', connected ? `the backend did not answer the upgrade: ${err.message}` : 'could not connect to the backend', scanned.requestId)
    } else if (!ended) {
      socket.destroy()
    }
    ended = true
  })
  upstream.on('close', () => {
    release()
    freeParser()
    clearTimeout(timer)
    if (answerTimer !== undefined) clearTimeout(answerTimer)
    if (ended) return
    if (!sent) { if (!socket.destroyed) refuse(socket, '502 Bad Gateway', 'the backend closed without answering the upgrade', scanned.requestId); return }
    // A refusal whose body runs to the backend's close ends here, in full; a splice ends with its backend.
    if (finalStatus !== 0 && !switched) { ended = true; socket.once('finish', () => { socket.destroy() }); socket.end(); return }
    socket.destroy()
  })
  socket.on('close', () => { upstream.destroy() })
}

function statusText (status: number): string {
  return STATUS_CODES[status] ?? 'Status'
}
