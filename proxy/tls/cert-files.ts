// Finding certificate/key pairs on disk and fingerprinting them cheaply (stat only) so unchanged files are not
// re-parsed on every reload pass.
import { readdir, stat } from 'node:fs/promises'
import { extname, join, resolve } from 'node:path'

export interface CertificateFiles { readonly cert: string, readonly key: string }

/** mtime, size and inode of both files: a rename-into-place changes the inode even within one mtime tick. */
export async function stampOf (files: CertificateFiles): Promise<string> {
  const [c, k] = await Promise.all([stat(files.cert), stat(files.key)])
  return `${c.mtimeMs}:${c.size}:${c.ino}|${k.mtimeMs}:${k.size}:${k.ino}`
}

/**
 * Every *.pem / *.crt in `dir` with a key beside it: NAME.key, NAME-key.pem or NAME.key.pem. Hidden files (our
 * own temp files among them) are ignored. Sorted by name, so precedence between overlapping names is stable.
 */
export async function scanDirectory (dir: string): Promise<{ pairs: CertificateFiles[], keyless: string[] }> {
  const abs = resolve(dir)
  const names = (await readdir(abs)).filter(n => !n.startsWith('.')).sort()
  const present = new Set(names)
  const pairs: CertificateFiles[] = []
  const keyless: string[] = []
  for (const n of names) {
    const ext = extname(n)
    if ((ext !== '.pem' && ext !== '.crt') || n.endsWith('-key.pem') || n.endsWith('.key.pem')) continue
    const stem = n.slice(0, -ext.length)
    const key = [`${stem}.key`, `${stem}-key.pem`, `${stem}.key.pem`].find(k => present.has(k))
    if (key === undefined) keyless.push(join(abs, n))
    else pairs.push({ cert: join(abs, n), key: join(abs, key) })
  }
  return { pairs, keyless }
}
