import net from 'node:net';

interface Connection {
  client: net.Socket;
  upstream: net.Socket;
  frozen: boolean;
}

/**
 * A loopback TCP proxy in front of kube-apiserver. TLS passes through untouched (the serving certificate
 * is for 127.0.0.1, whatever the port), so clients see one stable address while the test restarts the
 * API server behind it on a new port, refuses connections, or freezes them into half-open ones.
 */
export class TcpProxy {
  private readonly connections = new Set<Connection>();
  private refusing = false;
  private freezingNew = false;

  private constructor(
    private readonly server: net.Server,
    private target: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    const proxy = new TcpProxy(server, targetPort);
    server.on('connection', (client) => proxy.accept(client));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Open connections that still forward bytes. */
  get liveConnections(): number {
    return [...this.connections].filter((c) => !c.frozen).length;
  }

  /** Drops every connection and refuses new ones: the API server is unreachable. */
  refuse(): void {
    this.refusing = true;
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    this.connections.clear();
  }

  /** Forwards new connections to `port` from now on. */
  forwardTo(port: number): void {
    this.target = port;
    this.refusing = false;
  }

  /**
   * Existing connections stop carrying bytes either way but stay open: the half-open state a dead peer
   * or a silent middlebox leaves behind. New connections work, unless `alsoNew`: then they freeze too
   * until `thaw()`, so a client that happens to reconnect just then cannot slip past.
   */
  freeze(alsoNew = false): void {
    for (const c of this.connections) c.frozen = true;
    this.freezingNew = alsoNew;
  }

  /** New connections work again; frozen ones stay frozen. */
  thaw(): void {
    this.freezingNew = false;
  }

  async close(): Promise<void> {
    this.refuse();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target, '127.0.0.1');
    const conn: Connection = { client, upstream, frozen: this.freezingNew };
    this.connections.add(conn);
    client.on('data', (chunk: Buffer) => {
      if (!conn.frozen) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!conn.frozen) client.write(chunk);
    });
    const end = () => {
      if (conn.frozen) return; // a frozen connection never reports anything to the other side
      this.connections.delete(conn);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  }
}
