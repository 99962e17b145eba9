#!/usr/bin/env node
/**
 * The `understudy` command: a thin client of the control contract, plus the commands that
 * work on a home directly (init, serve). Exit status: 0 done, 1 refused or failed (one line
 * on stderr), 2 usage error.
 */
import type { CommandResult } from '../contract/control.js';
import { checkHome } from '../engine/home.js';
import { describeError, isUnderstudyError } from '../engine/errors.js';
import { DefaultListenHost, DefaultListenPort, initNode } from '../engine/init.js';
import { parseAddress } from '../engine/link/tls.js';
import { Store } from '../engine/store/store.js';
import { Version } from '../version.js';
import { resolve } from 'node:path';
import { call } from './call.js';
import { license } from './license.js';
import { homeFrom, parse, parseMs, requireOption, UsageError } from './args.js';
import { formatEvents, formatStatus } from './format.js';
import { serve } from './serve.js';
import { objectCommand } from './objects.js';
import { installService, serviceStatus } from '../engine/setup/service-install.js';

const Help = `understudy ${Version}: high availability for small shops

Usage: understudy COMMAND [options]     (every command takes --home DIR or UNDERSTUDY_HOME)

  init --name NAME [--listen HOST:PORT]   create a node (default listen ${DefaultListenHost}:${DefaultListenPort};
                                          heartbeats use PORT+1)
  serve [--heartbeat-interval MS]         run the node in the foreground until SIGINT/SIGTERM
  pair-code                               print a one-time pairing code (on the primary)
  witness [--heartbeat-interval MS]       run this node as the pair's witness (foreground, like serve)
  pair --peer HOST:PORT --code CODE [--as backup|witness]
                                          pair this node with that primary, as its backup (default)
                                          or as the pair's witness (automatic failover needs one)
  protect folder SRC [--to DEST] [--exclude GLOB]...
                                          protect a folder (on the primary); prints its id
  protect sqlite SRC [--to DEST]          protect a SQLite database (on the primary); prints its id
  unprotect ID                            stop protecting it (the backup's copy stays)
  pause ID | resume ID                    stop sending its changes to the backup (still captured; kept
                                          across restarts) / send what was held back (on the primary)
  resync ID                               compare it whole with the backup's copy and send what differs
                                          (the backup keeps its versions); returns once started
  history ID [--json]                     its lag over the last hour, a sample every 10 s
  status [--json]                         this node, its peers and protected objects
  console-url                             the web console's address (127.0.0.1), with its login token
  service install | status                run this node as a system service at boot (systemd, launchd;
                                          needs administrator rights)
  audit [ID] [--scrub] [--json]           compare the backup's copies with the primary and repair
                                          what differs (--scrub: re-read every file's content too)
  events [--json] [--limit N]             the event log, oldest first
  switchover [--json]                     swap the roles (either node): drain, hand over, reverse
  switchover --dry-run [--json]           what would block a switchover now (exit 1 if anything does)
  switchover --rehearse [--json]          on the backup: its check hook against a snapshot of its copies
  hooks set [--start CMD] [--stop CMD] [--check CMD] [--check-failures N] [--timeout MS]
                                          this node's application hooks ('' clears one)
  failover --force                        on the backup, when the primary is down for sure: take over
                                          without a witness's vote
  maintenance on|off                      suspend automatic failover and check-triggered switchovers
  failover-policy automatic|ask           the pair's policy: the backup takes over by itself (with a
                                          witness), or waits for 'failover --force' (ask)
  vip set ADDR/PREFIX --dev IFACE         a virtual IP that moves with the primary role ('none' removes it;
                                          Linux, as root)
  license install KEY | show             this pair's license (one key covers both nodes; a witness
                                          needs none); a 30-day trial runs until a key is installed
  license issue --tier P10 --customer NAME (--days N | --perpetual --maintenance-days N)
          [--nodes N] --key VENDOR.pem    the vendor's side: sign a key (printed last)
  config set KEY VALUE                    profile lan|wan, heartbeatMs, leaseMs, stopBudgetMs,
                                          maxPromoteLagMs (ms or 'none')
  --version                               print the version

Reference: docs/cli.md`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case '--version':
    case '-v':
      console.log(Version);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      console.log(Help);
      return command === undefined ? 2 : 0;
    case 'init':
      return init(rest);
    case 'serve':
      return serveCommand(rest);
    case 'witness':
      return serveCommand(rest, true);
    case 'failover':
      return failover(rest);
    case 'maintenance':
      return maintenance(rest);
    case 'failover-policy':
      return failoverPolicy(rest);
    case 'config':
      return config(rest);
    case 'vip':
      return vip(rest);
    case 'pair-code':
      return pairCode(rest);
    case 'pair':
      return pair(rest);
    case 'status':
      return status(rest);
    case 'protect':
      return protect(rest);
    case 'unprotect':
      return unprotect(rest);
    case 'events':
      return events(rest);
    case 'switchover':
      return switchover(rest);
    case 'hooks':
      return hooks(rest);
    case 'license':
      return license(rest);
    case 'audit':
      return audit(rest);
    case 'pause':
    case 'resume':
    case 'resync':
    case 'history':
      return objectCommand(command, rest);
    case 'console-url':
      return consoleUrl(rest);
    case 'service':
      return service(rest);
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

