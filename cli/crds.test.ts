import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultCrdDirs, staleCrdFiles, writeCrdFiles } from './crds.js';

describe('tally crds', () => {
  it('the checked-in crds/ and charts/tally/crds/ are exactly what the schema source generates (run `npm run crds` to fix)', async () => {
    const dirs = defaultCrdDirs();
    expect(dirs.map((d) => path.relative(path.dirname(dirs[0]!), d))).toEqual(['crds', 'charts/tally/crds']);
    for (const dir of dirs) expect({ dir, stale: await staleCrdFiles(dir) }).toEqual({ dir, stale: [] });
  });

  it('notices a hand edit and a file the generator does not produce', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'crds-'));
    const [first] = await writeCrdFiles(dir);
    expect(await staleCrdFiles(dir)).toEqual([]);
    await writeFile(first!, (await readFile(first!, 'utf8')).replace('maxLength: 100', 'maxLength: 101'));
    await writeFile(path.join(dir, 'extra.yaml'), 'kind: Nothing\n');
    expect(await staleCrdFiles(dir)).toEqual([path.basename(first!), 'extra.yaml']);
  });
});
