import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../runtime/index.js';

export interface LocalPipelineOptions {
  dir: string;
  /** The tally CLI to run (dist/cli/tally.js). */
  cliPath: string;
  /** DATABASE_URL for the children; without it ingest starts an embedded PostgreSQL in dir/postgres. */
  databaseUrl?: string;
  /** Also run `tally forwarder` (off until the forwarder command exists). */
  forwarder: boolean;
  log: Logger;
}

/**
 * The pipeline as child processes of the operator, for machines without a kubelet (tests, `tally dev`):
 * the same rendered configuration in a file (replaced atomically; ingest reloads it itself), each child
 * restarted with backoff when it exits.
 */
export class LocalPipeline {
  readonly configPath: string;
  private readonly children = new Map<string, Supervised>();
  private written: string | undefined;

  constructor(private readonly opts: LocalPipelineOptions) {
    this.configPath = path.join(opts.dir, 'tally.yaml');
  }

  /** Writes the configuration when it changed; true when the file was replaced. */
  async writeConfig(text: string): Promise<boolean> {
    if (this.written === undefined)
      this.written = await readFile(this.configPath, 'utf8').catch(() => undefined);
    if (this.written === text) return false;
    await mkdir(this.opts.dir, { recursive: true });
    const tmp = `${this.configPath}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, this.configPath);
    this.written = text;
    return true;
  }

  /** Starts the children once the first configuration is on disk; idempotent. */
  async ensureRunning(): Promise<void> {
    await mkdir(path.join(this.opts.dir, 'logs'), { recursive: true });
    const config = ['--config', this.configPath];
    if (!this.children.has('ingest')) {
      this.children.set(
        'ingest',
        new Supervised('ingest', this.opts, [
          'ingest',
          ...config,
          '--data-dir',
          path.join(this.opts.dir, 'postgres'),
        ]),
      );
    }
    if (this.opts.forwarder && !this.children.has('forwarder')) {
      this.children.set('forwarder', new Supervised('forwarder', this.opts, ['forwarder', ...config]));
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.children.values()].map((c) => c.stop()));
    this.children.clear();
  }
}

class Supervised {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private stopped = false;
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly name: string,
    private readonly opts: LocalPipelineOptions,
    private readonly args: string[],
  ) {
    this.launch();
  }

  private launch(): void {
    const log = createWriteStream(path.join(this.opts.dir, 'logs', `${this.name}.log`), { flags: 'a' });
    const env = { ...process.env };
    if (this.opts.databaseUrl) env.DATABASE_URL = this.opts.databaseUrl;
    const child = spawn(process.execPath, [this.opts.cliPath, ...this.args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    const started = performance.now();
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        log.end();
        resolve();
        if (this.stopped) return;
        this.failures = performance.now() - started > 60_000 ? 1 : this.failures + 1;
        const delay = Math.min(1000 * 2 ** (this.failures - 1), 30_000);
        this.opts.log.warn(
          { process: this.name, exit: signal ?? code, restartInMs: delay },
          'local pipeline process exited; restarting',
        );
        this.timer = setTimeout(() => this.launch(), delay);
      });
      child.on('error', () => {});
    });
    this.opts.log.info({ process: this.name, pid: child.pid }, 'started local pipeline process');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(killer);
    }
  }
}