async function init(argv: string[]): Promise<number> {
  const { values } = parse('init', argv, { name: { type: 'string' }, listen: { type: 'string' } });
  const home = homeFrom(values);
  const name = requireOption('init', 'name', values.name);
  const listenText = values.listen ?? `${DefaultListenHost}:${DefaultListenPort}`;
  const listen = parseAddress(listenText);
  if (!listen) throw new UsageError(`init: --listen '${listenText}' is not HOST:PORT`);
  const created = await initNode({ home, name, listen });
  if (values.json) console.log(JSON.stringify({ home: created.home, id: created.nodeId, name }));
  else {
    console.log(`Created node '${name}' in ${created.home}.`);
    console.log(`Start it with: understudy serve --home ${created.home}`);
    console.log(created.nodeId);
  }
  return 0;
}

async function serveCommand(argv: string[], witness = false): Promise<number> {
  const { values } = parse(witness ? 'witness' : 'serve', argv, { 'heartbeat-interval': { type: 'string' } });
  return serve({ home: homeFrom(values), heartbeatIntervalMs: parseMs('heartbeat-interval', values['heartbeat-interval']), witness });
}

async function failover(argv: string[]): Promise<number> {
  const { values } = parse('failover', argv, { force: { type: 'boolean' } });
  if (!values.force) throw new UsageError("failover: give --force (with a witness the backup takes over by itself; --force is for a primary you know is down)");
  const result = await call(homeFrom(values), 'cluster:failover', { force: true });
  console.log(values.json ? JSON.stringify(result) : `Failover done in ${result.ms} ms; this node is now the ${result.role} (epoch ${result.epoch}).`);
  return 0;
}

async function maintenance(argv: string[]): Promise<number> {
  const { values, positionals } = parse('maintenance', argv, {}, true);
  const [state, ...extra] = positionals;
  if ((state !== 'on' && state !== 'off') || extra.length > 0) throw new UsageError("maintenance: 'maintenance on' or 'maintenance off'");
  const result = await call(homeFrom(values), 'cluster:maintenance', { on: state === 'on' });
  console.log(values.json ? JSON.stringify(result) : `Maintenance mode is ${result.maintenance ? 'on: no automatic failover or check-triggered switchover until it is off' : 'off'}.`);
  return 0;
}

