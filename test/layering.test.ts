// The house's layering, kept by a test: config/ stands alone, only cli/main.ts ends the process, and no import
// circles come back (issue 13). Reads the TypeScript sources beside dist/.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const FOLDERS = ['cli', 'config', 'proxy', 'health', 'packer', 'ha', 'cluster']

function sources (dir: string): string[] {
  let entries: string[]
  try { entries = readdirSync(dir) } catch { return [] }
  const out: string[] = []
  for (const e of entries) {
    const p = join(dir, e)
    if (statSync(p).isDirectory()) out.push(...sources(p))
    else if (e.endsWith('.ts') && !e.endsWith('.d.ts')) out.push(p)
  }
  return out
}

const files = FOLDERS.flatMap(f => sources(join(root, f)))

/** Relative imports of a file (type-only ones included: they still tie the layers), as project paths. */
function importsOf (file: string, runtimeOnly = false): string[] {
  const text = readFileSync(file, 'utf8')
  const out: string[] = []
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s([^'"]*?)from\s+'(\.[^']+)'/g)) {
    // `import type { X }` is erased at build: it cannot make a load-order circle.
    if (runtimeOnly && /^type\s/.test(m[1] as string)) continue
    out.push(relative(root, resolve(dirname(file), (m[2] as string).replace(/\.js$/, '.ts'))))
  }
  for (const m of text.matchAll(/import\(\s*'(\.[^']+)'\s*\)/g)) {
    out.push(relative(root, resolve(dirname(file), (m[1] as string).replace(/\.js$/, '.ts'))))
  }
  return out
}

test('the sources are found', () => {
  assert.ok(files.length > 50, `found ${files.length} source files under ${root}`)
})

test('config/ imports nothing from proxy/, health/ or cli/', () => {
  const bad: string[] = []
  for (const f of files.filter(x => relative(root, x).startsWith('config/'))) {
    for (const i of importsOf(f)) if (/^(proxy|health|cli)\//.test(i)) bad.push(`${relative(root, f)} -> ${i}`)
  }
  assert.deepEqual(bad, [])
})

test('only cli/main.ts ends the process', () => {
  const bad = files
    .filter(f => relative(root, f) !== 'cli/main.ts')
    .filter(f => /process\.exit\s*\(/.test(readFileSync(f, 'utf8').replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '')))
    .map(f => relative(root, f))
  assert.deepEqual(bad, [])
})

test('no import circles among the sources (what is loaded at run time; `import type` is erased)', () => {
  const graph = new Map<string, string[]>()
  for (const f of files) graph.set(relative(root, f), importsOf(f, true).filter(i => i !== relative(root, f)))
  const state = new Map<string, 'open' | 'done'>()
  const cycles: string[] = []
  const walk = (node: string, path: string[]): void => {
    state.set(node, 'open')
    for (const next of graph.get(node) ?? []) {
      if (!graph.has(next)) continue
      const s = state.get(next)
      if (s === 'open') cycles.push([...path.slice(path.indexOf(next)), next].join(' -> '))
      else if (s === undefined) walk(next, [...path, next])
    }
    state.set(node, 'done')
  }
  for (const n of graph.keys()) if (!state.has(n)) walk(n, [n])
  assert.deepEqual(cycles, [])
})
