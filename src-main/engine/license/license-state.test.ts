import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LicenseTerms } from './license-key.js';
import { betterTerms, DayMs, evaluateLicense, type LicenseFacts } from './license-state.js';
import { findTier, tierFor } from './tiers.js';

const Now = Date.UTC(2027, 2, 1);
const terms = (overrides: Partial<LicenseTerms> = {}): LicenseTerms => ({
  licenseId: '0a1b2c3d',
  keyId: '0123456789abcdef',
  customer: 'Acme Hardware',
  tier: 'P10',
  nodes: 2,
  issuedAt: Now - 10 * DayMs,
  expiresAt: Now + 100 * DayMs,
  maintenanceEndsAt: null,
  ...overrides,
});
const facts = (overrides: Partial<LicenseFacts> = {}): LicenseFacts => ({
  terms: null,
  invalidReason: null,
  trialStartedAt: Now - 5 * DayMs,
  nowMs: Now,
  clockBehindMs: 0,
  cores: 4,
  counted: true,
  ...overrides,
});

describe('tiers', () => {
  test('each tier covers machines up to its cores; P50 has no limit', () => {
    assert.deepEqual([1, 4, 5, 8, 9, 16, 17, 32, 33, 64, 65, 512].map((cores) => tierFor(cores).tier), ['P05', 'P05', 'P10', 'P10', 'P20', 'P20', 'P30', 'P30', 'P40', 'P40', 'P50', 'P50']);
    assert.equal(findTier('P05')?.priceUsd, 13_000);
    assert.equal(findTier('p50')?.priceUsd, 68_000);
    assert.equal(findTier('P60'), undefined);
  });
});

describe('license state', () => {
  test('without a key: a fully working trial of 30 days, then expired (and new configuration waits)', () => {
    const trial = evaluateLicense(facts());
    assert.equal(trial.state, 'trial');
    assert.equal(trial.daysLeft, 25);
    assert.equal(trial.mayConfigure, true);
    assert.deepEqual(trial.warnings, []);
    const ending = evaluateLicense(facts({ trialStartedAt: Now - 27 * DayMs }));
    assert.equal(ending.state, 'trial');
    assert.match(ending.warnings.join(), /trial ends in 3 days/);
    const over = evaluateLicense(facts({ trialStartedAt: Now - 31 * DayMs }));
    assert.equal(over.state, 'expired');
    assert.equal(over.kind, 'trial');
    assert.equal(over.daysLeft, 0);
    assert.equal(over.mayConfigure, false);
    assert.match(over.warnings.join(), /protection goes on/);
  });

  test('a key in its term is valid; past its term it is expired', () => {
    const valid = evaluateLicense(facts({ terms: terms() }));
    assert.equal(valid.state, 'valid');
    assert.equal(valid.tier, 'P10');
    assert.equal(valid.customer, 'Acme Hardware');
    assert.equal(valid.daysLeft, 100);
    assert.equal(valid.expiresAt, new Date(Now + 100 * DayMs).toISOString());
    assert.equal(valid.mayConfigure, true);
    const expired = evaluateLicense(facts({ terms: terms({ expiresAt: Now - 1 }) }));
    assert.equal(expired.state, 'expired');
    assert.equal(expired.mayConfigure, false);
    assert.match(expired.summary, /expired on 2027-02-28/);
  });

  test('a tier smaller than the machine warns and names the tier needed', () => {
    const report = evaluateLicense(facts({ terms: terms({ tier: 'P05' }), cores: 12 }));
    assert.equal(report.state, 'too-small');
    assert.equal(report.tierNeeded, 'P20');
    assert.equal(report.mayConfigure, false);
    assert.match(report.warnings.join(), /12 cores.*P05.*P20 tier \(up to 16 cores\) is needed/);
  });

  test('a perpetual key stays valid after maintenance ends, and says updates are no longer covered', () => {
    const report = evaluateLicense(facts({ terms: terms({ expiresAt: null, maintenanceEndsAt: Now - DayMs }) }));
    assert.equal(report.state, 'valid');
    assert.equal(report.kind, 'perpetual');
    assert.equal(report.daysLeft, null);
    assert.match(report.warnings.join(), /Maintenance ended/);
  });

  test('a stored key that no longer verifies is invalid, and a clock set back is reported', () => {
    assert.equal(evaluateLicense(facts({ invalidReason: 'not signed by Understudy' })).state, 'invalid');
    assert.equal(evaluateLicense(facts({ terms: terms({ tier: 'P99' }) })).state, 'invalid');
    assert.match(evaluateLicense(facts({ clockBehindMs: 3 * DayMs })).warnings.join(), /clock is 4320 minutes behind/);
  });

  test('a witness is not counted and gets no warnings', () => {
    const report = evaluateLicense(facts({ trialStartedAt: Now - 40 * DayMs, counted: false }));
    assert.equal(report.counted, false);
    assert.deepEqual(report.warnings, []);
    assert.match(report.summary, /witness needs no license/);
  });

  test('of two keys a node keeps the one in force, then the later end, then the later issue', () => {
    const lapsed = terms({ licenseId: 'aaaaaaaa', expiresAt: Now - 1 });
    const short = terms({ licenseId: 'bbbbbbbb', expiresAt: Now + 10 * DayMs });
    const long = terms({ licenseId: 'cccccccc', expiresAt: Now + 300 * DayMs });
    const perpetual = terms({ licenseId: 'dddddddd', expiresAt: null, maintenanceEndsAt: Now });
    assert.equal(betterTerms(lapsed, short, Now), short);
    assert.equal(betterTerms(long, short, Now), long);
    assert.equal(betterTerms(long, perpetual, Now), perpetual);
    const reissued = terms({ licenseId: 'eeeeeeee', issuedAt: Now });
    assert.equal(betterTerms(terms(), reissued, Now), reissued);
  });
});
