/** Runtime checks of command parameters, matching the types in contract/control.ts. */
import * as v from 'valibot';
import type { CommandName } from '../../contract/control.js';

const Empty = v.optional(v.object({}), {});

export const CommandParamSchemas: { [C in CommandName]: v.GenericSchema } = {
  'node:status': Empty,
  'pair:code': Empty,
  'pair:join': v.object({ peer: v.pipe(v.string(), v.maxLength(300)), code: v.pipe(v.string(), v.maxLength(100)), as: v.optional(v.picklist(['backup', 'witness'])) }),
  'events:list': v.optional(
    v.object({
      afterId: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
      limit: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
    }),
    {},
  ),
  'events:subscribe': Empty,
  'object:protect': v.object({
    kind: v.picklist(['folder', 'sqlite']),
    source: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)),
    target: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))),
    excludes: v.optional(v.array(v.pipe(v.string(), v.maxLength(1000))), []),
  }),
  'object:unprotect': v.object({ id: v.pipe(v.string(), v.maxLength(64)) }),
  'cluster:switchover': Empty,
  'cluster:readiness': Empty,
  'cluster:rehearse': Empty,
  'cluster:hooks-set': v.object({
    start: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(4096)))),
    stop: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(4096)))),
    check: v.optional(v.nullable(v.pipe(v.string(), v.maxLength(4096)))),
    checkFailures: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100))),
    timeoutMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(600_000))),
  }),
  'cluster:failover': v.object({ force: v.boolean() }),
  'cluster:vip-set': v.object({ address: v.pipe(v.string(), v.maxLength(64)), dev: v.pipe(v.string(), v.maxLength(32)) }),
  'cluster:maintenance': v.object({ on: v.boolean() }),
  'cluster:config-set': v.object({ key: v.pipe(v.string(), v.maxLength(64)), value: v.pipe(v.string(), v.maxLength(64)) }),
  'object:audit': v.optional(v.object({ id: v.optional(v.pipe(v.string(), v.maxLength(64))), scrub: v.optional(v.boolean()) }), {}),
  'console:url': Empty,
  'license:show': Empty,
  // Generous: a key is about 300 characters, and pasted keys may carry line breaks.
  'license:install': v.object({ key: v.pipe(v.string(), v.maxLength(4096)) }),
  'object:pause': v.object({ id: v.pipe(v.string(), v.maxLength(64)) }),
  'object:resume': v.object({ id: v.pipe(v.string(), v.maxLength(64)) }),
  'object:resync': v.object({ id: v.pipe(v.string(), v.maxLength(64)) }),
  'object:history': v.object({ id: v.pipe(v.string(), v.maxLength(64)) }),
  'cluster:settings': Empty,
  'cluster:failover-policy': v.object({ policy: v.picklist(['automatic', 'ask']) }),
  'fs:browse': v.optional(v.object({ path: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(4096))) }), {}),
  'fs:measure': v.object({ path: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)) }),
  'setup:get': Empty,
  'setup:save': v.object({
    step: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(7))),
    role: v.optional(v.picklist(['production', 'backup', 'witness'])),
    done: v.optional(v.boolean()),
  }),
  'service:status': Empty,
  'service:install': Empty,
  'dev:block-main': v.object({ ms: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000)) }),
};

export function isCommandName(value: unknown): value is CommandName {
  return typeof value === 'string' && Object.hasOwn(CommandParamSchemas, value);
}
