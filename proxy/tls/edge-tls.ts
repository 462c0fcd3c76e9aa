// The edge's view of its certificates: rows for the status JSON and the expiry gauge, and the event log lines
// for certificate loads, rejected replacements, coming expiry (CertStore warns 14 days ahead) and OCSP stapling.
import type { Logger } from 'pino'
import type { CertStoreEvent } from './sni.js'
import { HttpsListener } from '../listen/https-listener.js'

export interface CertificateRow {
  readonly listener: string
  readonly cert: string
  readonly names: readonly string[]
  readonly not_after: string
  readonly days_left: number
  readonly default: boolean
}

export function certificateRows (listeners: Iterable<unknown>): CertificateRow[] {
  const rows: CertificateRow[] = []
  for (const l of listeners) {
    if (!(l instanceof HttpsListener)) continue
    for (const c of l.certs.certificates()) {
      rows.push({ listener: l.config.name, cert: c.cert, names: c.names, not_after: c.notAfter.toISOString(), days_left: c.daysLeft, default: c.isDefault })
    }
  }
  return rows
}

/** A CertStore onEvent per listener that writes to the event log at a level fitting the event. */
export function logCertEvent (log: Logger): (listener: string) => (e: CertStoreEvent) => void {
  return listener => e => {
    switch (e.type) {
      case 'loaded': log.info({ listener, cert: e.cert, names: e.names, not_after: e.notAfter.toISOString() }, 'certificate loaded'); return
      case 'expiring': log.warn({ listener, cert: e.cert, names: e.names, not_after: e.notAfter.toISOString(), days_left: e.daysLeft }, 'certificate expires soon'); return
      case 'expired': log.error({ listener, cert: e.cert, names: e.names, not_after: e.notAfter.toISOString() }, 'certificate has expired'); return
      case 'rejected': log.error({ listener, cert: e.cert, reason: e.reason, kept_previous: e.keptPrevious }, 'certificate refused'); return
      case 'skipped': log.warn({ listener, cert: e.cert, reason: e.reason }, 'certificate skipped'); return
      case 'removed': log.info({ listener, cert: e.cert }, 'certificate removed'); return
      case 'ocsp-stapled': {
        const fields = { listener, cert: e.cert, responder: e.responder, next_update: e.nextUpdate?.toISOString() }
        if (e.renewed) log.debug(fields, 'OCSP response renewed')
        else log.info(fields, 'OCSP response stapled')
        return
      }
      case 'ocsp-failed': log.warn({ listener, cert: e.cert, responder: e.responder, reason: e.reason, retry_in_ms: e.retryInMs, still_stapled: e.stillStapled }, 'OCSP fetch failed'); return
      case 'ocsp-revoked': log.error({ listener, cert: e.cert, responder: e.responder, status: e.status }, `the OCSP responder says the certificate is ${e.status}; nothing is stapled`); return
      case 'ocsp-skipped': log.debug({ listener, cert: e.cert, reason: e.reason }, 'OCSP stapling skipped')
    }
  }
}
