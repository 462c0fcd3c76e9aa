// Tunnels end to end: a client that freezes (SIGSTOP: no FIN, no RST, just silence) is found dead by the edge's
// heartbeat; the requests stuck on it fail with 502, new ones go to the live client, and once thawed the frozen
// client reconnects on its own.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { httpServer, request, startEdge, startRegisteredTunnel, type Reply } from './tunnel-edge-util.js'

function whoami (id: string) {
  return (_req: IncomingMessage, res: ServerResponse): void => { res.end(id) }
}

test('a frozen tunnel client is dropped by the heartbeat and comes back after it thaws', async t => {
  const edge = await startEdge(t, { heartbeat: '1s' })
  const a = await httpServer(t, whoami('a'))
  const b = await httpServer(t, whoami('b'))
  const ta = await startRegisteredTunnel(t, edge, 'app.tunnel.test', a.url)
  await startRegisteredTunnel(t, edge, 'app.tunnel.test', b.url)
  const from = edge.log.mark
  const frozenAt = performance.now()
  ta.child.kill('SIGSTOP')
  t.after(() => { ta.child.kill('SIGCONT') })
  // Round robin sends some of these to the frozen client: they wait, then fail when the session is declared dead.
  const tries = await Promise.all(Array.from({ length: 4 }, () => request(edge.ports.http, 'app.tunnel.test').then((r): Reply | Error => r, (e: Error) => e)))
  await edge.log.wait(/"msg":"tunnel unregistered"/, 15_000, from)
  const dead = (performance.now() - frozenAt) / 1000
  const outcomes = tries.map(r => r instanceof Error ? r.message : `${r.status}${r.status === 200 ? ` ${r.body}` : ''}`)
  assert.ok(outcomes.every(o => o === '200 b' || o === '502'), outcomes.join(', '))
  assert.ok(outcomes.includes('502') && outcomes.includes('200 b'), outcomes.join(', '))
  for (let i = 0; i < 6; i++) assert.equal((await request(edge.ports.http, 'app.tunnel.test')).body, 'b')
  // Thawed, the client finds its session gone and dials again within its backoff.
  const back = edge.log.mark
  ta.child.kill('SIGCONT')
  await edge.log.wait(/"msg":"tunnel registered"/, 10_000, back)
  const seen = new Set<string>()
  for (let i = 0; i < 6; i++) seen.add((await request(edge.ports.http, 'app.tunnel.test')).body)
  assert.deepEqual([...seen].sort(), ['a', 'b'])
  t.diagnostic(`frozen client unregistered ${dead.toFixed(1)} s after SIGSTOP (heartbeat 1s + 10 s ping timeout); in flight: ${outcomes.join(', ')}`)
})
