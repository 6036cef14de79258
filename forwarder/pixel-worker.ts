import type { Logger } from 'pino';
import type pg from 'pg';
import { postEvents, type GraphTarget } from './graph-client.js';
import { mapEvent, wantsCustomer, type EventNames } from './mapping.js';
import type { ClassifiedMetaError } from './meta/errors.js';
import { validateServerEvent, type ServerEvent } from './meta/event.js';
import type { ForwarderMetrics } from './metrics.js';
import {
  claim,
  claimSharedIds,
  emptyOutcomes,
  record,
  release,
  renewLease,
  type ClaimedRow,
  type Outcomes,
} from './outbox.js';
import type { CustomerFacts, StripeCustomers } from './stripe-customers.js';

/** What a worker needs to know about its MetaPixel; replaced on every configuration reload. */
export interface PixelSettings {
  /** namespace/name */
  id: string;
  pixelId: string;
  accessToken: string | undefined;
  testEventCode: string | undefined;
  names: EventNames | undefined;
}

export interface WorkerSettings {
  graphBaseUrl: string;
  graphVersion: string;
  /** Events per request, at most 1000. */
  batchSize: number;
  /** Batches in flight per pixel. */
  concurrency: number;
  leaseSeconds: number;
  requestTimeoutMs: number;
  /** How long an idle loop waits before looking for due rows again. */
  idlePollMs: number;
  backoff: { baseMs: number; maxMs: number; rateLimitBaseMs: number };
  /** Customer look-up deferrals before the event is sent with what it has. */
  maxCustomerDeferrals: number;
  partnerAgent: string;
}

export interface PixelStatus {
  pixel: string;
  pixelId: string;
  sent: number;
  failed: number;
  deadLettered: number;
  skipped: number;
  lastSuccessTime: string | null;
  lastError: string | null;
  lastErrorTime: string | null;
  paused: boolean;
  tokenInvalid: boolean;
  pausedReason: string | null;
  backoffUntil: string | null;
}

/**
 * A claimed row once its event is mapped: the stored event is left behind, so a batch waiting for the one
 * before it to be sent holds only its server events (fewer objects outlive a young-generation GC).
 */
type HeldRow = Omit<ClaimedRow, 'event'>;
type ToSend = { row: HeldRow; event: ServerEvent; shared?: string };
interface Prepared {
  out: Outcomes;
  toSend: ToSend[];
  settings: PixelSettings;
}

/**
 * One MetaPixel's delivery loops: `concurrency` loops each claim a batch, map it, send it and record
 * the outcome. Pixels never share loops, so a slow or failing pixel holds up only itself.
 */
export class PixelWorker {
  private settings: PixelSettings;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private wake: (() => void)[] = [];
  private consecutiveFailures = 0;
  private backoffUntil = 0;
  private pausedReason: string | undefined;
  private tokenInvalid = false;
  private readonly stats = {
    sent: 0,
    failed: 0,
    deadLettered: 0,
    skipped: 0,
    lastSuccess: null as Date | null,
    lastError: null as string | null,
    lastErrorTime: null as Date | null,
  };
  private readonly destination: string;

  constructor(
    settings: PixelSettings,
    private readonly deps: {
      pool: pg.Pool;
      worker: WorkerSettings;
      metrics: ForwarderMetrics;
      log: Logger;
      customers: StripeCustomers;
    },
  ) {
    this.settings = settings;
    this.destination = `meta:${settings.id}`;
    this.applyTokenState();
  }

  start(): void {
    for (let i = 0; i < this.deps.worker.concurrency; i++) this.loops.push(this.loop());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.poke();
    await Promise.all(this.loops);
  }

  /** A new configuration: a changed token resumes a pixel paused for its token. */
  update(settings: PixelSettings): void {
    const tokenChanged = settings.accessToken !== this.settings.accessToken;
    this.settings = settings;
    if (tokenChanged) {
      this.tokenInvalid = false;
      this.pausedReason = undefined;
      this.consecutiveFailures = 0;
      this.backoffUntil = 0;
      this.applyTokenState();
      if (!this.pausedReason) this.deps.log.info({ pixel: settings.id }, 'access token changed; resuming');
      this.poke();
    }
  }

  status(): PixelStatus {
    return {
      pixel: this.settings.id,
      pixelId: this.settings.pixelId,
      sent: this.stats.sent,
      failed: this.stats.failed,
      deadLettered: this.stats.deadLettered,
      skipped: this.stats.skipped,
      lastSuccessTime: this.stats.lastSuccess?.toISOString() ?? null,
      lastError: this.stats.lastError,
      lastErrorTime: this.stats.lastErrorTime?.toISOString() ?? null,
      paused: this.pausedReason !== undefined,
      tokenInvalid: this.tokenInvalid,
      pausedReason: this.pausedReason ?? null,
      backoffUntil: this.backoffUntil > Date.now() ? new Date(this.backoffUntil).toISOString() : null,
    };
  }

