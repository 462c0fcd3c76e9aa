// [ha] as the issue (16) spells it: every key accepted, defaults, and each problem named by its key path.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfigText, summarize } from '../config/load.js'

const HEAD = `[[listeners]]
name = "web"
listen = "127.0.0.1:0"
`

function problems (text: string): string[] {
  try {
    parseConfigText(text, 'ha.toml')
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    return err.problems.map(p => `${p.path}: ${p.message}`)
  }
  assert.fail('the config was accepted')
}

test('[ha] with every key of the issue loads, env: secret resolved, durations in ms', () => {
  process.env.EDGE_HA_SECRET_T = 'a-secret-of-enough-bytes'
  const c = parseConfigText(`${HEAD}
[ha]
node_id = "edge-a"
listen = "198.18.0.1:7946"
peers = ["198.18.0.2:7946"]
secret = "env:EDGE_HA_SECRET_T"
priority = 150
preempt = false
advert_interval = "200ms"
dead_after = 3
witness = "198.18.0.254:80"
floating_ip = "198.18.0.100/24"
interface = "veth-a"
ip_mode = "linux"
on_promote = "./hooks/promote.sh"
on_demote = "./hooks/demote.sh"
min_spares = 1
replenish = "./hooks/start-spare.sh"
`, '/etc/edge/proxy.toml')
  const h = c.ha
  assert.ok(h !== undefined)
  assert.equal(h.nodeId, 'edge-a')
  assert.deepEqual(h.listen, { host: '198.18.0.1', port: 7946 })
  assert.deepEqual(h.peers, [{ host: '198.18.0.2', port: 7946 }])
  assert.equal(h.secret.toString(), 'a-secret-of-enough-bytes')
  assert.equal(h.priority, 150)
  assert.equal(h.preempt, false)
  assert.equal(h.advertInterval, 200)
  assert.equal(h.deadAfter, 3)
  assert.deepEqual(h.witness, { host: '198.18.0.254', port: 80 })
  assert.deepEqual(h.floatingIp, { ip: '198.18.0.100', prefix: 24, cidr: '198.18.0.100/24', family: 4 })
  assert.equal(h.interface, 'veth-a')
  assert.equal(h.ipMode, 'linux')
  assert.equal(h.onPromote, './hooks/promote.sh')
  assert.equal(h.onDemote, './hooks/demote.sh')
  assert.equal(h.minSpares, 1)
  assert.equal(h.replenish, './hooks/start-spare.sh')
  assert.equal(h.hookDir, '/etc/edge')
  assert.ok(Object.isFrozen(h) && Object.isFrozen(h.peers))
  assert.match(summarize(c), /ha edge-a priority 150, heartbeat udp 198\.18\.0\.1:7946 -> 198\.18\.0\.2:7946, every 200ms, dead after 3; 198\.18\.0\.100\/24 on veth-a, witness 198\.18\.0\.254:80/)
})

test('[ha] defaults: priority 100, preempt false, advert 1s, dead_after 3, linux mode, no spares', () => {
  const c = parseConfigText(`${HEAD}
[ha]
node_id = "b"
listen = "127.0.0.1:7946"
secret = "0123456789abcdef"
floating_ip = "198.18.0.100/24"
interface = "veth-b"
`)
  const h = c.ha
  assert.ok(h !== undefined)
  assert.equal(h.priority, 100)
  assert.equal(h.preempt, false)
  assert.equal(h.advertInterval, 1000)
  assert.equal(h.deadAfter, 3)
  assert.equal(h.ipMode, 'linux')
  assert.equal(h.minSpares, 0)
  assert.deepEqual(h.peers, [])
  assert.equal(h.witness, undefined)
})

test('no [ha]: standalone', () => {
  assert.equal(parseConfigText(HEAD).ha, undefined)
})

test('command mode needs on_promote only; floating_ip is optional there', () => {
  const c = parseConfigText(`${HEAD}
[ha]
node_id = "a"
listen = "127.0.0.1:7946"
secret = "0123456789abcdef"
ip_mode = "command"
on_promote = "do-assign reserved-ip"
`)
  assert.equal(c.ha?.ipMode, 'command')
  assert.equal(c.ha?.floatingIp, undefined)
  assert.deepEqual(problems(`${HEAD}
[ha]
node_id = "a"
listen = "127.0.0.1:7946"
secret = "0123456789abcdef"
ip_mode = "command"
`), ['ha.on_promote: ip_mode = "command" needs on_promote, the command that moves the IP here'])
})

test('each [ha] problem names its key', () => {
  delete process.env.EDGE_HA_MISSING
  const got = problems(`${HEAD}
[ha]
node_id = "a"
listen = "127.0.0.1:7946"
peers = ["127.0.0.1:7946"]
secret = "env:EDGE_HA_MISSING"
advert_interval = "5ms"
floating_ip = "198.18.0.300/24"
min_spares = 1
`)
  assert.deepEqual(got.map(p => p.split(':')[0]).sort(), ['ha.advert_interval', 'ha.floating_ip', 'ha.interface', 'ha.peers[0]', 'ha.replenish', 'ha.secret'])
  assert.ok(got.some(p => /EDGE_HA_MISSING is not set/.test(p)))
  assert.ok(got.some(p => /own listen address/.test(p)))
})

test('schema-level [ha] problems: bad types, ranges, enum, unknown keys with a hint', () => {
  const got = problems(`${HEAD}
[ha]
node_id = "has space"
listen = "nowhere"
secret = "0123456789abcdef"
priority = 0
dead_after = 1
ip_mode = "vrrp"
floating_ip = "198.18.0.100/24"
interface = "veth-a"
preemt = true
`)
  const paths = got.map(p => p.split(':')[0]).sort()
  assert.deepEqual(paths, ['ha.dead_after', 'ha.ip_mode', 'ha.listen', 'ha.node_id', 'ha.preemt', 'ha.priority'])
  assert.ok(got.some(p => /did you mean "preempt"/.test(p)))
})

test('a short secret is refused', () => {
  assert.ok(problems(`${HEAD}
[ha]
node_id = "a"
listen = "127.0.0.1:7946"
secret = "short"
floating_ip = "198.18.0.100/24"
interface = "veth-a"
`).some(p => p.startsWith('ha.secret: an HA secret is at least 16 bytes')))
})
