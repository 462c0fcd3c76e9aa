// provider = "webhook": every decision that is not a hold is POSTed as JSON to `url`, with retries and backoff,
// in the background: the scaler and the proxy never wait for it.
import type { ScaleProviderConfig } from '../../config/scale.js'
import type { ScaleEvent } from '../scaler.js'
import { Deliveries, postJson } from './post.js'
import type { ScaleProvider, ScaleProviderDeps } from './provider.js'

export class WebhookProvider implements ScaleProvider {
  readonly kind = 'webhook'
  readonly #deliveries = new Deliveries()
  #closed = false
  constructor (private readonly config: Extract<ScaleProviderConfig, { kind: 'webhook' }>, private readonly deps: ScaleProviderDeps) {}

  async start (): Promise<void> {}
  starting (): number { return 0 }
  urls (): string[] { return [] }

  apply (event: ScaleEvent): void {
    if (this.#closed) return
    if (!this.#deliveries.run(() => postJson(this.config.url, event, this.deps.log, {}, () => this.#closed))) {
      this.deps.log.warn({ pool: this.deps.pool, url: this.config.url }, 'scale: webhook queue full; event dropped')
    }
  }

  async close (): Promise<void> {
    this.#closed = true
    await this.#deliveries.settle(2_000)
  }
}
