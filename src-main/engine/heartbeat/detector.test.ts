import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../clock.js';
import { detectorSettings, PeerDetector } from './detector.js';

const intervalMs = 200;

function setup() {
  const clock = new ManualClock();
  const detector = new PeerDetector(clock, detectorSettings(intervalMs));
  return { clock, detector };
}

/** Connects and answers one ping after rttMs, leaving the detector up. */
function bringUp(clock: ManualClock, detector: PeerDetector, rttMs = 5): void {
  detector.connected();
  detector.pingSent(1);
  clock.advance(rttMs);
  detector.pongReceived(1);
}

describe('PeerDetector', () => {
  test('starts down, with no round trip', () => {
    const { detector } = setup();
    assert.equal(detector.state, 'down');
    assert.equal(detector.rttMs, null);
    assert.equal(detector.rttStats(), null);
    assert.equal(detector.tick(), null);
  });

  test('a pong after connecting brings the peer up, with the round trip measured', () => {
    const { clock, detector } = setup();
    detector.connected();
    detector.pingSent(1);
    clock.advance(7);
    detector.pingSent(2);
    clock.advance(5);
    assert.deepEqual(detector.pongReceived(1)?.state, 'up');
    assert.equal(detector.state, 'up');
    assert.equal(detector.rttMs, 12);
    assert.equal(detector.pongReceived(2), null, 'already up: no transition');
    assert.equal(detector.rttMs, 5);
  });

  test('two intervals of silence make it suspect; the down threshold makes it down', () => {
    const { clock, detector } = setup();
    const { suspectAfterMs, downAfterMs } = detector.settings;
    assert.equal(suspectAfterMs, 2 * intervalMs);
    assert.ok(downAfterMs > suspectAfterMs && downAfterMs <= 4 * intervalMs, `down after ${downAfterMs} ms`);
    bringUp(clock, detector);
    clock.advance(suspectAfterMs - 1);
    assert.equal(detector.tick(), null);
    clock.advance(1);
    assert.equal(detector.tick()?.state, 'suspect');
    assert.equal(detector.state, 'suspect');
    assert.equal(detector.rttMs, null, 'no round trip while not up');
    assert.equal(detector.tick(), null);
    clock.advance(downAfterMs - suspectAfterMs - 1);
    assert.equal(detector.tick(), null);
    clock.advance(1);
    assert.equal(detector.tick()?.state, 'down');
    assert.equal(detector.rttMs, null);
  });

  test('a long silence between ticks goes straight to down', () => {
    const { clock, detector } = setup();
    bringUp(clock, detector);
    clock.advance(4 * intervalMs);
    assert.equal(detector.tick()?.state, 'down');
  });

  test('a pong during suspicion brings it back up', () => {
    const { clock, detector } = setup();
    bringUp(clock, detector);
    detector.pingSent(2);
    clock.advance(3 * intervalMs);
    assert.equal(detector.tick()?.state, 'suspect');
    assert.equal(detector.pongReceived(2)?.state, 'up');
    assert.equal(detector.rttMs, 3 * intervalMs);
  });

  test('a peer that never answered does not become suspect', () => {
    const { clock, detector } = setup();
    detector.connected();
    clock.advance(detector.settings.suspectAfterMs);
    assert.equal(detector.tick(), null);
    clock.advance(10 * intervalMs);
    assert.equal(detector.tick(), null);
    assert.equal(detector.state, 'down');
  });

  test('disconnected() takes the peer down at once', () => {
    const { clock, detector } = setup();
    bringUp(clock, detector);
    const transition = detector.disconnected('socket closed');
    assert.deepEqual(transition, { state: 'down', reason: 'socket closed' });
    assert.equal(detector.state, 'down');
    assert.equal(detector.rttMs, null);
    assert.equal(detector.disconnected('again'), null);
  });

  test('a pong for an unknown or already answered seq is ignored', () => {
    const { clock, detector } = setup();
    detector.connected();
    detector.pingSent(1);
    clock.advance(5);
    assert.equal(detector.pongReceived(99), null);
    assert.equal(detector.state, 'down');
    detector.pongReceived(1);
    clock.advance(3 * intervalMs);
    assert.equal(detector.tick()?.state, 'suspect');
    assert.equal(detector.pongReceived(1), null, 'a repeated pong is not a sign of life');
    assert.equal(detector.state, 'suspect');
  });

  test('pings sent before a reconnect are forgotten', () => {
    const { clock, detector } = setup();
    detector.connected();
    detector.pingSent(1);
    detector.connected();
    clock.advance(5);
    assert.equal(detector.pongReceived(1), null);
    assert.equal(detector.state, 'down');
  });

  test('rttStats gives last, p50 and p99 in microseconds', () => {
    const { clock, detector } = setup();
    detector.connected();
    // 1..101 ms in a scrambled order: the median is 51 ms, p99 is 100 ms.
    const rtts = Array.from({ length: 101 }, (_, i) => ((i * 37) % 101) + 1);
    rtts.forEach((rtt, seq) => {
      detector.pingSent(seq);
      clock.advance(rtt);
      detector.pongReceived(seq);
    });
    assert.deepEqual(detector.rttStats(), { lastUs: rtts.at(-1)! * 1000, p50Us: 51_000, p99Us: 100_000, samples: 101 });
  });

  test('rttStats keeps the last 1000 samples', () => {
    const { clock, detector } = setup();
    detector.connected();
    for (let seq = 0; seq < 1001; seq++) {
      detector.pingSent(seq);
      clock.advance(seq === 0 ? 1000 : 1); // the first, slow sample falls out of the window
      detector.pongReceived(seq);
    }
    assert.deepEqual(detector.rttStats(), { lastUs: 1000, p50Us: 1000, p99Us: 1000, samples: 1000 });
  });
});
