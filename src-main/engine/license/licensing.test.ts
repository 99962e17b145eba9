import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnderstudyError } from '../errors.js';
import { Store } from '../store/store.js';
import { issueKey, keyId, type IssueRequest } from './license-key.js';
import { DayMs } from './license-state.js';
import { Licensing } from './licensing.js';

const TestVendorPem = readFileSync(new URL('../../../../test/fixtures/license/vendor-test.pem', import.meta.url), 'utf8');
const trusted = new Map([[keyId(createPublicKey(TestVendorPem)), createPublicKey(TestVendorPem)]]);
const Start = Date.UTC(2027, 0, 10);

class Wall {
  constructor(public ms = Start) {}
  readonly read = () => this.ms;
}

function setup(t: TestContext, cores = 4) {
  const home = mkdtempSync(join(tmpdir(), 'understudy-licensing-'));
  const store = Store.open(home);
  t.after(() => {
    store.close();
    rmSync(home, { recursive: true, force: true });
  });
  const wall = new Wall();
  const open = () => {
    const licensing = new Licensing({ store, writable: true, counted: () => true, wall: wall.read, cores, trusted });
    licensing.beginTrial();
    return licensing;
  };
  return { store, wall, licensing: open(), reopen: open };
}

const key = (overrides: Partial<IssueRequest> = {}) =>
  issueKey(TestVendorPem, { customer: 'Acme Hardware', tier: 'P05', nodes: 2, issuedAt: Start, expiresAt: Start + 365 * DayMs, maintenanceEndsAt: null, ...overrides });

function refused(action: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(action, (error: unknown) => error instanceof UnderstudyError && error.code === code && pattern.test(error.toLine()));
}

describe('licensing on a node', () => {
  test('the trial starts on the first run and survives a restart; setting the clock back does not stretch it', (t) => {
    const { wall, licensing, reopen } = setup(t);
    assert.equal(licensing.report().daysLeft, 30);
    wall.ms += 31 * DayMs;
    assert.equal(reopen().report().state, 'expired');
    // The admin sets the clock back 20 days: license time stays at the latest time seen.
    wall.ms -= 20 * DayMs;
    const report = reopen().report();
    assert.equal(report.state, 'expired');
    assert.match(report.warnings.join(' '), /clock is \d+ minutes behind/);
    refused(() => reopen().assertMayConfigure('protecting a new folder'), 'license-required', /protecting a new folder needs a license in order .*trial ended.*stays protected: install a key/);
  });

  test('install: a good key makes the license valid; the same key again changes nothing', (t) => {
    const { licensing } = setup(t);
    const first = licensing.install(key());
    assert.equal(first.changed, true);
    assert.equal(first.license.state, 'valid');
    assert.equal(first.license.tier, 'P05');
    assert.equal(licensing.install(key().replace(/(.{50})/g, '$1\n')).changed, true, 'a new key (new id) replaces the old one');
    const again = licensing.install(licensing.keyText()!);
    assert.equal(again.changed, false);
  });

  test('bad keys are refused with one line and leave the installed license as it was', (t) => {
    const { licensing, wall, store } = setup(t);
    licensing.install(key());
    const before = JSON.stringify(licensing.report());
    const stored = store.getSetting('license.key');
    const good = key();
    refused(() => licensing.install(good.slice(0, -10)), 'license-invalid', /incomplete/);
    refused(() => licensing.install('garbage'), 'license-invalid', /not an Understudy license key/);
    refused(() => licensing.install(key({ issuedAt: Start - 400 * DayMs, expiresAt: Start - 35 * DayMs })), 'license-expired', /expired on 2026-12-06: ask for a renewal key/);
    refused(() => licensing.install(key({ issuedAt: Start + 30 * DayMs })), 'license-invalid', /issued on 2027-02-09, after this machine's date/);
    wall.ms += 0;
    assert.equal(JSON.stringify(licensing.report()), before);
    assert.equal(store.getSetting('license.key'), stored);
  });

  test('a key smaller than the machine installs, warns and names the tier needed', (t) => {
    const { licensing } = setup(t, 24);
    const result = licensing.install(key({ tier: 'P10' }));
    assert.equal(result.license.state, 'too-small');
    assert.equal(result.license.tierNeeded, 'P30');
    refused(() => licensing.assertMayConfigure('pairing a new backup'), 'license-required', /pairing a new backup needs a license/);
  });

  test("a peer's key is taken when it is better, and never replaces a better one", (t) => {
    const { licensing } = setup(t);
    assert.equal(licensing.adoptFromPeer(key()), true);
    assert.equal(licensing.adoptFromPeer(key({ expiresAt: Start + 10 * DayMs })), false, 'a shorter term does not replace a longer one');
    assert.equal(licensing.adoptFromPeer(key({ expiresAt: Start + 700 * DayMs })), true, 'a renewal does');
    assert.equal(licensing.adoptFromPeer('garbage'), false);
    assert.equal(licensing.report().daysLeft, 700);
  });

  test('the key replaced is kept in the store', (t) => {
    const { licensing, store } = setup(t);
    licensing.install(key());
    const first = licensing.keyText();
    licensing.install(key({ tier: 'P10' }));
    assert.equal(store.getSetting('license.previousKey'), first);
  });
});
