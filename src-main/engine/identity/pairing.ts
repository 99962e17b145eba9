/**
 * The pairing exchange, over TLS on the peer port (ALPN understudy-pair/1).
 *
 * The joiner checks first that the issuer's key matches the code, so it never talks to the
 * wrong machine. Then each side proves it holds the code's secret with a MAC bound to both
 * public keys and both nonces: the secret never crosses the wire, and a proof cannot be
 * replayed to another node or connection. The issuer pins the joiner only when the joiner
 * commits after pinning the issuer, so both end with a pin or neither does.
 */
import { randomBytes } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { UnderstudyError, type ErrorCode } from '../errors.js';
import { FramedSocket } from '../link/framed-socket.js';
import { MaxFrameBytes, PairMessageSchema, type PairMessage } from '../link/messages.js';
import { Alpn, clientTlsOptions, formatAddress, peerCertificatePem, peerKeyHash } from '../link/tls.js';
import { keyHashFromNodeId, nodeIdFromKeyHash, type Identity } from './identity.js';
import { codeMatchesKey, pairingProof, parsePairingCode, proofsEqual, type PairingCodeBook } from './pairing-code.js';
import type { PeerRecord } from '../store/store.js';

/** Each step of the exchange must arrive within this time. */
const StepTimeoutMs = 10_000;
/** A wrong proof is answered only after this pause, to slow guessing further. */
const WrongCodeDelayMs = 500;
/** Pairing starts the cluster's first epoch, with the code's issuer as primary. */
export const FirstEpoch = 1;

export interface Pairer {
  identity: Identity;
  name: string;
  listen: { host: string; port: number };
  log: Logger;
  /** The peer already in that place (the backup, or the witness), if any: each place takes one. */
  pairedWith(as: JoinAs): PeerRecord | null;
}

/** What a joiner becomes: the issuer's backup, or the pair's witness. */
export type JoinAs = 'backup' | 'witness';

export interface Issuer extends Pairer {
  codes: PairingCodeBook;
  /** Durably pins the joiner (its role says backup or witness); a backup makes this node primary. Called once, on commit. */
  commit(peer: PeerRecord): void;
  /** The epoch a joiner starts in: the first one for a new pair, the current one for a witness. */
  epochFor(as: JoinAs): number;
  /** Reports a refused attempt (wrong, expired or used code, and so on). */
  refused(reason: { code: ErrorCode; message: string; remote: string }): void;
}

export interface Joiner extends Pairer {
  as: JoinAs;
  /** Durably pins the issuer and makes this node its backup, before committing. */
  pin(peer: PeerRecord, epoch: number): void;
  /** Takes the pin back when the issuer did not confirm. */
  unpin(peerId: string): void;
}

type Step<T extends PairMessage['t']> = Extract<PairMessage, { t: T }>;

/** A small reader that lets the exchange be written as a sequence of awaited steps. */
class Exchange {
  private readonly queue: PairMessage[] = [];
  private waiting: { resolve: (m: PairMessage) => void; reject: (e: Error) => void } | null = null;
  private closedWith: string | null = null;
  readonly conn: FramedSocket<PairMessage>;

  constructor(socket: TLSSocket) {
    this.conn = new FramedSocket(socket, {
      schema: PairMessageSchema,
      maxFrameBytes: MaxFrameBytes.pair,
      onMessage: (message) => {
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w.resolve(message);
        } else this.queue.push(message);
      },
      onClose: (reason) => {
        this.closedWith = reason ?? 'connection closed';
        this.waiting?.reject(new Error(this.closedWith));
        this.waiting = null;
      },
    });
  }

  async next<T extends PairMessage['t']>(...expected: T[]): Promise<Step<T> | Step<'pair.refused'>> {
    const message = await this.receive();
    if (message.t === 'pair.refused') return message;
    if (!(expected as string[]).includes(message.t)) throw new Error(`expected ${expected.join(' or ')}, got ${message.t}`);
    return message as Step<T>;
  }

  private receive(): Promise<PairMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.closedWith !== null) return Promise.reject(new Error(this.closedWith));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = null;
        reject(new Error('the other node took too long to answer'));
      }, StepTimeoutMs);
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  refuse(code: ErrorCode, message: string): void {
    this.conn.send({ t: 'pair.refused', code, message });
    this.conn.socket.end();
  }
}

