// Two loggers: the access log (one JSON line per request, or off) and the event log (stderr, by level).
import pino, { type Logger } from 'pino'
import pretty from 'pino-pretty'

/** The event log on stderr: JSON lines, or pino-pretty's coloured lines for a person at a terminal. */
export function createEventLog (level: string, format: 'json' | 'pretty' = 'json'): Logger {
  const opts = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }
  if (format === 'pretty') {
    return pino(opts, pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'hostname' }))
  }
  return pino(opts, pino.destination({ dest: 2, sync: false }))
}

export interface AccessRecord {
  readonly requestId: string
  readonly clientIp: string
  readonly method: string
  readonly host: string
  readonly path: string
  readonly status: number
  readonly bytesIn: number
  readonly bytesOut: number
  readonly durationMs: number
  readonly route: string
  readonly backend: string
  readonly error: string | undefined
}

/** One tls passthrough connection, logged when it ends (or when it is refused before a backend was chosen). */
export interface ConnectionRecord {
  readonly listener: string
  readonly clientIp: string
  readonly sni: string
  readonly backend: string
  readonly bytesIn: number
  readonly bytesOut: number
  readonly durationMs: number
  /** closed | connect-failed | upstream-error | rejected (no route, bad or slow ClientHello) */
  readonly end: string
  readonly error: string | undefined
}

export interface AccessLog {
  write (r: AccessRecord): void
  connection (r: ConnectionRecord): void
  flush (): void
}

/** `access` is "stdout", "off" or a file path; returns undefined when off so callers skip all work. */
export function createAccessLog (access: string): AccessLog | undefined {
  if (access === 'off') return undefined
  const dest = access === 'stdout'
    ? pino.destination({ dest: 1, sync: false })
    : pino.destination({ dest: access, mkdir: true, sync: false, append: true })
  const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, dest)
  return {
    write (r) {
      log.info({
        request_id: r.requestId,
        client_ip: r.clientIp,
        method: r.method,
        host: r.host,
        path: r.path,
        status: r.status,
        bytes_in: r.bytesIn,
        bytes_out: r.bytesOut,
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        route: r.route,
        backend: r.backend,
        ...(r.error === undefined ? {} : { error: r.error }),
      }, 'request')
    },
    connection (r) {
      log.info({
        listener: r.listener,
        client_ip: r.clientIp,
        sni: r.sni,
        backend: r.backend,
        bytes_in: r.bytesIn,
        bytes_out: r.bytesOut,
        duration_ms: Math.round(r.durationMs * 1000) / 1000,
        end: r.end,
        ...(r.error === undefined ? {} : { error: r.error }),
      }, 'connection')
    },
    flush () {
      try { dest.flushSync() } catch { /* not ready yet or already closed */ }
    },
  }
}
