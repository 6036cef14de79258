import { describe, expect, it } from 'vitest';
import { runTally } from './tally-cli.js';

async function tally(args: string[]) {
  const run = runTally(args);
  const code = await run.exited;
  return { code, output: run.output() };
}

describe('the tally CLI', () => {
  it('lists every command in --help', async () => {
    const { code, output } = await tally(['--help']);
    expect(code).toBe(0);
    for (const command of ['operator', 'ingest', 'forwarder', 'dev', 'trigger', 'crds']) {
      expect(output).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    }
  });

  it.each(['operator', 'ingest', 'forwarder', 'dev', 'trigger', 'crds'])(
    'explains `tally %s --help`',
    async (command) => {
      const { code, output } = await tally([command, '--help']);
      expect(code).toBe(0);
      expect(output).toContain(`Usage: tally ${command}`);
    },
  );

  it('prints the CRDs as YAML documents that kubectl can apply', async () => {
    const { code, output } = await tally(['crds']);
    expect(code).toBe(0);
    expect(output.split(/^---$/m)).toHaveLength(3);
    expect(output).toContain('name: stripeintegrations.tally.dev');
  });

  it('fails with a usage hint on an unknown command', async () => {
    const { code, output } = await tally(['deploy']);
    expect(code).toBe(1);
    expect(output).toContain("error: unknown command 'deploy'");
  });
});