let pairingInProgress = false;

/** The issuer's side: runs on a connection that arrived with ALPN understudy-pair/1. */
export async function answerPairing(socket: TLSSocket, issuer: Issuer): Promise<void> {
  const remote = socket.remoteAddress ?? 'unknown';
  const exchange = new Exchange(socket);
  const refuse = (code: ErrorCode, message: string) => {
    issuer.refused({ code, message, remote });
    exchange.refuse(code, message);
  };
  try {
    const joinerKey = peerKeyHash(socket);
    const joinerCert = peerCertificatePem(socket);
    if (!joinerKey || !joinerCert) return refuse('pair-failed', 'no certificate was presented');
    const hello = await exchange.next('pair.hello');
    if (hello.t !== 'pair.hello') return;
    if (hello.nodeId !== nodeIdFromKeyHash(joinerKey)) return refuse('pair-failed', 'the node id does not match the key presented');
    const as: JoinAs = hello.as ?? 'backup';
    const existing = issuer.pairedWith(as);
    if (existing) {
      return refuse('already-paired', `the node '${issuer.name}' is already paired with '${existing.name}' as its ${as}`);
    }
    if (pairingInProgress) return refuse('pair-failed', 'another pairing is in progress on this node; try again in a moment');
    const check = issuer.codes.check(hello.codeId);
    if (!check.ok) return refuse(check.code, check.message);

    const issuerNonce = randomBytes(32);
    exchange.conn.send({ t: 'pair.challenge', nodeId: issuer.identity.nodeId, name: issuer.name, nonce: issuerNonce.toString('base64') });
    const proof = await exchange.next('pair.proof');
    if (proof.t !== 'pair.proof') return;
    const transcript = {
      joinerKey,
      issuerKey: Buffer.from(nodeKeyHash(issuer.identity)),
      joinerNonce: Buffer.from(hello.nonce, 'base64'),
      issuerNonce,
    };
    if (!proofsEqual(proof.mac, pairingProof(check.secret, 'joiner', transcript))) {
      issuer.codes.recordFailure();
      await delay(WrongCodeDelayMs);
      return refuse('pair-code-wrong', 'the pairing code is wrong');
    }
    // From here the code is spent, whatever happens next: a code works once.
    issuer.codes.consume(hello.codeId);
    pairingInProgress = true;
    try {
      exchange.conn.send({ t: 'pair.accepted', mac: pairingProof(check.secret, 'issuer', transcript), epoch: issuer.epochFor(as) });
      const commit = await exchange.next('pair.commit');
      if (commit.t !== 'pair.commit') return;
      if (issuer.pairedWith(as)) return refuse('already-paired', `the node '${issuer.name}' paired with another ${as} meanwhile`);
      const host = isWildcard(hello.listen.host) ? stripIpv6Prefix(remote) : hello.listen.host;
      issuer.commit({
        id: hello.nodeId,
        name: hello.name,
        role: as,
        keyHash: joinerKey,
        certPem: joinerCert,
        host,
        port: hello.listen.port,
        pairedAt: new Date().toISOString(),
      });
      exchange.conn.send({ t: 'pair.committed' });
      socket.end();
    } finally {
      pairingInProgress = false;
    }
  } catch (error) {
    issuer.log.info({ remote, reason: (error as Error).message }, 'pairing attempt ended');
    exchange.conn.close((error as Error).message);
  }
}

