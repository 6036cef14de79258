import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/**
 * The folder holding Tally's package.json. Code runs both from source (tests) and from dist/,
 * at different depths, so look upwards instead of counting `..`.
 */
export function projectRoot(): string {
  if (cached) return cached;
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (
      existsSync(manifest) &&
      (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'tally'
    ) {
      return (cached = dir);
    }
    if (path.dirname(dir) === dir)
      throw new Error('cannot find the Tally project root (package.json named "tally")');
  }
}
