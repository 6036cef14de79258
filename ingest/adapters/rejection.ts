/** Why a webhook is refused: an HTTP status, a stable reason (the metrics label) and a message for the sender. */
export class WebhookRejection extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** A verified event that Tally deliberately does not store; the provider still gets a 2xx. */
export interface Ignored {
  kind: 'ignored';
  reason: string;
}
