/**
 * One control request in, one reply out: the same checks for every transport (the control
 * socket, the web console's WebSocket). Unknown commands and bad parameters are refused with
 * a usage error; anything thrown that is not an UnderstudyError is logged as a bug.
 */
import * as v from 'valibot';
import type { Logger } from 'pino';
import type { CommandName, ControlReply } from '../../contract/control.js';
import { describeError, isUnderstudyError, UnderstudyError } from '../errors.js';
import { CommandParamSchemas, isCommandName } from './command-schemas.js';

export type CommandHandler = (command: CommandName, params: unknown) => Promise<unknown>;

/** Answers one request line. `subscribed` is true when it was a successful events:subscribe. */
export async function dispatchRequest(handle: CommandHandler, line: string, log: Logger): Promise<{ reply: ControlReply; subscribed: boolean }> {
  let id = 0;
  try {
    const request = JSON.parse(line) as { id?: unknown; command?: unknown; params?: unknown };
    id = typeof request.id === 'number' ? request.id : 0;
    if (!isCommandName(request.command)) throw new UnderstudyError('usage', `unknown command ${JSON.stringify(request.command)}`);
    const parsed = v.safeParse(CommandParamSchemas[request.command], request.params);
    if (!parsed.success) throw new UnderstudyError('usage', `bad parameters for ${request.command}: ${parsed.issues[0].message}`);
    const result = await handle(request.command, parsed.output);
    return { reply: { id, ok: true, result }, subscribed: request.command === 'events:subscribe' };
  } catch (error) {
    if (!isUnderstudyError(error)) log.error({ err: error }, 'control command failed');
    return {
      reply: {
        id,
        ok: false,
        error: isUnderstudyError(error) ? { code: error.code, message: error.message, ...(error.hint ? { hint: error.hint } : {}) } : { code: 'internal', message: describeError(error) },
      },
      subscribed: false,
    };
  }
}