/** The joiner's side: pairs this node as the backup of the node at `address`. */
export async function joinPeer(joiner: Joiner, address: { host: string; port: number }, codeText: string): Promise<PeerRecord> {
  const existing = joiner.pairedWith('backup') ?? joiner.pairedWith('witness');
  if (existing) {
    throw new UnderstudyError('already-paired', `this node is already paired with '${existing.name}'`, {
      hint: 'a paired node cannot pair again; use a fresh node as the new backup',
    });
  }
  const code = parsePairingCode(codeText);
  const where = formatAddress(address.host, address.port);
  const socket = await openPairingConnection(joiner.identity, address.host, address.port);
  const exchange = new Exchange(socket);
  let pinnedId: string | null = null;
  try {
    const issuerKey = peerKeyHash(socket);
    const issuerCert = peerCertificatePem(socket);
    if (!issuerKey || !issuerCert || !codeMatchesKey(code, issuerKey)) {
      throw new UnderstudyError('pair-wrong-peer', `the node at ${where} is not the node that printed this code`, {
        hint: 'check the address, or print a new code on the primary',
      });
    }
    const joinerNonce = randomBytes(32);
    exchange.conn.send({
      t: 'pair.hello',
      codeId: code.codeId,
      nodeId: joiner.identity.nodeId,
      name: joiner.name,
      listen: joiner.listen,
      nonce: joinerNonce.toString('base64'),
      ...(joiner.as === 'witness' ? { as: 'witness' as const } : {}),
    });
    const challenge = await exchange.next('pair.challenge');
    if (challenge.t === 'pair.refused') throw refusedError(challenge, where);
    if (challenge.nodeId !== nodeIdFromKeyHash(issuerKey)) throw new Error('the challenge names another node id');
    const transcript = { joinerKey: nodeKeyHash(joiner.identity), issuerKey, joinerNonce, issuerNonce: Buffer.from(challenge.nonce, 'base64') };
    exchange.conn.send({ t: 'pair.proof', mac: pairingProof(code.secret, 'joiner', transcript) });
    const accepted = await exchange.next('pair.accepted');
    if (accepted.t === 'pair.refused') throw refusedError(accepted, where);
    if (!proofsEqual(accepted.mac, pairingProof(code.secret, 'issuer', transcript))) {
      throw new UnderstudyError('pair-wrong-peer', `the node at ${where} could not prove it issued this code`, {
        hint: 'pairing was stopped; print a new code on the primary and check the address',
      });
    }
    const peer: PeerRecord = {
      id: challenge.nodeId,
      name: challenge.name,
      role: 'primary',
      keyHash: issuerKey,
      certPem: issuerCert,
      host: address.host,
      port: address.port,
      pairedAt: new Date().toISOString(),
    };
    joiner.pin(peer, accepted.epoch);
    pinnedId = peer.id;
    exchange.conn.send({ t: 'pair.commit' });
    const committed = await exchange.next('pair.committed');
    if (committed.t === 'pair.refused') throw refusedError(committed, where);
    pinnedId = null;
    exchange.conn.close(null);
    return peer;
  } catch (error) {
    if (pinnedId) joiner.unpin(pinnedId);
    exchange.conn.close(null);
    if (error instanceof UnderstudyError) throw error;
    throw new UnderstudyError('pair-failed', `pairing with ${where} failed: ${(error as Error).message}`, {
      hint: 'nothing was pinned; check both nodes are running and try again with a new code',
      cause: error,
    });
  }
}

function openPairingConnection(identity: Identity, host: string, port: number): Promise<TLSSocket> {
  const where = formatAddress(host, port);
  return new Promise((resolve, reject) => {
    const socket = connect(clientTlsOptions(identity, Alpn.pair, host, port));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new UnderstudyError('pair-unreachable', `no answer from ${where}`, { hint: 'check the address and that the primary is running' }));
    }, StepTimeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new UnderstudyError('pair-unreachable', `cannot reach ${where}: ${error.code ?? error.message}`, {
          hint: "check the address and that the primary runs 'understudy serve'",
          cause: error,
        }),
      );
    });
  });
}

function refusedError(refusal: Step<'pair.refused'>, where: string): UnderstudyError {
  const known: ErrorCode[] = ['pair-code-wrong', 'pair-code-expired', 'pair-code-used', 'pair-throttled', 'already-paired'];
  const code = (known as string[]).includes(refusal.code) ? (refusal.code as ErrorCode) : 'pair-failed';
  const hints: Partial<Record<ErrorCode, string>> = {
    'pair-code-wrong': "check the code, or print a new one with 'understudy pair-code' on the primary",
    'pair-code-expired': "codes last 10 minutes; print a new one with 'understudy pair-code' on the primary",
    'pair-code-used': "a code works once; print a new one with 'understudy pair-code' on the primary",
    'pair-throttled': 'wait, then try again with the right code',
    'already-paired': 'the primary already has a backup',
  };
  return new UnderstudyError(code, `${where} refused pairing: ${refusal.message}`, { hint: hints[code] ?? 'nothing was pinned' });
}

function nodeKeyHash(identity: Identity): Buffer {
  return keyHashFromNodeId(identity.nodeId);
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

function stripIpv6Prefix(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
