import { classifyGraphResponse, classifyNetworkError, type ClassifiedMetaError } from './meta/errors.js';
import type { EventsRequest, EventsResponse } from './meta/event.js';

/** The Graph API version every request uses: the one place it is pinned. */
export const GRAPH_API_VERSION = 'v24.0';
export const GRAPH_API_BASE_URL = 'https://graph.facebook.com';

export interface GraphTarget {
  baseUrl: string;
  version: string;
  pixelId: string;
  accessToken: string;
  timeoutMs: number;
}

export type SendResult = { ok: true; response: EventsResponse } | { ok: false; error: ClassifiedMetaError };

/**
 * `POST /{version}/{pixel_id}/events`. The token travels in the JSON body, not the URL, so it never
 * appears in URLs that proxies or error messages might echo; every error text is redacted of it anyway.
 */
export async function postEvents(target: GraphTarget, request: EventsRequest): Promise<SendResult> {
  const secrets = { secrets: [target.accessToken] };
  const url = `${target.baseUrl.replace(/\/$/, '')}/${target.version}/${target.pixelId}/events`;
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...request, access_token: target.accessToken }),
      signal: AbortSignal.timeout(target.timeoutMs),
    });
    text = await res.text();
  } catch (err) {
    return { ok: false, error: classifyNetworkError(err, secrets) };
  }
  if (res.status !== 200) return { ok: false, error: classifyGraphResponse(res.status, text, secrets) };
  let body: Partial<EventsResponse> | undefined;
  try {
    body = JSON.parse(text) as Partial<EventsResponse>;
  } catch {
    body = undefined;
  }
  // Meta confirms how many events it took; anything else is not a delivery we can count on.
  if (body?.events_received !== request.data.length) {
    return {
      ok: false,
      error: {
        class: 'transient',
        status: res.status,
        message: `Meta answered 200 but events_received is ${String(body?.events_received)}, not ${request.data.length}`,
      },
    };
  }
  return { ok: true, response: body as EventsResponse };
}
