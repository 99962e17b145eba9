/** `understudy serve`: runs a node in the foreground until SIGINT or SIGTERM. */
import { createLogger } from '../engine/log.js';
import { checkHome } from '../engine/home.js';
import { UnderstudyNode } from '../engine/node.js';

export interface ServeOptions {
  home: string;
  heartbeatIntervalMs?: number | undefined;
}

export async function serve(options: ServeOptions): Promise<number> {
  const home = checkHome(options.home);
  const log = await createLogger({ home, terminal: true });
  const node = await UnderstudyNode.start({
    home,
    log,
    ...(options.heartbeatIntervalMs ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
  });
  const status = node.status();
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
