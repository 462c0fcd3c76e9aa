// The budget owner's alert: scale.capped and scale.saturated are POSTed to each notify URL and mailed to each
// mailto: address (through [alerts] smtp, with nodemailer). In the background, never blocking a decision.
import { hostname } from 'node:os'
import nodemailer, { type Transporter } from 'nodemailer'
import type { Logger } from 'pino'
import type { AlertsConfig, NotifyTarget } from '../config/scale.js'
import type { ScaleEvent } from './scaler.js'
import { Deliveries, postJson } from './scale-providers/post.js'

/** The kinds that reach notify targets. */
export const NOTIFY_KINDS: ReadonlySet<string> = new Set(['scale.capped', 'scale.saturated'])

export class ScaleNotifier {
  readonly #deliveries = new Deliveries()
  #mail: Transporter | undefined
  #closed = false
  constructor (private readonly alerts: AlertsConfig, private readonly log: Logger) {}

  notify (event: ScaleEvent, targets: readonly NotifyTarget[]): void {
    if (this.#closed || !NOTIFY_KINDS.has(event.kind)) return
    for (const t of targets) {
      if (t.kind === 'http') this.#deliveries.run(() => postJson(t.url, event, this.log, {}, () => this.#closed))
      else this.#deliveries.run(() => this.#sendMail(t.to, event))
    }
  }

  async #sendMail (to: string, e: ScaleEvent): Promise<void> {
    if (this.alerts.smtp === undefined) return
    this.#mail ??= nodemailer.createTransport(this.alerts.smtp)
    const spend = e.costPerHour === undefined ? 'no cost configured' : `${e.costPerHour} per hour at ${e.to} backends`
    const cap = e.maxCostPerHour === undefined ? 'no cap' : `${e.maxCostPerHour} per hour`
    try {
      await this.#mail.sendMail({
        from: this.alerts.from ?? `edge-proxy@${hostname()}`,
        to,
        subject: `edge-proxy: ${e.kind} in pool ${e.pool}`,
        text: [
          `pool: ${e.pool}`,
          `event: ${e.kind} at ${e.time}`,
          `backends: ${e.from} -> ${e.to}`,
          `spend: ${spend}`,
          `cap: ${cap}`,
          `observed: ${e.observed} ms (target ${e.target} ms) at ${e.rps} req/s`,
          `reason: ${e.reason}`,
          '',
          JSON.stringify(e),
        ].join('\n'),
      })
    } catch (err) {
      this.log.warn({ to, reason: (err as Error).message }, 'scale: alert mail failed')
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#deliveries.settle(2_000)
    this.#mail?.close()
  }
}
