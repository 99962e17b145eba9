/**
 * The schemas of every message a node accepts from the network, one set per channel.
 * Nothing from a socket is used before it has passed one of these.
 */
import * as v from 'valibot';

const NodeIdPattern = /^[A-Z2-7]{13}(-[A-Z2-7]{13}){3}$/;
const Base64Pattern = /^[A-Za-z0-9+/]+={0,2}$/;

export const NodeIdSchema = v.pipe(v.string(), v.regex(NodeIdPattern, 'not a node id'));
const NameSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
const EpochSchema = v.pipe(v.number(), v.integer(), v.minValue(0));
const SeqSchema = v.pipe(v.number(), v.integer(), v.minValue(0));
const NonceSchema = v.pipe(v.string(), v.length(44), v.regex(Base64Pattern, 'not base64'));
const MacSchema = v.pipe(v.string(), v.length(44), v.regex(Base64Pattern, 'not base64'));
const RoleSchema = v.picklist(['standalone', 'primary', 'backup', 'witness']);
const HostSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(255));
const PortSchema = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535));

/**
 * A position in a journal: the epoch in which the change was made and its sequence within
 * that epoch. Comparing positions compares epochs first, so a new primary's changes always
 * sort after the old primary's, whatever their sequence numbers.
 */
export const JournalPositionSchema = v.object({ epoch: EpochSchema, seq: SeqSchema });
export type JournalPosition = v.InferOutput<typeof JournalPositionSchema>;

export const ListenAddressSchema = v.object({ host: HostSchema, port: PortSchema });

// --- pairing channel (ALPN understudy-pair/1) -------------------------------------------

export const PairMessageSchema = v.variant('t', [
  v.object({
    t: v.literal('pair.hello'),
    codeId: v.pipe(v.string(), v.regex(/^[0-9a-f]{4}$/)),
    nodeId: NodeIdSchema,
    name: NameSchema,
    listen: ListenAddressSchema,
    nonce: NonceSchema,
    // What the joiner pairs as: the primary's backup (the default) or the pair's witness.
    as: v.optional(v.picklist(['backup', 'witness'])),
  }),
  v.object({ t: v.literal('pair.challenge'), nodeId: NodeIdSchema, name: NameSchema, nonce: NonceSchema }),
  v.object({ t: v.literal('pair.proof'), mac: MacSchema }),
  v.object({ t: v.literal('pair.accepted'), mac: MacSchema, epoch: EpochSchema }),
  v.object({ t: v.literal('pair.commit') }),
  v.object({ t: v.literal('pair.committed') }),
  v.object({
    t: v.literal('pair.refused'),
    code: v.pipe(v.string(), v.maxLength(64)),
    message: v.pipe(v.string(), v.maxLength(500)),
  }),
]);
export type PairMessage = v.InferOutput<typeof PairMessageSchema>;

// --- data channel (ALPN understudy/1) ---------------------------------------------------
// Every replication message carries the sender's epoch, so a backup can refuse anything
// from a primary that has been superseded.

const ObjectIdSchema = v.pipe(v.string(), v.regex(/^[a-z0-9-]{1,64}$/));
/** A path inside a protected folder as it travels: relative, '/'-separated (checked again where applied). */
const RelativePathSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(4096));
const IntSchema = v.pipe(v.number(), v.integer());
const HashSchema = v.nullable(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)));

export const FolderEntrySchema = v.object({
  path: RelativePathSchema,
  type: v.picklist(['file', 'dir', 'symlink']),
  deleted: v.boolean(),
  size: v.pipe(IntSchema, v.minValue(0)),
  mode: v.pipe(IntSchema, v.minValue(0), v.maxValue(0o7777)),
  mtimeMs: v.pipe(v.number(), v.finite()),
  uid: v.pipe(IntSchema, v.minValue(0)),
  gid: v.pipe(IntSchema, v.minValue(0)),
  ino: v.pipe(v.number(), v.minValue(0)),
  linkTarget: v.nullable(v.pipe(v.string(), v.maxLength(4096))),
  hash: HashSchema,
  renamedFrom: v.nullable(RelativePathSchema),
  seq: v.pipe(IntSchema, v.minValue(1)),
  changedAt: v.pipe(v.number(), v.finite()),
});

