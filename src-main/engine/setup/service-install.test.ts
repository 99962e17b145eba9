import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { installService, serviceStatus } from './service-install.js';
import { launchdPlist, systemdUnit } from './service-unit.js';

const command = { executable: '/usr/bin/node', script: '/opt/understudy app/cli/main.js', home: '/var/lib/understudy', user: 'understudy', electron: false };

describe('service definitions', () => {
  test('the systemd unit runs serve for this home as this user, quoting paths with spaces', () => {
    const unit = systemdUnit(command);
    assert.match(unit, /^ExecStart="\/usr\/bin\/node" "\/opt\/understudy app\/cli\/main.js" "serve" "--home" "\/var\/lib\/understudy"$/m);
    assert.match(unit, /^User=understudy$/m);
    assert.match(unit, /^WantedBy=multi-user.target$/m);
    assert.doesNotMatch(unit, /ELECTRON_RUN_AS_NODE/);
    assert.match(systemdUnit({ ...command, electron: true }), /^Environment=ELECTRON_RUN_AS_NODE=1$/m);
  });

  test('the launchd daemon runs the same command at load and escapes XML', () => {
    const plist = launchdPlist({ ...command, home: '/Users/a&b/us' });
    assert.match(plist, /<string>\/Users\/a&amp;b\/us<\/string>/);
    assert.match(plist, /<key>RunAtLoad<\/key><true\/>/);
  });
});

describe('service install (into a test folder: UNDERSTUDY_SERVICE_DIR in dev mode)', { skip: process.platform !== 'linux' }, () => {
  test('writes the unit for this home, reports it, and refuses to replace another home\'s unit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'units-'));
    const homeA = mkdtempSync(join(tmpdir(), 'home-a-'));
    const homeB = mkdtempSync(join(tmpdir(), 'home-b-'));
    const saved = { dev: process.env.UNDERSTUDY_DEV, dir: process.env.UNDERSTUDY_SERVICE_DIR };
    process.env.UNDERSTUDY_DEV = '1';
    process.env.UNDERSTUDY_SERVICE_DIR = dir;
    try {
      assert.equal((await serviceStatus(homeA)).installed, false);
      const report = await installService(homeA);
      assert.equal(report.installed, true);
      assert.equal(report.enabled, false); // no systemd runs for a test folder
      const unit = readFileSync(join(dir, 'understudy.service'), 'utf8');
      assert.ok(unit.includes(`"serve" "--home" "${homeA}"`), unit);
      assert.match(unit, new RegExp(`^User=${userInfo().username}$`, 'm'), 'runs as the home\'s owner');
      assert.equal((await serviceStatus(homeA)).installed, true);
      await assert.rejects(installService(homeB), /already runs another Understudy home/);
      assert.ok(readFileSync(join(dir, 'understudy.service'), 'utf8').includes(homeA), 'the other home\'s unit is left as it was');
    } finally {
      process.env.UNDERSTUDY_DEV = saved.dev;
      process.env.UNDERSTUDY_SERVICE_DIR = saved.dir;
      if (saved.dev === undefined) delete process.env.UNDERSTUDY_DEV;
      if (saved.dir === undefined) delete process.env.UNDERSTUDY_SERVICE_DIR;
    }
  });
});
