// The event log: a bounded ring of recent operational events (health changes, ejections, reloads, drains) with
// subscribers, served as JSON and as a server-sent event stream by the admin listener.

export interface EdgeEvent {
  readonly time: string
  readonly type: string
  readonly message: string
  readonly [key: string]: unknown
}

export type EventListener = (e: EdgeEvent) => void

export class EventLog {
  readonly #ring: EdgeEvent[] = []
  readonly #listeners = new Set<EventListener>()
  constructor (readonly capacity = 500) {}

  push (type: string, message: string, fields: Record<string, unknown> = {}): EdgeEvent {
    const e: EdgeEvent = { time: new Date().toISOString(), type, message, ...fields }
    this.add(e)
    return e
  }

  /** Adds an event made elsewhere (e.g. by a worker process). */
  add (e: EdgeEvent): void {
    this.#ring.push(e)
    if (this.#ring.length > this.capacity) this.#ring.splice(0, this.#ring.length - this.capacity)
    for (const l of this.#listeners) {
      try { l(e) } catch { /* a broken subscriber must not break the log */ }
    }
  }

  recent (n = 100): EdgeEvent[] {
    return this.#ring.slice(-n)
  }

  subscribe (l: EventListener): () => void {
    this.#listeners.add(l)
    return () => { this.#listeners.delete(l) }
  }
}