/** Largest number of entries in one folder.changes message. */
export const MaxEntriesPerMessage = 500;
/** Damaged pages one sqlite.repair names; more than that and the backup sends all its page hashes instead. */
export const MaxRepairPages = 10_000;
/** Largest number of files one folder.fetch-files request or folder.files reply names. */
export const MaxFilesPerFetch = 256;

const FetchedFileSchema = v.object({
  reqId: v.pipe(IntSchema, v.minValue(1)),
  ok: v.boolean(),
  size: v.pipe(IntSchema, v.minValue(0)),
  hash: HashSchema,
  mtimeMs: v.pipe(v.number(), v.finite()),
  reason: v.nullable(v.pipe(v.string(), v.maxLength(500))),
});

const ReqIdSchema = v.pipe(IntSchema, v.minValue(1));
const DigestSchema = v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/));
const LastAuditSchema = v.object({
  at: v.pipe(v.string(), v.maxLength(40)),
  result: v.picklist(['clean', 'repaired', 'failed']),
  differences: v.pipe(IntSchema, v.minValue(0)),
  repaired: v.pipe(IntSchema, v.minValue(0)),
  scope: v.pipe(v.string(), v.maxLength(64)),
  ms: v.pipe(v.number(), v.minValue(0)),
  detail: v.nullable(v.pipe(v.string(), v.maxLength(2000))),
});
const StageSchema = v.object({ lagMs: v.pipe(IntSchema, v.minValue(0)), changes: v.pipe(IntSchema, v.minValue(0)) });
const AuditOutcomeSchema = v.object({ ...LastAuditSchema.entries, id: ObjectIdSchema, kind: v.picklist(['folder', 'sqlite']) });

