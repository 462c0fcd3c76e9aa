// README's tunnel walkthrough, run as written: the lines of the ```sh block after the "tunnel-walkthrough" marker go
// one by one into one bash (so exports and variables carry over, as in the reader's shell), with `edge-proxy` on
// PATH, in a temporary directory holding a copy of proxy.example.toml. Only the port numbers are changed, the
// same way in the config copy and in the lines (free loopback ports instead of 8080, 7000...), so the test never
// takes a fixed port. If README and the code drift apart, this fails.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './helpers.js'
import { Lines } from './tunnel-edge-util.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const MAIN = join(ROOT, 'dist/cli/main.js')

/** The lines of the first ```sh block after the marker, with backslash continuations joined. */
export function walkthroughLines (readme: string): string[] {
  const at = readme.indexOf('<!-- tunnel-walkthrough')
  assert.ok(at !== -1, 'README has the tunnel-walkthrough marker')
  const open = readme.indexOf('```sh\n', at)
  const close = readme.indexOf('\n```', open + 6)
  const body = readme.slice(open + 6, close).replace(/\\\n\s*/g, '')
  return body.split('\n').filter(l => l.trim() !== '')
}

/** Every loopback port named in `texts`, mapped to a free one. */
async function portMap (...texts: string[]): Promise<Map<string, string>> {
  const map = new Map<string, string>()
  for (const t of texts) {
    for (const m of t.matchAll(/(?:127\.0\.0\.1|localhost):(\d{2,5})\b/g)) {
      const p = m[1] as string
      if (!map.has(p)) map.set(p, String(await freePort()))
    }
  }
  return map
}

function remap (text: string, map: Map<string, string>): string {
  return text.replace(/(127\.0\.0\.1|localhost):(\d{2,5})\b/g, (_all, host: string, p: string) => `${host}:${map.get(p) ?? p}`)
}

test('README tunnel walkthrough, line by line: secret, config, edge, token, client, curl through the tunnel', async t => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const example = readFileSync(join(ROOT, 'proxy.example.toml'), 'utf8')
  const lines = walkthroughLines(readme)
  assert.ok(lines.some(l => l.startsWith('curl ')), 'the walkthrough ends in a curl through the edge')
  const map = await portMap(example, ...lines)

  const dir = mkdtempSync(join(tmpdir(), 'edge-readme-'))
  const bin = join(dir, 'bin')
  const work = join(dir, 'work')
  mkdirSync(bin)
  mkdirSync(work)
  writeFileSync(join(bin, 'edge-proxy'), `#!/bin/sh\nexec "${process.execPath}" "${MAIN}" "$@"\n`)
  chmodSync(join(bin, 'edge-proxy'), 0o755)
  writeFileSync(join(work, 'proxy.example.toml'), remap(example, map))

  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` }
  delete env.EDGE_TUNNEL_SECRET
  const sh = spawn('bash', ['--norc', '--noprofile', '-s'], { cwd: work, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] })
  t.after(() => {
    try { process.kill(-(sh.pid as number), 'SIGKILL') } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true })
  })
  const out = new Lines(sh.stdout)
  const err = new Lines(sh.stderr)
  let curlOut = ''
  for (let i = 0; i < lines.length; i++) {
    const line = remap(lines[i] as string, map)
    const from = out.mark
    const errFrom = err.mark
    sh.stdin.write(`${line}\necho "__step_${i}__ $?"\n`)
    const done = await out.wait(new RegExp(`^__step_${i}__ (\\d+)$`), 30_000, from)
    assert.equal(done.split(' ')[1], '0', `step ${i + 1} (${line}) exited 0; stderr:\n${err.lines.slice(errFrom).join('\n')}`)
    // A background step is running once it says so, as a reader would see it before going on.
    if (/^edge-proxy --config .*&/.test(line.trim())) await err.wait(/"msg":"admin listening"/, 20_000, errFrom)
    if (/^edge-proxy tunnel .*&/.test(line.trim())) await err.wait(/granted http:app\.tunnel\.test/, 20_000, errFrom)
    // The edge's access log shares this stdout (the example logs to stdout): the answer is the demo backend's line.
    if (line.startsWith('curl ')) curlOut = out.lines.slice(from, -1).find(l => l.includes('"body_bytes"')) ?? out.lines.slice(from).join('\n')
  }
  const answer = JSON.parse(curlOut) as { backend: string, host: string }
  assert.equal(answer.host, 'app.tunnel.test', curlOut)
  assert.equal(typeof answer.backend, 'string', curlOut) // a demo backend answered, through the tunnel
  assert.equal(err.count(/EP_ERR_/), 0, err.lines.join('\n'))
})