async function failoverPolicy(argv: string[]): Promise<number> {
  const { values, positionals } = parse('failover-policy', argv, {}, true);
  const [policy, ...extra] = positionals;
  if ((policy !== 'automatic' && policy !== 'ask') || extra.length > 0) throw new UsageError("failover-policy: 'failover-policy automatic' or 'failover-policy ask'");
  const result = await call(homeFrom(values), 'cluster:failover-policy', { policy });
  if (values.json) console.log(JSON.stringify(result));
  else console.log(result.failoverPolicy === 'ask' ? 'Failover policy: ask me. When the primary is lost, the backup waits for you (understudy failover --force).' : 'Failover policy: automatic. The backup takes over by itself when the witness agrees the primary is gone.');
  return 0;
}

async function vip(argv: string[]): Promise<number> {
  const { values, positionals } = parse('vip', argv, { dev: { type: 'string' } }, true);
  const [verb, address, ...extra] = positionals;
  if (verb !== 'set' || address === undefined || extra.length > 0) throw new UsageError("vip: 'vip set ADDRESS/PREFIX --dev IFACE' or 'vip set none'");
  const dev = address === 'none' ? '' : requireOption('vip set', 'dev', values.dev);
  const result = await call(homeFrom(values), 'cluster:vip-set', { address, dev });
  if (values.json) console.log(JSON.stringify(result));
  else console.log(result.address ? `Virtual IP ${result.address} on ${result.dev} moves with the primary role.` : 'No virtual IP.');
  return 0;
}

async function config(argv: string[]): Promise<number> {
  const { values, positionals } = parse('config', argv, {}, true);
  const [verb, key, value, ...extra] = positionals;
  if (verb !== 'set' || key === undefined || value === undefined || extra.length > 0) throw new UsageError("config: 'config set KEY VALUE'");
  const result = await call(homeFrom(values), 'cluster:config-set', { key, value });
  if (values.json) console.log(JSON.stringify(result));
  else for (const [name, setting] of Object.entries(result)) console.log(`${name.padEnd(16)} ${setting ?? 'none'}`);
  return 0;
}

async function pairCode(argv: string[]): Promise<number> {
  const { values } = parse('pair-code', argv, {});
  const result = await call(homeFrom(values), 'pair:code', {});
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`One-time pairing code (expires at ${result.expiresAt}, works once).`);
    console.log('On the backup, run: understudy pair --peer THIS_MACHINE:PORT --code CODE');
    console.log(result.code);
  }
  return 0;
}

async function pair(argv: string[]): Promise<number> {
  const { values } = parse('pair', argv, { peer: { type: 'string' }, code: { type: 'string' }, as: { type: 'string' } });
  const home = homeFrom(values);
  const peer = requireOption('pair', 'peer', values.peer);
  const code = requireOption('pair', 'code', values.code);
  if (!parseAddress(peer)) throw new UsageError(`pair: --peer '${peer}' is not HOST:PORT`);
  const as = values.as ?? 'backup';
  if (as !== 'backup' && as !== 'witness') throw new UsageError(`pair: --as '${as}' must be backup or witness`);
  const result = await call(home, 'pair:join', { peer, code, as });
  if (values.json) console.log(JSON.stringify(result));
  else console.log(`Paired with '${result.peer.name}' at ${result.peer.address}; this node is ${as === 'witness' ? "the pair's witness" : 'its backup'}.`);
  return 0;
}

async function protect(argv: string[]): Promise<number> {
  const { values, positionals } = parse('protect', argv, { to: { type: 'string' }, exclude: { type: 'string', multiple: true } }, true);
  const [kind, source, ...extra] = positionals;
  if (kind !== 'folder' && kind !== 'sqlite') throw new UsageError(`protect: what to protect? 'protect folder SRC' or 'protect sqlite SRC' (got '${kind ?? ''}')`);
  if (!source || extra.length > 0) throw new UsageError(`protect ${kind}: give exactly one SRC ${kind === 'folder' ? 'folder' : 'database file'}`);
  if (kind === 'sqlite' && values.exclude) throw new UsageError('protect sqlite: --exclude is for folders');
  const result = await call(homeFrom(values), 'object:protect', {
    kind,
    source: resolve(source),
    ...(values.to ? { target: resolve(values.to) } : {}),
    excludes: values.exclude ?? [],
  });
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(`Protecting ${result.source} -> ${result.target} on the backup (${result.state}).`);
    console.log(result.id);
  }
  return 0;
}

