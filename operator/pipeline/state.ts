import { createHash } from 'node:crypto';
import type { ConditionInput } from '../conditions.js';
import type { Logger } from '../runtime/index.js';
import type { EntryId, Rendered } from './render.js';

/** What ingest's GET /api/v1/stats answers (core/store/queries.ts IntegrationStats). */
export interface IngestStats {
  integration: string;
  counts: Record<string, number>;
  lastEventTime: string | null;
  revenue: Record<string, { currency: string; amountMinor: number; amount: string }[]>;
}

interface Loaded {
  digest: string;
  /** Which rendering that digest is, when this operator rendered it. */
  seq: number | undefined;
  stripe: Set<string>;
  cal: Set<string>;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/**
 * What the pipeline has rendered and what ingest has actually loaded. Each rendering gets a sequence
 * number and each entry remembers the rendering in which it last changed, so an integration counts as
 * served only once ingest runs a configuration at least that new: a rotated secret is not "Ready"
 * before ingest verifies with it.
 */
export class PipelineState {
  private seq = 0;
  private readonly digestSeq = new Map<string, number>();
  private readonly entrySeq = new Map<EntryId, { digest: string; seq: number }>();
  private excluded = new Map<EntryId, string>();
  private rendered = false;
  private loaded: Loaded | undefined;
  private ingestError: string | undefined = 'not contacted yet';
  private readonly signatures = new Map<EntryId, string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private polling = false;

  constructor(
    private readonly adminURL: () => string | undefined,
    private readonly notify: (ids: EntryId[]) => void,
    private readonly log: Logger,
    private readonly slowPollMs = 5_000,
    private readonly fastPollMs = 200,
  ) {}

  /** Records a rendering; `texts` are the exact file contents ingest may load for it. */
  publish(rendered: Rendered, texts: string[]): void {
    const changed = [...rendered.entries].some(([id, d]) => this.entrySeq.get(id)?.digest !== d);
    const removed = [...this.entrySeq.keys()].some((id) => !rendered.entries.has(id));
    if (changed || removed || !this.rendered) this.seq++;
    for (const text of texts) this.digestSeq.set(sha256(text), this.seq);
    if (this.digestSeq.size > 100) this.digestSeq.delete(this.digestSeq.keys().next().value!);
    for (const [id, digest] of rendered.entries) {
      if (this.entrySeq.get(id)?.digest !== digest) this.entrySeq.set(id, { digest, seq: this.seq });
    }
    for (const id of [...this.entrySeq.keys()]) if (!rendered.entries.has(id)) this.entrySeq.delete(id);
    this.excluded = rendered.excluded;
    this.rendered = true;
    this.emitChanges();
    this.schedule(0);
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  get isRendered(): boolean {
    return this.rendered;
  }

  /** Whether an entry is in the rendered configuration (pixels: what the forwarder is given). */
  inConfiguration(id: EntryId): boolean {
    return this.entrySeq.has(id);
  }

  /** The IngestAvailable condition of a Stripe or Cal integration. */
  ingestCondition(id: EntryId): ConditionInput {
    const type = 'IngestAvailable';
    if (!this.rendered)
      return {
        type,
        status: 'Unknown',
        reason: 'ConfigPending',
        message: 'The pipeline configuration has not been rendered yet.',
      };
    const why = this.excluded.get(id);
    if (why)
      return {
        type,
        status: 'False',
        reason: 'NotConfigured',
        message: `Not in the ingest configuration: ${why}.`,
      };
    if (!this.entrySeq.has(id))
      return {
        type,
        status: 'Unknown',
        reason: 'ConfigPending',
        message: 'Waiting for the pipeline configuration to include this integration.',
      };
    const state = this.loadState(id);
    if (state === 'loaded')
      return {
        type,
        status: 'True',
        reason: 'Loaded',
        message: 'Ingest has loaded this integration and accepts its webhooks.',
      };
    if (state === 'unreachable')
      return {
        type,
        status: 'False',
        reason: 'IngestUnavailable',
        message: `Ingest's admin API did not answer: ${this.ingestError}.`,
      };
    return {
      type,
      status: 'False',
      reason: 'IngestNotLoaded',
      message: 'Ingest has not loaded the configuration with this integration yet.',
    };
  }

  async stats(id: string): Promise<IngestStats | undefined> {
    const base = this.adminURL();
    if (!base) return undefined;
    try {
      const res = await fetch(`${base}/api/v1/stats?integration=${encodeURIComponent(id)}`, {
        signal: AbortSignal.timeout(2_000),
      });
      return res.ok ? ((await res.json()) as IngestStats) : undefined;
    } catch {
      return undefined;
    }
  }

  private loadState(id: EntryId): 'loaded' | 'pending' | 'unreachable' {
    if (!this.loaded) return 'unreachable';
    const entry = this.entrySeq.get(id);
    if (!entry) return 'pending';
    const [kind, name] = [id.slice(0, id.indexOf(':')), id.slice(id.indexOf(':') + 1)];
    const listed =
      kind === 'stripe' ? this.loaded.stripe.has(name) : kind === 'cal' ? this.loaded.cal.has(name) : true;
    return listed && this.loaded.seq !== undefined && this.loaded.seq >= entry.seq ? 'loaded' : 'pending';
  }

  private signature(id: EntryId): string {
    const why = this.excluded.get(id);
    if (why) return `excluded:${why}`;
    if (!this.entrySeq.has(id)) return 'absent';
    return this.loadState(id);
  }

  private emitChanges(): void {
    const ids = new Set<EntryId>([
      ...this.entrySeq.keys(),
      ...this.excluded.keys(),
      ...this.signatures.keys(),
    ]);
    const changed: EntryId[] = [];
    for (const id of ids) {
      const sig = this.signature(id);
      if (this.signatures.get(id) !== sig) {
        changed.push(id);
        if (sig === 'absent') this.signatures.delete(id);
        else this.signatures.set(id, sig);
      }
    }
    if (changed.length > 0) this.notify(changed);
  }

  private anyPending(): boolean {
    for (const id of this.entrySeq.keys()) if (this.loadState(id) !== 'loaded') return true;
    return false;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), delayMs);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const base = this.adminURL();
      if (base) {
        try {
          const res = await fetch(`${base}/api/v1/integrations`, { signal: AbortSignal.timeout(2_000) });
          if (!res.ok) throw new Error(`HTTP ${res.status}`);
          const body = (await res.json()) as { configDigest: string; stripe: string[]; cal: string[] };
          this.loaded = {
            digest: body.configDigest,
            seq: this.digestSeq.get(body.configDigest),
            stripe: new Set(body.stripe),
            cal: new Set(body.cal),
          };
          this.ingestError = undefined;
        } catch (err) {
          const message =
            err instanceof Error
              ? err.cause instanceof Error
                ? err.cause.message
                : err.message
              : String(err);
          if (this.ingestError !== message)
            this.log.debug({ error: message }, 'ingest admin API unreachable');
          this.loaded = undefined;
          this.ingestError = `${base}: ${message}`;
        }
      }
      this.emitChanges();
    } finally {
      this.polling = false;
      // Fast while ingest answers and has something to load; once a second while it does not answer.
      this.schedule(!this.anyPending() ? this.slowPollMs : this.loaded ? this.fastPollMs : 1_000);
    }
  }
}
