/**
 * Reports a long first-time step (building the control plane) without flooding the terminal: on a TTY
 * one line that updates in place, elsewhere a line every 30 seconds.
 */
export function progressReporter(label: string, stream: NodeJS.WriteStream = process.stderr) {
  const started = Date.now();
  let last = '';
  let lastPrinted = 0;
  const elapsed = () => {
    const s = Math.round((Date.now() - started) / 1000);
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  };
  const render = () => {
    if (stream.isTTY) {
      const line = `${label} ${elapsed()}  ${last}`.slice(0, (stream.columns || 100) - 1);
      stream.write(`\r\x1b[K${line}`);
    } else if (Date.now() - lastPrinted >= 30_000) {
      lastPrinted = Date.now();
      stream.write(`${label} ${elapsed()}: ${last}\n`);
    }
  };
  const timer = setInterval(render, 1_000);
  timer.unref();
  return {
    update(line: string) {
      if (!line.trim()) return;
      // The build script's own sentences are milestones worth keeping on screen.
      if (!line.startsWith('go: ') && !stream.isTTY) stream.write(`${line}\n`);
      last = line.trim();
      render();
    },
    done() {
      clearInterval(timer);
      if (stream.isTTY) stream.write('\r\x1b[K');
    },
  };
}
