/**
 * The command itself: version, help and usage, the offline event log, the structured log
 * file, `npm start`'s headless fallback and `npm run demo`.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EventRecord } from '../../src-main/contract/control.js';
import { runCli, TestNode, waitFor } from '../support/harness.js';
import { ControlClient } from '../../src-main/engine/control/control-client.js';

const packageVersion = (JSON.parse(readFileSync(fileURLToPath(new URL('../../../package.json', import.meta.url)), 'utf8')) as { version: string }).version;
const distCli = (name: string) => fileURLToPath(new URL(`../../src-main/cli/${name}.js`, import.meta.url));

describe('the understudy command', () => {
  const nodes: TestNode[] = [];
  after(async () => {
    await Promise.all(nodes.map((n) => n.destroy()));
  });

  test('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout.trim(), packageVersion);
  });

  test('no command prints the usage and exits 2; --help exits 0', async () => {
    const bare = await runCli([]);
    assert.equal(bare.code, 2);
    assert.match(bare.stdout, /Usage: understudy COMMAND/);
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    for (const command of ['init', 'serve', 'pair-code', 'pair', 'status', 'events']) assert.match(help.stdout, new RegExp(`\\b${command}\\b`));
  });

  test('events are readable after the node stopped, and the log file holds JSON records', async () => {
    const node = await TestNode.create('gamma');
    nodes.push(node);
    await node.serve();
    assert.equal(await node.stop(), 0);
    const result = await node.cli('events', '--json');
    assert.equal(result.code, 0, result.stderr);
    const types = (JSON.parse(result.stdout) as EventRecord[]).map((e) => e.type);
    assert.deepEqual(types, ['node.initialized', 'node.started', 'node.stopped']);
    const limited = JSON.parse((await node.cli('events', '--json', '--limit', '1')).stdout) as EventRecord[];
    assert.deepEqual(limited.map((e) => e.type), ['node.stopped']);

    const logDir = join(node.home, 'logs');
    const files = readdirSync(logDir).filter((f) => f.endsWith('.log'));
    assert.ok(files.length >= 1, 'a log file exists');
    const records = readFileSync(join(logDir, files[0]!), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(records.some((r) => r.msg === "node 'gamma' started (standalone, epoch 0) on " + node.address));
    for (const record of records) assert.match(String(record.time), /^\d{4}-\d\d-\d\dT/);
  });

  test('npm start without Electron says why in one line and runs the node headless', async () => {
    const node = await TestNode.create('delta');
    nodes.push(node);
    const child = spawn(process.execPath, [distCli('start')], { env: { ...process.env, UNDERSTUDY_HOME: node.home }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await waitFor('the headless node to serve', () => (stdout.includes('serving on') ? true : undefined));
      assert.match(stdout.split('\n')[0]!, /^understudy: cannot open the desktop app \(.+\); running the node headless/);
      const status = await node.status();
      assert.equal(status.node.name, 'delta');
      // It says where to go next: the console's setup wizard, which a fresh node has not done.
      assert.match(stdout, /set it up with the wizard in a browser on this machine: 'npx understudy console-url --home .+' prints its link/);
      assert.equal((await node.cli('console-url')).code, 0);
      const client = await ControlClient.connect(node.home);
      try {
        const setup = await client.call('setup:get', {});
        assert.deepEqual([setup.done, setup.step, setup.role], [false, 0, null]);
      } finally {
        client.close();
      }
    } finally {
      child.kill('SIGINT');
    }
    assert.equal(await exited, 0);
  });

  test('npm run demo pairs two nodes that see each other up', async () => {
    const child = spawn(process.execPath, [distCli('demo'), '--seconds', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, stdout);
    assert.match(stdout, /demo-primary\s+primary\s+epoch 1\s+peer demo-backup up/);
    assert.match(stdout, /demo-backup\s+backup\s+epoch 1\s+peer demo-primary up/);
  });
});
