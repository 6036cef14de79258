import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseConfig, type TallyConfig } from './tally-config.js';

export interface ConfigSourceEvents {
  /** `digest` is the SHA-256 of the file's text: the version of the configuration now live. */
  onReload?: (config: TallyConfig, digest: string) => void;
  onReloadFailed?: (err: Error) => void;
}

/**
 * The configuration file, kept current: a changed file is parsed and validated, and only a valid one
 * replaces the live configuration; an invalid one is reported and the last good one stays. Requests
 * take a snapshot with `current()`, so a reload never changes a request half-way.
 *
 * Kubernetes updates a mounted Secret by swapping a symlink in its folder, so the folder is watched,
 * not the file; a slow poll backs the watcher up on file systems that emit no events.
 */
export class ConfigSource {
  private config: TallyConfig;
  private digest: string;
  private watcher?: FSWatcher;
  private poller?: NodeJS.Timeout;
  private checking?: Promise<void>;
  private recheck = false;

  private constructor(
    readonly file: string,
    text: string,
    private readonly events: ConfigSourceEvents,
  ) {
    this.config = parseConfig(text, file);
    this.digest = sha256(text);
  }

  static async load(file: string, events: ConfigSourceEvents = {}): Promise<ConfigSource> {
    const source = new ConfigSource(file, await readFile(file, 'utf8'), events);
    events.onReload?.(source.config, source.digest);
    return source;
  }

  current(): TallyConfig {
    return this.config;
  }

  watch(pollMs = 5_000): void {
    this.watcher = watch(path.dirname(path.resolve(this.file)), () => void this.check());
    this.watcher.on('error', () => {});
    this.poller = setInterval(() => void this.check(), pollMs);
    this.poller.unref();
  }

  /** Re-reads the file now; resolves once any change is applied or rejected. */
  check(): Promise<void> {
    if (this.checking) {
      // The file may have changed after the running read started: read it once more afterwards.
      this.recheck = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.recheck = false;
        await this.reload();
      } while (this.recheck);
    })().finally(() => (this.checking = undefined));
    return this.checking;
  }

  close(): void {
    this.watcher?.close();
    clearInterval(this.poller);
  }

  private async reload(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      this.events.onReloadFailed?.(
        new Error(`cannot read ${this.file}: ${(err as NodeJS.ErrnoException).code}`),
      );
      return;
    }
    const digest = sha256(text);
    if (digest === this.digest) return;
    try {
      this.config = parseConfig(text, this.file);
      this.digest = digest;
      this.events.onReload?.(this.config, digest);
    } catch (err) {
      // Remember the bad text too, so it is reported once, not on every poll.
      this.digest = digest;
      this.events.onReloadFailed?.(err as Error);
    }
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
