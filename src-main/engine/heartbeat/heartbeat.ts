/**
 * The main thread's handle on the heartbeat worker: start it, tell it who the peers are
 * and the current epoch, and hear from it when a peer's state changes.
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { UnderstudyError } from '../errors.js';
import type { ClusterView, KeeperReport } from '../cluster/lease-keeper.js';
import type { BeatPeer, BeatWorkerData, FromWorker, ToWorker } from './worker-protocol.js';

export type PeerBeatReport = Extract<FromWorker, { type: 'peer' }>;

export interface HeartbeatEvents {
  peer: [PeerBeatReport];
  keeper: [KeeperReport, number];
  /** The worker died: heartbeats have stopped, which the node must treat as fatal. */
  failed: [Error];
}

export class Heartbeat extends EventEmitter<HeartbeatEvents> {
  private worker: Worker | null = null;
  private stopped = false;

  constructor(
    private readonly data: BeatWorkerData,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Starts the worker; resolves once it listens, rejects with port-in-use or listen-failed. */
  start(): Promise<void> {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: this.data });
    this.worker = worker;
    return new Promise((resolve, reject) => {
      let listening = false;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'listening':
            listening = true;
            resolve();
            return;
          case 'listen-error':
            reject(listenError(this.data.listenHost, this.data.listenPort, message.code, message.message, 'heartbeat'));
            return;
          case 'peer':
            this.emit('peer', message);
            return;
          case 'keeper':
            this.emit('keeper', message.report, message.mono);
            return;
          case 'log':
            this.log[message.level](message.fields, message.msg);
            return;
          case 'stopped':
            return;
        }
      });
      worker.on('error', (error) => {
        this.log.error({ err: error }, 'heartbeat worker failed');
        if (!listening) reject(error);
        else this.emit('failed', error);
      });
      worker.on('exit', (code) => {
        if (!this.stopped && listening) this.emit('failed', new Error(`heartbeat worker exited with code ${code}`));
      });
    });
  }

  setPeers(peers: BeatPeer[]): void {
    this.send({ type: 'peers', peers });
  }

  setCluster(view: ClusterView): void {
    this.send({ type: 'cluster', view });
  }

  /** Stops beating and closes the heartbeat port; resolves when the worker has exited. */
  async stop(): Promise<void> {
    const worker = this.worker;
    if (!worker || this.stopped) return;
    this.stopped = true;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.send({ type: 'stop' });
    const timer = setTimeout(() => void worker.terminate(), 2000);
    await exited;
    clearTimeout(timer);
  }

  private send(message: ToWorker): void {
    this.worker?.postMessage(message);
  }
}

export function listenError(host: string, port: number, code: string, message: string, what: string): UnderstudyError {
  if (code === 'EADDRINUSE') {
    return new UnderstudyError('port-in-use', `the ${what} port ${port} on ${host} is already in use by another program`, {
      hint: `stop that program, or re-create this node with 'understudy init --listen HOST:PORT' on free ports (PORT and PORT+1)`,
    });
  }
  return new UnderstudyError('listen-failed', `cannot listen on ${host}:${port} for ${what}: ${message}`, {
    hint: 'check the listen address of this node',
  });
}
