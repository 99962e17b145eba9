/** One command to the running node of a home, over its control socket, with a time limit. */
import type { CommandName, CommandParams, CommandResult } from '../contract/control.js';
import { ControlClient } from '../engine/control/control-client.js';
import { UnderstudyError } from '../engine/errors.js';
import { checkHome } from '../engine/home.js';

/** How long a command that waits for the node may take before giving up. */
const CommandTimeoutMs = 30_000;

/** Sends one command to the running node in `home`, waiting at most CommandTimeoutMs. */
export async function call<C extends CommandName>(home: string, command: C, params: CommandParams<C>): Promise<CommandResult<C>> {
  checkHome(home);
  const client = await ControlClient.connect(home);
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new UnderstudyError('timeout', `the node did not finish '${command}' within ${CommandTimeoutMs / 1000} s`, { hint: 'check its log in HOME/logs' })),
        CommandTimeoutMs,
      );
    });
    return await Promise.race([client.call(command, params), timeout]);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}