  private applyTokenState(): void {
    if (!this.settings.accessToken) this.pause('no access token configured', false);
    this.deps.metrics.paused.set({ pixel: this.settings.id }, this.pausedReason ? 1 : 0);
  }

  private pause(reason: string, tokenInvalid: boolean): void {
    if (!this.pausedReason) this.deps.log.error({ pixel: this.settings.id, reason }, 'pixel paused');
    this.pausedReason = reason;
    this.tokenInvalid = tokenInvalid;
    this.deps.metrics.paused.set({ pixel: this.settings.id }, 1);
  }

  private poke(): void {
    for (const w of this.wake.splice(0)) w();
  }

  private idle(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this.wake;
      function done() {
        clearTimeout(timer);
        const i = self.indexOf(done);
        if (i >= 0) self.splice(i, 1);
        resolve();
      }
      this.wake.push(done);
    });
  }

  private async loop(): Promise<void> {
    const { worker, log } = this.deps;
    // A pipeline of three batches: the next one is claimed by the database and the current one mapped
    // while the previous one is posted and recorded. Still one request in flight per loop.
    let prefetched: Promise<ClaimedRow[] | undefined> | undefined;
    let sending: Promise<void> = Promise.resolve();
    while (!this.stopped) {
      const wait = this.pausedReason ? worker.idlePollMs * 4 : this.backoffUntil - Date.now();
      if (wait > 0) {
        if (prefetched) await this.unclaim(await prefetched);
        prefetched = undefined;
        await this.idle(Math.min(wait, 60_000));
        continue;
      }
      let rows = await (prefetched ?? this.tryClaim());
      prefetched = undefined;
      if (rows === undefined) {
        await this.idle(Math.max(worker.idlePollMs, 1000));
        continue;
      }
      if (rows.length === 0) {
        await sending;
        await this.idle(worker.idlePollMs);
        continue;
      }
      if (rows.length === worker.batchSize) prefetched = this.tryClaim();
      try {
        const prepared = await this.prepare(await this.keepLease(rows));
        rows = undefined; // the stored events are mapped: let them go before waiting for the previous batch
        await sending;
        sending = this.sendAndRecord(prepared);
      } catch (err) {
        // The rows stay leased and come back after the lease: nothing is lost, nothing marked wrongly.
        log.error({ pixel: this.settings.id, error: (err as Error).message }, 'batch failed');
        await this.idle(Math.max(worker.idlePollMs, 1000));
      }
    }
    if (prefetched) await this.unclaim(await prefetched);
    await sending;
  }

  private async tryClaim(): Promise<ClaimedRow[] | undefined> {
    const { worker, pool, log } = this.deps;
    try {
      return await claim(pool, this.destination, worker.batchSize, worker.leaseSeconds);
    } catch (err) {
      log.warn({ pixel: this.settings.id, error: (err as Error).message }, 'cannot claim outbox rows');
      return undefined;
    }
  }

  /**
   * Renews the lease of rows held for a third of the lease time or more (a slow Meta, bisecting, a
   * prefetched batch), so no other replica claims them meanwhile; drops rows whose lease already passed
   * to another worker.
   */
  private async keepLease<T extends { row: HeldRow } | HeldRow>(items: T[]): Promise<T[]> {
    const rowOf = (i: T): HeldRow => ('row' in i ? i.row : i);
    const first = items[0];
    if (!first) return items;
    const lease = rowOf(first).lease;
    const leaseMs = this.deps.worker.leaseSeconds * 1000;
    if (Date.now() - lease.renewedAt < leaseMs / 3) return items;
    const before = lease.ids.length;
    const held = await renewLease(this.deps.pool, lease, this.deps.worker.leaseSeconds);
    if (held.size < before) {
      this.deps.log.warn(
        { pixel: this.settings.id, lost: before - held.size },
        'lease expired before the batch was sent; another worker has those rows',
      );
    }
    return items.filter((i) => held.has(rowOf(i).outboxId));
  }

  /** Gives back claimed rows this loop will not work on now (paused, backing off or stopping). */
  private async unclaim(rows: ClaimedRow[] | undefined): Promise<void> {
    if (!rows?.length) return;
    await release(
      this.deps.pool,
      rows.map((r) => r.outboxId),
    ).catch(() => {
      // They come back when the lease expires.
    });
  }

  /** Posts a prepared batch (unless the pixel paused or backs off meanwhile) and records every outcome. */
  private async sendAndRecord(p: Prepared): Promise<void> {
    try {
      if (p.toSend.length > 0) {
        const backoff = this.backoffUntil - Date.now();
        if (this.pausedReason || backoff > 0) {
          const at = new Date(Date.now() + Math.max(0, backoff));
          for (const i of p.toSend) {
            p.out.retry.push({
              id: i.row.outboxId,
              at,
              error: this.pausedReason ?? 'pixel backing off',
              countAttempt: false,
            });
          }
        } else {
          await this.sendBisecting(p.toSend, p.out, p.settings);
        }
      }
      await record(this.deps.pool, this.destination, p.out);
      this.count(p.out);
    } catch (err) {
      // Unrecorded rows come back after their lease and are sent again with the same event_id.
      this.deps.log.error({ pixel: this.settings.id, error: (err as Error).message }, 'batch failed');
    }
  }

  /** Customer look-ups, mapping, validation and the one-purchase rule for a claimed batch. */
  private async prepare(rows: ClaimedRow[]): Promise<Prepared> {
    const out = emptyOutcomes();
    const now = Math.floor(Date.now() / 1000);
    const settings = this.settings;
    const customers = await this.lookUpCustomers(rows, out);

    const deferred = new Set(out.retry.map((r) => r.id));
    const toSend: ToSend[] = [];
    for (const row of rows) {
      if (deferred.has(row.outboxId)) continue;
      const mapped = mapEvent(row.event, {
        now,
        names: settings.names,
        customer: customers.get(row.outboxId),
      });
      if (mapped.kind === 'skip') {
        out.skipped.push({ id: row.outboxId, reason: mapped.reason, message: skipMessage(mapped.reason) });
        continue;
      }
      if (mapped.kind === 'dead') {
        out.dead.push({ id: row.outboxId, reason: mapped.reason, message: mapped.message });
        continue;
      }
      // Meta rejects a whole batch for one bad event: the validator finds those before any request. The
      // hashes are buildUserData's own; what came from outside (ids, IPs, URLs, currency, names) is checked.
      const issues = validateServerEvent(mapped.event, 0, now, { trustHashes: true });
      if (issues.length > 0) {
        const message = issues.map((i) => `${i.field.replace(/^data\[0\]\.?/, '')}: ${i.message}`).join('; ');
        out.dead.push({ id: row.outboxId, reason: 'invalid_event', message: `rejected locally: ${message}` });
        continue;
      }
      toSend.push({
        row: { outboxId: row.outboxId, attempts: row.attempts, lease: row.lease },
        event: mapped.event,
        shared: mapped.sharedPurchaseId,
      });
    }

    // One purchase per payment: a subscription's checkout and its first invoice share an event_id. The
    // first row to claim that id owns the Purchase; the other is skipped, in this batch or any later one,
    // on this replica or another. Should both still be sent (no such path is known), Meta keeps the first
    // of an event_id + event_name within 48 h.
    const shared = toSend.flatMap((s) => (s.shared ? [{ id: s.row.outboxId, sharedEventId: s.shared }] : []));
    const owners = await claimSharedIds(this.deps.pool, shared);
    const unique = toSend.filter((s) => {
      if (!s.shared || owners.has(s.row.outboxId)) return true;
      out.skipped.push({
        id: s.row.outboxId,
        reason: 'same_payment_sent',
        message: `another event of this payment is its Purchase (event_id ${s.shared})`,
      });
      return false;
    });

    return { out, toSend: unique, settings };
  }

  private async lookUpCustomers(rows: ClaimedRow[], out: Outcomes): Promise<Map<number, CustomerFacts>> {
    const found = new Map<number, CustomerFacts>();
    const wanting = rows.filter((r) => wantsCustomer(r.event));
    if (wanting.length === 0) return found;
    await Promise.all(
      wanting.map(async (row) => {
        const e = row.event;
        const outcome = await this.deps.customers.lookup(e.integration, e.customerId!, e.account);
        if (outcome.kind === 'found') found.set(row.outboxId, outcome.customer);
        else if (outcome.kind === 'retry_later' && row.attempts < this.deps.worker.maxCustomerDeferrals) {
          out.retry.push({
            id: row.outboxId,
            at: new Date(Date.now() + outcome.afterMs),
            error: `Stripe customer look-up ${outcome.reason === 'rate_limited' ? 'rate-limited (429)' : 'failed'}; retrying after ${Math.ceil(outcome.afterMs / 1000)} s`,
            countAttempt: true,
          });
        }
      }),
    );
    return found;
  }

  /**
   * Sends, and on an invalid-parameter answer splits the batch in halves until the offending events are
   * alone: those are dead-lettered with Meta's message, the rest delivered.
   */
  private async sendBisecting(
    batch: ToSend[],
    out: Outcomes,
    settings: PixelSettings,
  ): Promise<'ok' | 'stop'> {
    const { worker, metrics } = this.deps;
    const items = await this.keepLease(batch);
    if (items.length === 0) return 'ok';
    if (this.pausedReason || !settings.accessToken) {
      this.release(items, out, this.pausedReason ?? 'pixel paused', false);
      return 'stop';
    }
    const target: GraphTarget = {
      baseUrl: worker.graphBaseUrl,
      version: worker.graphVersion,
      pixelId: settings.pixelId,
      accessToken: settings.accessToken,
      timeoutMs: worker.requestTimeoutMs,
    };
    const pixel = settings.id;
    const started = process.hrtime.bigint();
    const result = await postEvents(target, {
      data: items.map((i) => i.event),
      ...(settings.testEventCode ? { test_event_code: settings.testEventCode } : {}),
      partner_agent: worker.partnerAgent,
    });
    metrics.requestDuration.observe({ pixel }, Number(process.hrtime.bigint() - started) / 1e9);
    metrics.batchSize.observe({ pixel }, items.length);
    if (result.ok) {
      metrics.requests.inc({ pixel, outcome: 'success' });
      for (const i of items) out.sent.push(i.row.outboxId);
      this.consecutiveFailures = 0;
      this.stats.lastSuccess = new Date();
      metrics.lastSuccess.set({ pixel }, Date.now() / 1000);
      return 'ok';
    }
    const error = result.error;
    metrics.requests.inc({ pixel, outcome: error.class });
    this.noteError(error);
    switch (error.class) {
      case 'invalid_event': {
        if (items.length === 1) {
          out.dead.push({ id: items[0]!.row.outboxId, reason: 'invalid_event', message: error.message });
          return 'ok';
        }
        const half = Math.ceil(items.length / 2);
        if ((await this.sendBisecting(items.slice(0, half), out, settings)) === 'stop') {
          this.release(items.slice(half), out, error.message, false);
          return 'stop';
        }
        return this.sendBisecting(items.slice(half), out, settings);
      }
      case 'token_invalid':
        metrics.failed.inc({ pixel, reason: 'token_invalid' }, items.length);
        this.stats.failed += items.length;
        this.pause(error.message, true);
        this.release(items, out, error.message, false);
        return 'stop';
      default: {
        // transient, rate_limited, policy: back the whole pixel off and retry these rows later.
        this.consecutiveFailures++;
        const base = error.class === 'transient' ? worker.backoff.baseMs : worker.backoff.rateLimitBaseMs;
        const delay = jittered(base, this.consecutiveFailures, worker.backoff.maxMs);
        this.backoffUntil = Math.max(this.backoffUntil, Date.now() + delay);
        // One due time for the whole batch keeps it together when it is claimed again.
        const attempts = Math.max(...items.map((i) => i.row.attempts)) + 1;
        const at = new Date(Date.now() + Math.max(jittered(base, attempts, worker.backoff.maxMs), delay));
        for (const i of items) {
          out.retry.push({ id: i.row.outboxId, at, error: error.message, countAttempt: true });
        }
        metrics.failed.inc({ pixel, reason: error.class }, items.length);
        this.stats.failed += items.length;
        this.deps.log.warn(
          { pixel, class: error.class, events: items.length, retryInMs: delay, error: error.message },
          'Conversions API request failed; retrying later',
        );
        return 'stop';
      }
    }
  }

  private release(items: { row: HeldRow }[], out: Outcomes, error: string, countAttempt: boolean): void {
    for (const i of items) out.retry.push({ id: i.row.outboxId, at: new Date(), error, countAttempt });
  }

  private noteError(error: ClassifiedMetaError): void {
    this.stats.lastError = error.message;
    this.stats.lastErrorTime = new Date();
  }

  private count(out: Outcomes): void {
    const { metrics } = this.deps;
    const pixel = this.settings.id;
    if (out.sent.length > 0) {
      metrics.sent.inc({ pixel }, out.sent.length);
      this.stats.sent += out.sent.length;
    }
    for (const d of out.dead) {
      metrics.deadLettered.inc({ pixel, reason: d.reason });
      this.stats.deadLettered++;
      this.deps.log.warn(
        { pixel, outboxId: d.id, reason: d.reason, error: d.message },
        'event dead-lettered',
      );
    }
    for (const s of out.skipped) {
      metrics.skipped.inc({ pixel, reason: s.reason });
      this.stats.skipped++;
    }
  }
}

/** Exponential backoff with jitter: a random delay in [½, 1] × base × 2^(n-1), capped. */
export function jittered(baseMs: number, n: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, n - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

function skipMessage(reason: string): string {
  switch (reason) {
    case 'checkout_not_paid':
      return 'checkout session not paid (yet): no Purchase';
    case 'zero_amount':
      return 'no money moved ($0 invoice or checkout): no Purchase';
    case 'not_forwarded_type':
      return 'this event type is not forwarded to Meta';
    default:
      return reason;
  }
}
