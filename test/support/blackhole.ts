// An upstream address where connects hang: a listener whose process is stopped, its accept queue filled, so the
// kernel drops further SYNs until the connect times out (an overloaded host, a firewall dropping packets).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';

export interface Blackhole {
  readonly port: number;
  close(): void;
}

export async function blackhole(): Promise<Blackhole> {
  const listener = "const s = require('net').createServer(); s.listen({ host: '127.0.0.1', port: 0, backlog: 1 }, () => process.stdout.write(s.address().port + '\\n'));";
  const child = spawn(process.execPath, ['-e', listener], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const port = Number(line.toString().trim());
  process.kill(child.pid!, 'SIGSTOP');
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    fillers.push(socket);
  }
  // The queue is full once a connect stays pending.
  const probe = connect(port, '127.0.0.1');
  probe.on('error', () => {});
  await new Promise((resolve) => setTimeout(resolve, 100));
  if (!probe.pending) throw new Error('blackhole: a connect completed; the accept queue is not full');
  probe.destroy();
  return {
    port,
    close() {
      for (const socket of fillers) socket.destroy();
      child.kill('SIGKILL');
    },
  };
}