export const LinkMessageSchema = v.variant('t', [
  v.object({
    t: v.literal('hello'),
    nodeId: NodeIdSchema,
    name: NameSchema,
    role: RoleSchema,
    epoch: EpochSchema,
    position: JournalPositionSchema,
  }),
  // primary -> backup: an object to replicate into target (or, with removed, to stop replicating)
  v.object({
    t: v.literal('folder.object'),
    epoch: EpochSchema,
    position: JournalPositionSchema,
    objectId: ObjectIdSchema,
    source: v.pipe(v.string(), v.maxLength(4096)),
    target: v.pipe(v.string(), v.minLength(1), v.maxLength(4096)),
    removed: v.boolean(),
    kind: v.picklist(['folder', 'sqlite']),
  }),
  // backup -> primary: send me the changes after position.seq
  v.object({ t: v.literal('folder.want'), epoch: EpochSchema, position: JournalPositionSchema, objectId: ObjectIdSchema }),
  // primary -> backup: changes in seq order; position.seq is the last one's seq, and `after` the
  // seq they follow (the last seq of the previous message), so the backup can tell a gap
  v.object({
    t: v.literal('folder.changes'),
    epoch: EpochSchema,
    position: JournalPositionSchema,
    after: v.pipe(IntSchema, v.minValue(0)),
    objectId: ObjectIdSchema,
    entries: v.pipe(v.array(FolderEntrySchema), v.maxLength(MaxEntriesPerMessage)),
  }),
  // backup -> primary: send the blocks of path that differ from these (body: the backup's block hashes)
  v.object({
    t: v.literal('folder.fetch'),
    epoch: EpochSchema,
    position: JournalPositionSchema,
    objectId: ObjectIdSchema,
    reqId: v.pipe(IntSchema, v.minValue(1)),
    path: RelativePathSchema,
    blockSize: v.pipe(IntSchema, v.minValue(1024), v.maxValue(1024 * 1024)),
    // a large file: the body holds one hash per group of this many blocks; answered by folder.group-hashes
    groupBlocks: v.optional(v.pipe(IntSchema, v.minValue(2), v.maxValue(4096))),
    // the second round of a grouped fetch: send exactly these blocks (no body), then folder.fetched
    blocks: v.optional(v.pipe(v.array(v.pipe(IntSchema, v.minValue(0))), v.maxLength(1 << 20))),
  }),
  // primary -> backup: for a grouped fetch, its block hashes of the groups that differ (body, in
  // `groups` order); `blocks` is how many blocks the file has now
  v.object({
    t: v.literal('folder.group-hashes'),
    epoch: EpochSchema,
    reqId: v.pipe(IntSchema, v.minValue(1)),
    blocks: v.pipe(IntSchema, v.minValue(0)),
    groups: v.pipe(v.array(v.pipe(IntSchema, v.minValue(0))), v.maxLength(1 << 20)),
  }),
  // backup -> primary: send these whole files (the backup has no version of them); small
  // files travel many to a folder.files reply, others as a folder.fetch would
  v.object({
    t: v.literal('folder.fetch-files'),
    epoch: EpochSchema,
    position: JournalPositionSchema,
    objectId: ObjectIdSchema,
    blockSize: v.pipe(IntSchema, v.minValue(1024), v.maxValue(1024 * 1024)),
    files: v.pipe(v.array(v.object({ reqId: v.pipe(IntSchema, v.minValue(1)), path: RelativePathSchema })), v.minLength(1), v.maxLength(MaxFilesPerFetch)),
  }),
  // primary -> backup: the outcome of several fetches; the body holds the contents of the ok
  // ones, one after the other, in the order listed
  v.object({
    t: v.literal('folder.files'),
    epoch: EpochSchema,
    files: v.pipe(v.array(FetchedFileSchema), v.minLength(1), v.maxLength(MaxFilesPerFetch)),
  }),
  // primary -> backup: block `index` of a fetch (body: its bytes)
  v.object({ t: v.literal('folder.block'), epoch: EpochSchema, reqId: v.pipe(IntSchema, v.minValue(1)), index: v.pipe(IntSchema, v.minValue(0)) }),
  // primary -> backup: the end of a fetch: the file as read stable, or why not
  v.object({
    t: v.literal('folder.fetched'),
    epoch: EpochSchema,
    reqId: v.pipe(IntSchema, v.minValue(1)),
    ok: v.boolean(),
    size: v.pipe(IntSchema, v.minValue(0)),
    hash: HashSchema,
    mtimeMs: v.pipe(v.number(), v.finite()),
    reason: v.nullable(v.pipe(v.string(), v.maxLength(500))),
  }),
  // backup -> primary: the page hashes of its copy of a database (body: 16 bytes a page, in
  // parts), after which the primary sends what differs and then every transaction
  v.object({
    t: v.literal('sqlite.hashes'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    txid: v.pipe(IntSchema, v.minValue(0)),
    // sent for an audit: the resync answering it is the audit's repair, not news for the event log
    audit: v.optional(v.boolean()),
    // sent because the primary asked (sqlite.rehash, `understudy resync`): the resync answering it is the admin's
    resync: v.optional(v.boolean()),
    // numbers the backup's requests; the resync that answers it says so in `basis`
    request: v.pipe(IntSchema, v.minValue(1)),
    part: v.pipe(IntSchema, v.minValue(0)),
    last: v.boolean(),
  }),
  // primary -> backup: one transaction (or a resync's differences) in parts (body: pages, each
  // a 4-byte page number and the page); the last part says the database's size and checksum after it
  v.object({
    t: v.literal('sqlite.txn'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    txid: v.pipe(IntSchema, v.minValue(1)),
    part: v.pipe(IntSchema, v.minValue(0)),
    last: v.boolean(),
    pageSize: v.pipe(IntSchema, v.minValue(512), v.maxValue(65536)),
    dbPages: v.pipe(IntSchema, v.minValue(0)),
    checksum: v.nullable(v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/))),
    snapshot: v.boolean(),
    // a resync: the sqlite.hashes request it was computed against (0 for a WAL transaction, or a
    // resync computed against what the primary shipped: a backup awaiting an answer drops it)
    basis: v.pipe(IntSchema, v.minValue(0)),
    capture: v.picklist(['wal', 'snapshot']),
  }),
  // backup -> primary: an audit found these pages of the copy damaged (the copy is otherwise at
  // the last transaction it applied): send them, as a resync against what you shipped
  v.object({
    t: v.literal('sqlite.repair'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    request: v.pipe(IntSchema, v.minValue(1)),
    pages: v.pipe(v.array(v.pipe(IntSchema, v.minValue(1))), v.minLength(1), v.maxLength(MaxRepairPages)),
  }),
  // primary -> backup: `understudy resync`: hash every page of the copy as it is on disk and send
  // the hashes (sqlite.hashes with resync), so every page is compared again and what differs sent
  v.object({ t: v.literal('sqlite.rehash'), epoch: EpochSchema, objectId: ObjectIdSchema }),
  // backup -> primary: transaction txid is applied (and whether the state checksum matched)
  v.object({ t: v.literal('sqlite.ack'), epoch: EpochSchema, objectId: ObjectIdSchema, txid: v.pipe(IntSchema, v.minValue(0)), matched: v.boolean() }),
  // backup -> primary: `switchover` was run on the backup: please hand over
  v.object({ t: v.literal('role.switchover'), epoch: EpochSchema, reqId: v.pipe(IntSchema, v.minValue(1)) }),
  // primary -> backup: a switchover request refused, and why
  v.object({ t: v.literal('role.refused'), epoch: EpochSchema, reqId: v.pipe(IntSchema, v.minValue(1)), reason: v.pipe(v.string(), v.maxLength(500)) }),
  // primary -> backup: the primary has stepped down (everything drained and acknowledged): be primary in newEpoch
  v.object({ t: v.literal('role.handover'), epoch: EpochSchema, newEpoch: EpochSchema, reqId: v.pipe(IntSchema, v.minValue(0)) }),
  // backup -> primary: promoted in epoch
  v.object({ t: v.literal('role.handover-ack'), epoch: EpochSchema }),
  // either node -> the other: maintenance mode was turned on or off (it holds for the pair)
  v.object({ t: v.literal('role.maintenance'), epoch: EpochSchema, on: v.boolean() }),
  v.object({ t: v.literal('role.policy'), epoch: EpochSchema, policy: v.picklist(['automatic', 'ask']) }),
  // primary -> backup and witness: who is in the cluster (a witness paired with the primary is pinned by the others)
  v.object({
    t: v.literal('cluster.members'),
    epoch: EpochSchema,
    members: v.pipe(
      v.array(
        v.object({
          id: NodeIdSchema,
          name: NameSchema,
          role: RoleSchema,
          certPem: v.pipe(v.string(), v.maxLength(8192)),
          host: v.pipe(v.string(), v.maxLength(255)),
          port: v.pipe(IntSchema, v.minValue(1), v.maxValue(65535)),
        }),
      ),
      v.maxLength(3),
    ),
  }),
  // either node -> its peers: the license key it holds (taken when genuine and better than the peer's)
  v.object({ t: v.literal('license.offer'), epoch: EpochSchema, key: v.pipe(v.string(), v.maxLength(4096)) }),
  // backup -> primary: the Merkle root of a folder's index, with its 256 bucket hashes when asked
  v.object({ t: v.literal('audit.digest-request'), epoch: EpochSchema, objectId: ObjectIdSchema, reqId: ReqIdSchema, buckets: v.boolean() }),
  // primary -> backup: the digest of its index at seq
  v.object({
    t: v.literal('audit.digest'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    reqId: ReqIdSchema,
    seq: v.pipe(IntSchema, v.minValue(0)),
    root: DigestSchema,
    buckets: v.nullable(v.pipe(v.array(DigestSchema), v.length(256))),
  }),
  // backup -> primary: the index entries of these buckets (they differed)
  v.object({ t: v.literal('audit.entries-request'), epoch: EpochSchema, objectId: ObjectIdSchema, reqId: ReqIdSchema, buckets: v.pipe(v.array(v.pipe(IntSchema, v.minValue(0), v.maxValue(255))), v.maxLength(256)) }),
  // primary -> backup: those entries, in parts
  v.object({
    t: v.literal('audit.entries'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    reqId: ReqIdSchema,
    seq: v.pipe(IntSchema, v.minValue(0)),
    entries: v.pipe(v.array(FolderEntrySchema), v.maxLength(MaxEntriesPerMessage)),
    last: v.boolean(),
  }),
  // primary -> backup, at a switchover's drain point: the Merkle root of your index of this folder
  v.object({ t: v.literal('audit.root-request'), epoch: EpochSchema, objectId: ObjectIdSchema, reqId: ReqIdSchema }),
  // backup -> primary: that root, at the position applied
  v.object({ t: v.literal('audit.root'), epoch: EpochSchema, objectId: ObjectIdSchema, reqId: ReqIdSchema, seq: v.pipe(IntSchema, v.minValue(0)), root: DigestSchema }),
  // primary -> backup: the admin ran `audit` on the primary: audit the copy of one object (or all)
  v.object({ t: v.literal('audit.run'), epoch: EpochSchema, reqId: ReqIdSchema, objectId: v.nullable(ObjectIdSchema), scrub: v.boolean() }),
  // backup -> primary: what those audits found and did
  v.object({ t: v.literal('audit.result'), epoch: EpochSchema, reqId: ReqIdSchema, outcomes: v.pipe(v.array(AuditOutcomeSchema), v.maxLength(1000)), error: v.nullable(v.pipe(v.string(), v.maxLength(500))) }),
  // backup -> primary: the latest audit of one object, for the primary's status
  v.object({ t: v.literal('audit.report'), epoch: EpochSchema, objectId: ObjectIdSchema, audit: LastAuditSchema }),
  // backup -> primary: everything up to position.seq is durably applied
  v.object({ t: v.literal('folder.ack'), epoch: EpochSchema, position: JournalPositionSchema, objectId: ObjectIdSchema }),
  // primary -> backup: how far behind the backup is, as the primary measures it
  v.object({
    t: v.literal('folder.progress'),
    epoch: EpochSchema,
    objectId: ObjectIdSchema,
    state: v.picklist(['initial-sync', 'in-sync', 'catching-up', 'paused', 'error']),
    lagMs: v.pipe(IntSchema, v.minValue(0)),
    pending: v.pipe(IntSchema, v.minValue(0)),
    // optional: a primary of an earlier version sends none of these
    stages: v.optional(v.object({ capture: StageSchema, send: StageSchema, apply: StageSchema })),
    throughput: v.optional(v.object({ bytesPerSec: v.pipe(v.number(), v.finite(), v.minValue(0)), changesPerSec: v.pipe(v.number(), v.finite(), v.minValue(0)) })),
    paused: v.optional(v.boolean()),
  }),
]);

/** The link messages that carry a binary body. */
export const LinkBodyMessages: ReadonlySet<string> = new Set(['folder.fetch', 'folder.group-hashes', 'folder.block', 'folder.files', 'sqlite.hashes', 'sqlite.txn']);
export type LinkMessage = v.InferOutput<typeof LinkMessageSchema>;

// --- heartbeat channel (ALPN understudy-hb/1, its own port) -----------------------------

export const BeatMessageSchema = v.variant('t', [
  v.object({ t: v.literal('hb.hello'), nodeId: NodeIdSchema }),
  // Every ping is also a lease renewal when it comes from the primary (lease: its request id).
  v.object({ t: v.literal('ping'), seq: SeqSchema, epoch: EpochSchema, role: v.optional(RoleSchema), lease: v.optional(SeqSchema), leaseMs: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(120_000))) }),
  v.object({ t: v.literal('pong'), seq: SeqSchema, epoch: EpochSchema, grant: v.optional(SeqSchema), grantedEpoch: v.optional(EpochSchema), refused: v.optional(v.pipe(v.string(), v.maxLength(40))) }),
  // backup -> witness: the primary is gone for me; vote for me in the epoch after `epoch`
  v.object({ t: v.literal('vote.request'), epoch: EpochSchema, reqId: SeqSchema }),
  v.object({ t: v.literal('vote.reply'), reqId: SeqSchema, granted: v.boolean(), epoch: EpochSchema, reason: v.optional(v.pipe(v.string(), v.maxLength(40))) }),
]);
export type BeatMessage = v.InferOutput<typeof BeatMessageSchema>;

/** Largest frames each channel accepts; anything bigger closes the connection. */
export const MaxFrameBytes = {
  pair: 16 * 1024,
  link: 16 * 1024 * 1024,
  beat: 1024,
} as const;

export type ParseResult<T> = { ok: true; message: T } | { ok: false; reason: string };

/** Validates a decoded frame header against a channel's schema; only the named types may carry a body. */
export function parseMessage<T>(
  schema: v.GenericSchema<unknown, T>,
  header: unknown,
  body: Buffer,
  bodyTypes: ReadonlySet<string> = new Set(),
): ParseResult<T> {
  const result = v.safeParse(schema, header);
  if (!result.success) {
    const issue = result.issues[0];
    const path = issue.path?.map((p) => String(p.key)).join('.') ?? '';
    return { ok: false, reason: `invalid message${path ? ` at ${path}` : ''}: ${issue.message}` };
  }
  if (body.length > 0 && !bodyTypes.has((result.output as { t: string }).t)) {
    return { ok: false, reason: 'unexpected body on a message that takes none' };
  }
  return { ok: true, message: result.output };
}
