/** Values of the samples of `name` whose labels include `labels`, from Prometheus text format. */
function samples(metrics: string, name: string, labels: Record<string, string>): number[] {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  return metrics
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .filter((line) => wanted.every((w) => line.includes(w)))
    .map((line) => Number(line.slice(line.lastIndexOf(' ') + 1)));
}

/** The first matching sample, 0 when absent. */
export function sample(metrics: string, name: string, labels: Record<string, string> = {}): number {
  return samples(metrics, name, labels)[0] ?? 0;
}

/** The sum over all matching samples, e.g. a counter across its label values. */
export function sampleSum(metrics: string, name: string, labels: Record<string, string> = {}): number {
  return samples(metrics, name, labels).reduce((a, b) => a + b, 0);
}
