import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { createTestNamespace, kubectl } from '../env/context.js';

/** The README's YAML examples of Tally resources, as written. */
async function readmeExamples(): Promise<string[]> {
  const readme = await readFile(path.join(projectRoot(), 'README.md'), 'utf8');
  return [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)]
    .map((m) => m[1]!)
    .filter((block) => block.includes('apiVersion: tally.dev/v1alpha1'));
}

describe('the README’s resource examples', () => {
  it('are accepted by the API server as written (one of each kind)', async () => {
    const examples = await readmeExamples();
    const kinds = examples.flatMap((e) => [...e.matchAll(/^kind: (\w+)$/gm)].map((m) => m[1]));
    expect(kinds).toEqual(
      expect.arrayContaining(['StripeIntegration', 'MetaPixel', 'CalIntegration', 'Secret']),
    );
    const ns = await createTestNamespace('readme');
    for (const example of examples) {
      const applied = await kubectl(
        ['apply', '--server-side', '--dry-run=server', '-f', '-'],
        example.replaceAll('namespace: growth', `namespace: ${ns}`),
      );
      expect(applied.stderr).toBe('');
      expect(applied.code).toBe(0);
    }
  });
});
