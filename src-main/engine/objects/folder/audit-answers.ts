/** The primary's side of a folder audit: its index's digest, and the entries of the buckets that differ. */
import type { ObjectStore } from '../object-store.js';
import { MaxEntriesPerMessage } from '../../link/messages.js';
import type { PeerChannel, ReplicationMessage } from './channel.js';
import { bucketOf, digestIndex, liveEntries } from './index-digest.js';

type Request<T extends ReplicationMessage['t']> = Extract<ReplicationMessage, { t: T }>;

export function answerDigest(store: ObjectStore, peer: PeerChannel, request: Request<'audit.digest-request'>): void {
  const seq = store.getObject(request.objectId)?.lastSeq ?? 0;
  const digest = digestIndex(store.entries(request.objectId).values());
  peer.send({ t: 'audit.digest', epoch: peer.epoch(), objectId: request.objectId, reqId: request.reqId, seq, root: digest.root, buckets: request.buckets ? digest.buckets : null });
}

export function answerEntries(store: ObjectStore, peer: PeerChannel, request: Request<'audit.entries-request'>): void {
  const seq = store.getObject(request.objectId)?.lastSeq ?? 0;
  const wanted = new Set(request.buckets);
  const entries = liveEntries(store.entries(request.objectId).values()).filter((entry) => wanted.has(bucketOf(entry.path)));
  const parts = Math.max(1, Math.ceil(entries.length / MaxEntriesPerMessage));
  for (let part = 0; part < parts; part++) {
    peer.send({
      t: 'audit.entries',
      epoch: peer.epoch(),
      objectId: request.objectId,
      reqId: request.reqId,
      seq,
      entries: entries.slice(part * MaxEntriesPerMessage, (part + 1) * MaxEntriesPerMessage),
      last: part === parts - 1,
    });
  }
}
