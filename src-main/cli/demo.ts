/**
 * `npm run demo`: two nodes on this machine (loopback, temporary homes), paired, with their
 * status shown every second, so a newcomer sees the product work with one command.
 * `--seconds N` stops after N seconds (exit 0 only if both saw each other up).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StatusReport } from '../contract/control.js';

const cli = fileURLToPath(new URL('./main.js', import.meta.url));

function understudy(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [cli, ...args], (error, stdout, stderr) => (error ? reject(new Error(stderr.trim() || error.message)) : resolve(stdout)));
  });
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function freePortPair(from: number): Promise<number> {
  for (let port = from; port < from + 400; port += 2) if ((await isFree(port)) && (await isFree(port + 1))) return port;
  throw new Error('no free ports for the demo');
}

function line(status: StatusReport): string {
  const peer = status.peers[0];
  const rtt = peer?.rtt ? `${(peer.rtt.lastUs / 1000).toFixed(2)} ms` : '-';
  return `${status.node.name.padEnd(14)} ${status.node.role.padEnd(8)} epoch ${status.node.epoch}   peer ${peer ? `${peer.name} ${peer.state.padEnd(7)} rtt ${rtt}` : 'none'}`;
}

async function main(): Promise<number> {
  const secondsFlag = process.argv.indexOf('--seconds');
  const seconds = secondsFlag >= 0 ? Number(process.argv[secondsFlag + 1]) : Infinity;
  const root = mkdtempSync(join(tmpdir(), 'understudy-demo-'));
  const nodes = [
    { name: 'demo-primary', home: join(root, 'primary'), port: await freePortPair(17420) },
    { name: 'demo-backup', home: join(root, 'backup'), port: 0 },
  ];
  nodes[1]!.port = await freePortPair(nodes[0]!.port + 2);
  const children: ChildProcess[] = [];
  const cleanUp = () => {
    for (const child of children) child.kill('SIGTERM');
  };
  try {
    for (const node of nodes) {
      await understudy(['init', '--home', node.home, '--name', node.name, '--listen', `127.0.0.1:${node.port}`]);
      const child = spawn(process.execPath, [cli, 'serve', '--home', node.home], { stdio: 'ignore' });
      children.push(child);
      console.log(`started ${node.name} (pid ${child.pid}) on 127.0.0.1:${node.port}, home ${node.home}`);
    }
    const [primary, backup] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    const code = await retry(() => understudy(['pair-code', '--home', primary.home]));
    await understudy(['pair', '--home', backup.home, '--peer', `127.0.0.1:${primary.port}`, '--code', code.trim().split('\n').at(-1)!]);
    console.log(`paired. Try 'kill -STOP ${children[1]!.pid}' (then -CONT) in another terminal and watch. Ctrl-C ends the demo.\n`);

    let bothUp = false;
    const stopAt = Date.now() + seconds * 1000;
    let interrupted = false;
    process.once('SIGINT', () => (interrupted = true));
    process.once('SIGTERM', () => (interrupted = true));
    while (!interrupted && Date.now() < stopAt) {
      const reports = await Promise.all(nodes.map(async (n) => JSON.parse(await understudy(['status', '--json', '--home', n.home])) as StatusReport));
      console.log(`${new Date().toISOString().slice(11, 19)}  ${reports.map(line).join('   |   ')}`);
      bothUp ||= reports.every((r) => r.peers[0]?.state === 'up');
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    return bothUp ? 0 : 1;
  } finally {
    cleanUp();
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    rmSync(root, { recursive: true, force: true });
  }
}

async function retry<T>(action: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await action();
    } catch (error) {
      if (attempt > 40) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`demo: ${(error as Error).message}`);
    process.exitCode = 1;
  },
);