async function unprotect(argv: string[]): Promise<number> {
  const { values, positionals } = parse('unprotect', argv, {}, true);
  if (positionals.length !== 1) throw new UsageError('unprotect: give exactly one object id');
  const result = await call(homeFrom(values), 'object:unprotect', { id: positionals[0]! });
  console.log(values.json ? JSON.stringify(result) : `Stopped protecting ${result.id}; the backup's copy is left in place.`);
  return 0;
}

async function hooks(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    'hooks',
    argv,
    { start: { type: 'string' }, stop: { type: 'string' }, check: { type: 'string' }, 'check-failures': { type: 'string' }, timeout: { type: 'string' } },
    true,
  );
  if (positionals[0] !== 'set' || positionals.length !== 1) throw new UsageError("hooks: 'hooks set [--start CMD] [--stop CMD] [--check CMD] [--check-failures N] [--timeout MS]'");
  const whole = (name: string, text: string | undefined, min: number) => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`hooks set: --${name} must be a whole number of at least ${min} (got '${text}')`);
    return n;
  };
  const checkFailures = whole('check-failures', values['check-failures'], 1);
  const timeoutMs = whole('timeout', values.timeout, 100);
  const result = await call(homeFrom(values), 'cluster:hooks-set', {
    ...(values.start !== undefined ? { start: values.start } : {}),
    ...(values.stop !== undefined ? { stop: values.stop } : {}),
    ...(values.check !== undefined ? { check: values.check } : {}),
    ...(checkFailures !== undefined ? { checkFailures } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
  if (values.json) console.log(JSON.stringify(result));
  else {
    for (const name of ['start', 'stop', 'check'] as const) console.log(`${name.padEnd(6)} ${result[name] ?? '(none)'}`);
    console.log(`check-failures ${result.checkFailures}, timeout ${result.timeoutMs} ms`);
  }
  return 0;
}

async function consoleUrl(argv: string[]): Promise<number> {
  const { values } = parse('console-url', argv, {});
  const result = await call(homeFrom(values), 'console:url', {});
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log('Open this in a browser on this machine (the part after # is a login token: keep it to yourself):');
    console.log(result.url);
  }
  return 0;
}

async function service(argv: string[]): Promise<number> {
  const { values, positionals } = parse('service', argv, {}, true);
  const [verb, ...extra] = positionals;
  if ((verb !== 'install' && verb !== 'status') || extra.length > 0) throw new UsageError("service: 'service install' or 'service status'");
  // Straight from this process, not through the node: `sudo understudy service install` must
  // have the rights, whatever user the running node has.
  const home = checkHome(homeFrom(values));
  const result = verb === 'install' ? await installService(home) : await serviceStatus(home);
  console.log(values.json ? JSON.stringify(result) : result.detail);
  return verb === 'install' && !result.installed ? 1 : 0;
}

async function audit(argv: string[]): Promise<number> {
  const { values, positionals } = parse('audit', argv, { scrub: { type: 'boolean' } }, true);
  if (positionals.length > 1) throw new UsageError('audit: give at most one object id (none: every object)');
  const result = await call(homeFrom(values), 'object:audit', { ...(positionals[0] ? { id: positionals[0] } : {}), scrub: values.scrub ?? false });
  if (values.json) console.log(JSON.stringify(result));
  else {
    for (const o of result.objects) {
      const found = o.result === 'clean' ? 'clean' : o.result === 'repaired' ? `${o.differences} difference(s) found, ${o.repaired} repaired` : `FAILED (${o.detail ?? 'see the events'})`;
      console.log(`${o.id} ${o.kind}: ${found}  [${o.scope}, ${o.ms} ms]${o.result === 'repaired' && o.detail ? `\n    ${o.detail}` : ''}`);
    }
  }
  const failed = result.objects.filter((o) => o.result === 'failed');
  if (failed.length === 0) return 0;
  console.error(`understudy: the audit of ${failed.map((o) => o.id).join(', ')} could not complete or repair: ${failed[0]!.detail ?? 'see the events'}`);
  return 1;
}

async function switchover(argv: string[]): Promise<number> {
  const { values } = parse('switchover', argv, { 'dry-run': { type: 'boolean' }, rehearse: { type: 'boolean' } });
  if (values.rehearse) {
    const result = await call(homeFrom(values), 'cluster:rehearse', {});
    if (values.json) console.log(JSON.stringify(result));
    else {
      console.log(`Rehearsal on '${result.node}': the check hook ${result.ok ? 'passed' : 'FAILED'} against a snapshot of ${result.objects.length} object(s) (exit ${result.exitCode ?? 'none'}${result.timedOut ? ', timed out' : ''}, ${result.ms} ms).`);
      if (result.output.trim()) console.log(result.output.trimEnd());
    }
    return result.ok ? 0 : 1;
  }
  if (values['dry-run']) {
    const readiness = await call(homeFrom(values), 'cluster:readiness', {});
    if (values.json) console.log(JSON.stringify(readiness));
    else {
      const mark = { ok: 'ok     ', warning: 'WARNING', blocker: 'BLOCKS ' } as const;
      for (const check of readiness.checks) console.log(`${mark[check.level]}  ${check.detail}`);
      console.log(readiness.ready ? 'Ready: a switchover would go ahead now.' : 'Not ready: a switchover would be refused now.');
    }
    return readiness.ready ? 0 : 1;
  }
  const result = await call(homeFrom(values), 'cluster:switchover', {});
  console.log(values.json ? JSON.stringify(result) : `Switchover done in ${result.ms} ms; this node is now the ${result.role} (epoch ${result.epoch}).`);
  return 0;
}

async function status(argv: string[]): Promise<number> {
  const { values } = parse('status', argv, {});
  const report = await call(homeFrom(values), 'node:status', {});
  console.log(values.json ? JSON.stringify(report) : formatStatus(report));
  return 0;
}

async function events(argv: string[]): Promise<number> {
  const { values } = parse('events', argv, { limit: { type: 'string' } });
  const home = homeFrom(values);
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError('events: --limit must be a whole number above 0');
  let list;
  try {
    list = await call(home, 'events:list', limit === undefined ? {} : { limit });
  } catch (error) {
    if (!isUnderstudyError(error) || error.code !== 'not-running') throw error;
    // The event log is most wanted after a node stopped: read it from the store directly.
    list = readEventsOffline(home, limit);
  }
  console.log(values.json ? JSON.stringify(list) : formatEvents(list));
  return 0;
}

function readEventsOffline(home: string, limit: number | undefined) {
  checkHome(home);
  const store = Store.open(home, { readonly: true });
  try {
    return store.listEvents(limit === undefined ? {} : { limit }).map((e) => ({ ...(e.data ?? {}), id: e.id, at: e.at, type: e.type, message: e.message })) as CommandResult<'events:list'>;
  } finally {
    store.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      console.error(`understudy: ${error.toLine()}`);
      process.exitCode = 2;
    } else if (isUnderstudyError(error)) {
      console.error(`understudy: ${error.toLine()}`);
      process.exitCode = 1;
    } else {
      console.error(`understudy: unexpected failure: ${describeError(error)} (set UNDERSTUDY_DEBUG=1 for details)`);
      if (process.env.UNDERSTUDY_DEBUG) console.error(error);
      process.exitCode = 1;
    }
  },
);
