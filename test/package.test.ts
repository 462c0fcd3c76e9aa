// What a user installs: the package name is this project's own, the runtime dependencies are exactly what the edge
// imports (tests and the bench bring theirs as dev dependencies), and `npm start` does not rebuild a current dist/.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string, bin: Record<string, string>, dependencies: Record<string, string>, scripts: Record<string, string> }

function sources (dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap(e =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [readFileSync(join(ROOT, dir, e.name), 'utf8')] : [])
}

test('package: its own name, the edge-proxy command, and runtime dependencies that the edge itself imports', () => {
  assert.notEqual(pkg.name, 'edge-proxy', 'edge-proxy on the registry is another project')
  assert.equal(pkg.bin['edge-proxy'], 'dist/cli/main.js')
  const runtime = ['cli', 'config', 'proxy', 'packer', 'health', 'ha'].flatMap(d => { try { return sources(d) } catch { return [] } }).join('\n')
  for (const dep of Object.keys(pkg.dependencies)) {
    assert.ok(runtime.includes(`from '${dep}'`) || runtime.includes(`from '${dep}/`), `dependency ${dep} is not imported by the edge: make it a devDependency or drop it`)
  }
  for (const dev of ['autocannon', 'playwright-core']) assert.equal(pkg.dependencies[dev], undefined, `${dev} is for the bench and tests only`)
})

test('npm start does not rebuild when dist/ is current (npm test has just built it)', () => {
  assert.match(pkg.scripts.start ?? '', /^node cli\/build-if-stale\.mjs && /)
  const r = spawnSync(process.execPath, [join(ROOT, 'cli/build-if-stale.mjs')], { cwd: ROOT, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.doesNotMatch(r.stdout + r.stderr, /tsc|build/, 'a current build was not redone')
})
