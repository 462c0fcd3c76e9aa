// [server] upgrade_drain: how long an upgrade lets old processes drain; a duration, "30s" by default.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfigText } from '../config/load.js'

const LISTENER = `[[listeners]]
name = "web"
listen = "127.0.0.1:0"
`

test('config: [server] upgrade_drain defaults to 30s and takes a duration', () => {
  assert.equal(parseConfigText(LISTENER, 'a.toml').server.upgradeDrain, 30_000)
  assert.equal(parseConfigText(`[server]\nupgrade_drain = "2500ms"\n\n${LISTENER}`, 'b.toml').server.upgradeDrain, 2500)
})

test('config: [server] upgrade_drain that is not a duration names the key and the line', () => {
  assert.throws(() => parseConfigText(`[server]\nupgrade_drain = 30\n\n${LISTENER}`, 'c.toml'), (err: unknown) => {
    assert.ok(err instanceof ConfigError)
    assert.match(err.message, /c\.toml:2: server\.upgrade_drain: expected a duration/)
    return true
  })
})
