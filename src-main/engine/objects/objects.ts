/**
 * The protected objects of a node: the sources it replicates as primary and the replicas
 * it keeps as backup. Creates them, routes replication messages to them, and reports them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { UnderstudyError } from '../errors.js';
import type { NodeRole } from '../../contract/control.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from './folder/channel.js';
import { Hasher } from './folder/hasher.js';
import { FolderReplica } from './folder/replica.js';
import { FolderSource, type SourceOptions } from './folder/source.js';
import { VersionsArea } from './folder/versions.js';
import { newFolderObject, ObjectStore, type ObjectRecord } from './object-store.js';
import type Database from 'better-sqlite3';

export interface ObjectsOptions {
  home: string;
  db: Database.Database;
  peer: PeerChannel;
  log: Logger;
  event: ObjectReporter['event'];
  source?: SourceOptions;
}

export class ProtectedObjects {
  private readonly store: ObjectStore;
  private readonly hasher = new Hasher();
  private readonly sources = new Map<string, FolderSource>();
  private readonly replicas = new Map<string, FolderReplica>();
  private readonly versionsRoot: string;

  constructor(private readonly options: ObjectsOptions) {
    this.store = new ObjectStore(options.db);
    this.versionsRoot = join(options.home, 'versions');
  }

  private reporter(): ObjectReporter {
    return { log: this.options.log, event: this.options.event };
  }

  /** Starts every object recorded in the store. */
  async start(): Promise<void> {
    for (const object of this.store.listObjects()) await this.open(object);
  }

  async stop(): Promise<void> {
    for (const source of this.sources.values()) await source.stop();
    for (const replica of this.replicas.values()) await replica.stop();
    await this.hasher.close();
  }

  private async open(object: ObjectRecord): Promise<void> {
    if (object.side === 'source') {
      const source = new FolderSource(object, this.store, this.hasher, this.options.peer, this.reporter(), this.options.source);
      this.sources.set(object.id, source);
      await source.start();
      if (this.options.peer.connected()) source.linkChanged(true);
    } else {
      const replica = new FolderReplica(object, this.store, this.hasher, this.options.peer, this.reporter(), new VersionsArea(join(this.versionsRoot, object.id)), this.options.source?.rescanMs);
      this.replicas.set(object.id, replica);
      await replica.start();
    }
  }

  /** `understudy protect folder`: on the primary (or a node not paired yet). */
  async protectFolder(role: NodeRole, sourcePath: string, targetPath: string | undefined, excludes: string[]): Promise<ObjectStatus> {
    if (role === 'backup' || role === 'witness') {
      throw new UnderstudyError('usage', `this node is the ${role}`, { hint: 'run protect on the primary' });
    }
    const source = resolve(sourcePath);
    if (!existsSync(source) || !statSync(source).isDirectory()) {
      throw new UnderstudyError('usage', `${source} is not a folder`, { hint: 'give an existing folder to protect' });
    }
    const target = targetPath ? resolve(targetPath) : source;
    for (const existing of this.store.listObjects()) {
      if (existing.side === 'source' && (inside(source, existing.source) || inside(existing.source, source))) {
        throw new UnderstudyError('usage', `${source} overlaps ${existing.source}, which is already protected (${existing.id})`, {
          hint: 'protect each folder once',
        });
      }
    }
    const object = newFolderObject({ id: `f-${randomBytes(5).toString('hex')}`, side: 'source', source, target, excludes });
    this.store.addObject(object);
    this.options.event('folder.protected', `protecting ${source} (to ${target} on the backup) as ${object.id}`, { object: object.id, source, target });
    await this.open(object);
    return this.sources.get(object.id)!.status();
  }

  /** Stops protecting an object; the backup's copy stays where it is. */
  async unprotect(id: string): Promise<void> {
    const source = this.sources.get(id);
    const replica = this.replicas.get(id);
    if (!source && !replica) throw new UnderstudyError('usage', `no protected object '${id}'`, { hint: "see 'understudy status' for the ids" });
    if (replica) throw new UnderstudyError('usage', `'${id}' is replicated from the primary`, { hint: 'run unprotect on the primary' });
    const object = this.store.getObject(id)!;
    await source!.stop();
    this.sources.delete(id);
    this.store.removeObject(id);
    this.options.peer.send({ t: 'folder.object', epoch: this.options.peer.epoch(), position: { epoch: this.options.peer.epoch(), seq: 0 }, objectId: id, source: object.source, target: object.target, removed: true });
    this.options.event('folder.unprotected', `stopped protecting ${object.source}; the backup's copy is left in place`, { object: id });
  }

  status(): ObjectStatus[] {
    return [...this.sources.values(), ...this.replicas.values()].map((o) => o.status());
  }

  linkChanged(connected: boolean): void {
    for (const source of this.sources.values()) source.linkChanged(connected);
    for (const replica of this.replicas.values()) replica.linkChanged(connected);
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    if (message.t === 'folder.object') {
      void this.onAnnounce(message);
      return;
    }
    if (message.t === 'folder.block' || message.t === 'folder.fetched' || message.t === 'folder.files') {
      for (const replica of this.replicas.values()) replica.onMessage(message, body);
      return;
    }
    const id = (message as { objectId: string }).objectId;
    this.sources.get(id)?.onMessage(message, body);
    this.replicas.get(id)?.onMessage(message, body);
  }

  private async onAnnounce(message: Extract<ReplicationMessage, { t: 'folder.object' }>): Promise<void> {
    const existing = this.replicas.get(message.objectId);
    if (message.removed) {
      if (!existing) return;
      await existing.stop();
      this.replicas.delete(message.objectId);
      this.store.removeObject(message.objectId);
      this.options.event('folder.unprotected', `the primary stopped protecting ${message.source}; the copy in ${message.target} is left in place`, { object: message.objectId });
      return;
    }
    if (this.sources.has(message.objectId)) return;
    if (!existing) {
      const object = newFolderObject({ id: message.objectId, side: 'replica', source: message.source, target: message.target, excludes: [] });
      this.store.addObject(object);
      this.options.event('folder.replicating', `replicating ${message.source} from the primary into ${message.target}`, { object: object.id });
      await this.open(object);
    }
    this.replicas.get(message.objectId)!.announced(message.source);
  }
}

function inside(path: string, root: string): boolean {
  return path === root || path.startsWith(`${root}/`);
}
