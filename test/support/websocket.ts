// Just enough RFC 6455 for tests: an echo upstream (node:http 'upgrade') and a raw-socket client, text frames only.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
export const acceptKey = (key: string): string => createHash('sha1').update(key + GUID).digest('base64');

const TEXT = 0x1;
const CLOSE = 0x8;
const MAX_PAYLOAD = 0xffff;

/** One frame; clients must mask, servers must not (RFC 6455 section 5.1). */
function frame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const len = payload.length;
  if (len > MAX_PAYLOAD) throw new Error('test frames stay under 64 KiB');
  const head = len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
  if (!mask) return Buffer.concat([head, payload]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ key[i % 4]));
  return Buffer.concat([head, key, masked]);
}

interface Frame {
  readonly opcode: number;
  readonly masked: boolean;
  readonly payload: Buffer;
}

/** Feeds bytes in; calls `onFrame` for every complete frame. */
function frameReader(onFrame: (f: Frame) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0);
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) return;
      const opcode = buffered[0] & 0x0f;
      const masked = (buffered[1] & 0x80) !== 0;
      let len = buffered[1] & 0x7f;
      let offset = 2;
      if (len === 127) throw new Error('test frames stay under 64 KiB');
      if (len === 126) {
        if (buffered.length < 4) return;
        len = buffered.readUInt16BE(2);
        offset = 4;
      }
      const key = masked ? buffered.subarray(offset, offset + 4) : null;
      if (masked) offset += 4;
      if (buffered.length < offset + len) return;
      const payload = Buffer.from(buffered.subarray(offset, offset + len));
      if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i % 4];
      buffered = buffered.subarray(offset + len);
      onFrame({ opcode, masked, payload });
    }
  };
}

/** Text messages arriving on a socket, awaited one at a time. */
class Inbox {
  private readonly messages: string[] = [];
  private readonly waiting: Array<(m: string | null) => void> = [];
  ended = false;
  /** Frames that broke the masking rule for their direction. */
  badMasking = 0;

  push(message: string | null): void {
    if (message === null) this.ended = true;
    const waiter = this.waiting.shift();
    if (waiter) waiter(message);
    else if (message !== null) this.messages.push(message);
    if (this.ended) for (const w of this.waiting.splice(0)) w(null);
  }

  /** The next text message, or null once the connection ended; rejects after `timeoutMs`. */
  next(timeoutMs = 2000): Promise<string | null> {
    if (this.messages.length) return Promise.resolve(this.messages.shift()!);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no WebSocket message within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }
}

export interface UpstreamConnection {
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly rawHeaders: string[];
  readonly socket: Socket;
  readonly inbox: Inbox;
  /** Resolves when this side's socket closed. */
  readonly closed: Promise<void>;
  send(text: string): void;
}

export interface WsUpstream {
  readonly url: string;
  readonly server: Server;
  readonly connections: UpstreamConnection[];
  /** Resolves with the next connection (or one that already arrived and was not taken yet). */
  nextConnection(timeoutMs?: number): Promise<UpstreamConnection>;
  close(): Promise<void>;
}

/**
 * A WebSocket upstream: completes the handshake, greets with `hello <path>`, and answers every text
 * message `m` with `echo:m`. Plain HTTP requests get 426. `handshakeHeaders` are added to its 101
 * (`Name: value` lines), to see what reaches the client.
 */
