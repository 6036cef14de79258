export { freePort } from '../../core/net.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  logFile: string;
  /** Resolves when the process has exited, with its code or signal. */
  exited: Promise<string>;
  stop(graceMs?: number): Promise<void>;
}

/** Starts a long-running binary with its output in a log file, so a failure can be explained later. */
export function startProcess(name: string, command: string, args: string[], logFile: string): ManagedProcess {
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<string>((resolve) => {
    child.on('exit', (code, signal) => resolve(signal ?? `exit code ${code}`));
    child.on('error', (err) => resolve(`failed to start: ${err.message}`));
  });
  void exited.then(() => log.end());
  return {
    name,
    child,
    logFile,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timedOut = await Promise.race([exited.then(() => false), sleep(graceMs).then(() => true)]);
      if (timedOut) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** Polls `probe` until it returns true; fails early if the process it waits for has exited. */
export async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  opts: { timeoutMs: number; process?: ManagedProcess },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let exitReason: string | undefined;
  void opts.process?.exited.then((reason) => (exitReason = reason));
  let lastError = '';
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    if (exitReason !== undefined) {
      throw new Error(`${what}: ${opts.process?.name} exited (${exitReason}); see ${opts.process?.logFile}`);
    }
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      const log = opts.process ? `; see ${opts.process.logFile}` : '';
      throw new Error(
        `timed out after ${opts.timeoutMs} ms waiting for ${what}${lastError ? ` (${lastError})` : ''}${log}`,
      );
    }
    await sleep(delay);
  }
}
