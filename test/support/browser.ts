/** What the end-to-end tests share: Debian's Chromium, where screenshots go, a node's console link. */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { TestNode } from './harness.js';

export const ChromiumPath = process.env.UNDERSTUDY_CHROMIUM ?? '/usr/bin/chromium';
const ChromiumArgs = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const Artifacts = fileURLToPath(new URL('../../../test-artifacts/e2e/', import.meta.url));

export function launchChromium(): Promise<Browser> {
  mkdirSync(Artifacts, { recursive: true });
  return chromium.launch({ executablePath: ChromiumPath, args: ChromiumArgs });
}

export async function consoleUrl(node: TestNode): Promise<string> {
  const result = await node.cli('console-url');
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim().split('\n').at(-1)!;
}

/** The two window sizes the UI must stay clean and legible at. */
export const Sizes = [
  { width: 1280, height: 800 },
  { width: 1024, height: 700 },
] as const;

/** Saves NAME-1280x800.png and NAME-1024x700.png, and leaves the page at the first size. */
export async function screenshotBoth(page: Page, name: string): Promise<void> {
  for (const size of [...Sizes].reverse()) {
    await page.setViewportSize(size);
    await page.screenshot({ path: join(Artifacts, `${name}-${size.width}x${size.height}.png`) });
  }
}
