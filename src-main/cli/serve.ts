/** `understudy serve`: runs a node in the foreground until SIGINT or SIGTERM. */
import { createLogger } from '../engine/log.js';
import { checkHome, HomeLock } from '../engine/home.js';
import { loadIdentity } from '../engine/identity/identity.js';
import { UnderstudyNode } from '../engine/node.js';
import { UnderstudyError } from '../engine/errors.js';

export interface ServeOptions {
  home: string;
  heartbeatIntervalMs?: number | undefined;
  /** `understudy witness`: the home must be a witness, or a node not paired yet. */
  witness?: boolean;
}

export async function serve(options: ServeOptions): Promise<number> {
  const home = checkHome(options.home);
  loadIdentity(home); // a home without a node gets its one-line error before anything else
  // The lock comes before the log file, so a second serve on this home never writes to it.
  const lock = HomeLock.acquire(home);
  let log;
  try {
    log = await createLogger({ home, terminal: true });
  } catch (error) {
    lock.release();
    throw error;
  }
  const node = await UnderstudyNode.start({
    home,
    log,
    lock,
    host: startedByServiceManager() ? 'service' : 'terminal',
    ...(options.heartbeatIntervalMs ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
  });
  const status = node.status();
  if (options.witness && status.node.role !== 'witness' && status.node.role !== 'standalone') {
    await node.stop({ recordEvent: false });
    throw new UnderstudyError('usage', `this home is the ${status.node.role} of a pair, not a witness`, {
      hint: "a witness needs its own home: 'understudy init --home DIR --name NAME --listen HOST:PORT' on the witness machine",
    });
  }
  if (options.witness && status.node.role === 'standalone') {
    console.log(`understudy: pair this witness with the primary: understudy pair --home ${home} --peer PRIMARY_HOST:PORT --code CODE --as witness`);
  }
  console.log(`understudy: node '${status.node.name}' (${status.node.role}) serving on ${status.node.listen}; Ctrl-C stops it`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (code: number, why: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ why }, 'stopping');
      node.stop().then(
        () => resolve(code),
        (error: unknown) => {
          log.error({ err: error }, 'clean shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => stop(0, 'SIGINT'));
    process.once('SIGTERM', () => stop(0, 'SIGTERM'));
    node.on('fatal', (error) => {
      console.error(`understudy: stopping: ${error.message}`);
      stop(1, error.message);
    });
  });
}

/**
 * Started by systemd or launchd itself: our parent is PID 1, and it left its mark (systemd sets
 * INVOCATION_ID, launchd names the job in XPC_SERVICE_NAME). Either alone is not enough: a
 * shell inside some other unit inherits INVOCATION_ID.
 */
function startedByServiceManager(env: NodeJS.ProcessEnv = process.env): boolean {
  return process.ppid === 1 && (Boolean(env.INVOCATION_ID) || (env.XPC_SERVICE_NAME ?? '').startsWith('com.understudy'));
}
