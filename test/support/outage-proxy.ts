/**
 * A TCP proxy in front of a cluster, to take it out of reach the way a failover or a network
 * partition does: `cut()` resets every connection through it and refuses new ones (nothing
 * listens on its port), `restore()` listens on the same port again. The tests' own connections
 * go to the cluster directly and are not affected.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class OutageProxy {
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;

  private constructor(
    private readonly target: { host: string; port: number },
    public port = 0,
  ) {}

  static async start(target: { host: string; port: number }): Promise<OutageProxy> {
    const proxy = new OutageProxy(target);
    await proxy.restore();
    return proxy;
  }

  /** Listens (again) on the proxy's port. */
  async restore(): Promise<void> {
    const server = createServer((client) => {
      const upstream = createConnection(this.target);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(upstream).on('error', () => undefined);
      upstream.pipe(client).on('error', () => undefined);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Resets every connection through the proxy and stops listening: new connections are refused. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.resetAndDestroy();
    this.#sockets.clear();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  stop(): Promise<void> {
    return this.cut();
  }
}
