import type { ForwarderReports, PixelReport } from './pixel.js';

interface PixelStatusItem {
  pixel: string;
  /** Sent by every replica, ever (the replica's own count is `sent`). */
  sentTotal: number;
  lastSuccessTime: string | null;
  lastError: string | null;
  lastErrorTime: string | null;
  tokenInvalid: boolean;
  pending: number;
  deadLetteredTotal: number;
}

/**
 * Reads the forwarder's per-pixel results (GET /api/v1/pixels) at a bounded rate and calls `onChange`
 * with the pixels whose report changed, so their status is refreshed; unchanged reports cause no work.
 */
export class HttpForwarderReports implements ForwarderReports {
  private reports = new Map<string, { report: PixelReport; digest: string }>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly adminURL: string,
    private readonly onChange: (pixelKeys: string[]) => void,
    private readonly intervalMs = 5_000,
  ) {}

  pixel(id: string): PixelReport | undefined {
    return this.reports.get(id)?.report;
  }

  start(): void {
    const tick = () =>
      void this.refresh().finally(() => (this.timer = setTimeout(tick, this.intervalMs).unref()));
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  async refresh(): Promise<void> {
    let items: PixelStatusItem[];
    try {
      const res = await fetch(`${this.adminURL}/api/v1/pixels`, { signal: AbortSignal.timeout(2_000) });
      if (!res.ok) return;
      items = ((await res.json()) as { items: PixelStatusItem[] }).items;
    } catch {
      // The forwarder is not up (yet): keep what was known; status shows the last report.
      return;
    }
    const changed: string[] = [];
    for (const item of items) {
      const report: PixelReport = {
        eventsForwarded: item.sentTotal,
        eventsFailed: item.deadLetteredTotal,
        ...(item.lastSuccessTime ? { lastForwardTime: item.lastSuccessTime } : {}),
        ...(item.lastError ? { lastError: item.lastError } : {}),
        ...(item.lastErrorTime ? { lastErrorTime: item.lastErrorTime } : {}),
        tokenValid: !item.tokenInvalid,
        pending: item.pending,
      };
      const digest = JSON.stringify(report);
      if (this.reports.get(item.pixel)?.digest !== digest) {
        this.reports.set(item.pixel, { report, digest });
        changed.push(item.pixel);
      }
    }
    if (changed.length > 0) this.onChange(changed);
  }
}