export async function startWsEchoUpstream(options: { handshakeHeaders?: string[] } = {}): Promise<WsUpstream> {
  const connections: UpstreamConnection[] = [];
  const sockets = new Set<Socket>();
  let taken = 0;
  const arrivals: Array<() => void> = [];
  const server = createServer((_req, res) => {
    res.writeHead(426, { upgrade: 'websocket', connection: 'Upgrade' });
    res.end();
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    sockets.add(socket);
    const key = req.headers['sec-websocket-key'];
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
      return;
    }
    const handshake = ['HTTP/1.1 101 Switching Protocols', 'Upgrade: websocket', 'Connection: Upgrade', `Sec-WebSocket-Accept: ${acceptKey(key)}`];
    socket.write([...handshake, ...(options.handshakeHeaders ?? []), '', ''].join('\r\n'));
    const inbox = new Inbox();
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const send = (text: string) => socket.write(frame(TEXT, Buffer.from(text), false));
    const read = frameReader((f) => {
      if (!f.masked) inbox.badMasking++;
      if (f.opcode === TEXT) {
        inbox.push(f.payload.toString());
        send(`echo:${f.payload.toString()}`);
      } else if (f.opcode === CLOSE) {
        socket.end(frame(CLOSE, f.payload, false));
      }
    });
    socket.on('data', read);
    // Upgraded sockets of node:http are half-open: like real servers (ws), close when the peer does.
    socket.on('end', () => socket.end());
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      sockets.delete(socket);
      inbox.push(null);
    });
    if (head.length) read(head);
    connections.push({ url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, socket, inbox, closed, send });
    arrivals.splice(0).forEach((wake) => wake());
    send(`hello ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    connections,
    nextConnection: async (timeoutMs = 2000) => {
      const deadline = Date.now() + timeoutMs;
      while (connections.length <= taken) {
        if (Date.now() > deadline) throw new Error(`no upstream WebSocket connection within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          arrivals.push(resolve);
          setTimeout(resolve, 50);
        });
      }
      return connections[taken++];
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface Handshake {
  /** Status of the answer to the upgrade request (101 when it was accepted). */
  readonly status: number;
  /** Answer headers, names lowercased (the last one of a repeated name). */
  readonly headers: Record<string, string>;
  /** The status line and header lines exactly as received, to count repeated names. */
  readonly head: string;
  /** The body of a refusal (read until the server closed); '' after a 101. */
  readonly body: string;
  readonly socket: Socket;
  readonly inbox: Inbox;
  readonly closed: Promise<void>;
  send(text: string): void;
  /** A close frame, then end: the polite way. */
  close(): void;
}

/**
 * Sends a WebSocket upgrade request for `path` with `headers` and reads the handshake answer. An `Upgrade`
 * entry in `headers` replaces the default `Upgrade: websocket`; other entries are added.
 */
export function wsConnect(port: number, path: string, headers: Record<string, string> = {}, timeoutMs = 3000): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    const inbox = new Inbox();
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    let buffered = Buffer.alloc(0);
    let handshake: { status: number; headers: Record<string, string>; head: string; bodyStart: Buffer } | null = null;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete handshake answer within ${timeoutMs} ms: ${buffered.toString('latin1')}`));
    }, timeoutMs);
    const read = frameReader((f) => {
      if (f.masked) inbox.badMasking++;
      if (f.opcode === TEXT) inbox.push(f.payload.toString());
      else if (f.opcode === CLOSE) socket.end();
    });
    const api = (status: number, h: Record<string, string>, head: string, body: string): Handshake => ({
      status,
      headers: h,
      head,
      body,
      socket,
      inbox,
      closed,
      send: (text) => socket.write(frame(TEXT, Buffer.from(text), true)),
      close: () => socket.end(frame(CLOSE, Buffer.from([0x03, 0xe8]), true)),
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => inbox.push(null));
    socket.on('data', (chunk: Buffer) => {
      if (handshake && handshake.status === 101) return read(chunk);
      buffered = Buffer.concat([buffered, chunk]);
      if (handshake) return;
      const end = buffered.indexOf('\r\n\r\n');
      if (end === -1) return;
      const head = buffered.subarray(0, end).toString('latin1');
      const lines = head.split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0])?.[1] ?? 0);
      const h: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        h[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      handshake = { status, headers: h, head, bodyStart: buffered.subarray(end + 4) };
      if (status === 101) {
        clearTimeout(timer);
        if (h['sec-websocket-accept'] !== acceptKey(key)) {
          socket.destroy();
          return reject(new Error(`bad Sec-WebSocket-Accept ${h['sec-websocket-accept']}`));
        }
        resolve(api(status, h, head, ''));
        if (handshake.bodyStart.length) read(handshake.bodyStart);
      }
    });
    // A refusal: the whole body arrives before the server closes.
    socket.on('end', () => {
      if (!handshake || handshake.status === 101) return;
      clearTimeout(timer);
      const end = buffered.indexOf('\r\n\r\n');
      resolve(api(handshake.status, handshake.headers, handshake.head, buffered.subarray(end + 4).toString('utf8')));
    });
    const isUpgrade = (name: string) => name.toLowerCase() === 'upgrade';
    const upgrade = Object.entries(headers).find(([n]) => isUpgrade(n))?.[1] ?? 'websocket';
    const request = [
      `GET ${path} HTTP/1.1`,
      `Host: 127.0.0.1:${port}`,
      `Upgrade: ${upgrade}`,
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      ...Object.entries(headers)
        .filter(([n]) => !isUpgrade(n))
        .map(([n, v]) => `${n}: ${v}`),
      '',
      '',
    ];
    socket.write(request.join('\r\n'));
  });
}
