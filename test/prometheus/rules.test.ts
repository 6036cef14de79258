import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { runCommand } from '../env/run.js';

const dir = path.join(projectRoot(), 'charts', 'tally', 'prometheus');

describe('Prometheus alerting rules', () => {
  it('pass promtool check rules', async () => {
    const result = await runCommand('promtool', ['check', 'rules', path.join(dir, 'rules.yaml')]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('fire exactly as their promtool unit tests expect', async () => {
    const result = await runCommand('promtool', ['test', 'rules', path.join(dir, 'rules.test.yaml')]);
    expect(`${result.stdout}${result.stderr}`).toContain('SUCCESS');
    expect(result.code).toBe(0);
  });
});
