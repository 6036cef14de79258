import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../core/project-root.js';

/** The built CLI, as `npm start` and users run it (`npm test` builds it first). */
export const TALLY = path.join(projectRoot(), 'dist', 'cli', 'tally.js');

export interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  /** Resolves with the output once `text` has appeared in it. */
  waitForOutput(text: string | RegExp, timeoutMs: number): Promise<string>;
}

export function runTally(args: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(process.execPath, [TALLY, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    exited,
    waitForOutput(text, timeoutMs) {
      const found = () => (typeof text === 'string' ? out.includes(text) : text.test(out));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          clearInterval(poll);
          reject(new Error(`timed out waiting for ${String(text)}; output so far:\n${out}`));
        }, timeoutMs);
        const poll = setInterval(() => {
          if (found()) {
            clearInterval(poll);
            clearTimeout(timer);
            resolve(out);
          }
        }, 100);
        void exited.then((code) => {
          if (found()) return;
          clearInterval(poll);
          clearTimeout(timer);
          reject(new Error(`tally exited with ${code} before printing ${String(text)}:\n${out}`));
        });
      });
    },
  };
}
