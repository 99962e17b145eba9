/**
 * A randomized file workload of the kinds a shop's folders see: creates, appends, in-place
 * rewrites, truncates, renames of files and folders, deletes, chmods, symlinks, and the
 * write-temp-then-rename pattern editors use to save.
 */
import { appendFileSync, chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, symlinkSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Random } from './random.js';

const Kinds = ['create', 'create', 'append', 'rewrite', 'truncate', 'rename-file', 'rename-dir', 'delete-file', 'delete-dir', 'editor-save', 'mkdir', 'chmod', 'symlink'] as const;

function listing(root: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      const stat = lstatSync(join(root, path));
      if (stat.isDirectory()) {
        dirs.push(path);
        walk(path);
      } else if (stat.isFile()) files.push(path);
    }
  };
  walk('');
  return { files, dirs };
}

function newName(random: Random, prefix: string): string {
  return `${prefix}-${random.int(0, 1e9).toString(36)}`;
}

/** Applies `count` random operations under root; returns a log of what was done. */
export function runWorkload(root: string, random: Random, count: number, maxFileBytes = 256 * 1024): string[] {
  const done: string[] = [];
  for (let i = 0; i < count; i++) {
    const { files, dirs } = listing(root);
    const kind = random.pick(Kinds);
    const dir = dirs.length > 0 && random.next() < 0.7 ? random.pick(dirs) : '';
    const at = (name: string) => (dir ? `${dir}/${name}` : name);
    switch (kind) {
      case 'create': {
        const path = at(newName(random, 'f'));
        writeFileSync(join(root, path), random.bytes(random.int(0, maxFileBytes)));
        done.push(`create ${path}`);
        break;
      }
      case 'append':
        if (files.length === 0) continue;
        {
          const path = random.pick(files);
          appendFileSync(join(root, path), random.bytes(random.int(1, 20000)));
          done.push(`append ${path}`);
        }
        break;
      case 'rewrite':
        if (files.length === 0) continue;
        {
          const path = random.pick(files);
          const size = lstatSync(join(root, path)).size;
          const fd = openSync(join(root, path), 'r+');
          writeSync(fd, random.bytes(random.int(1, 8192)), 0, undefined, random.int(0, size));
          closeSync(fd);
          done.push(`rewrite ${path}`);
        }
        break;
      case 'truncate':
        if (files.length === 0) continue;
        {
          const path = random.pick(files);
          truncateSync(join(root, path), Math.floor(lstatSync(join(root, path)).size / 2));
          done.push(`truncate ${path}`);
        }
        break;
      case 'rename-file':
        if (files.length === 0) continue;
        {
          const from = random.pick(files);
          const to = at(newName(random, 'r'));
          renameSync(join(root, from), join(root, to));
          done.push(`rename ${from} -> ${to}`);
        }
        break;
      case 'rename-dir':
        if (dirs.length === 0) continue;
        {
          const from = random.pick(dirs);
          const to = newName(random, 'd');
          if (to.startsWith(from)) continue;
          renameSync(join(root, from), join(root, to));
          done.push(`rename-dir ${from} -> ${to}`);
        }
        break;
      case 'delete-file':
        if (files.length === 0) continue;
        {
          const path = random.pick(files);
          rmSync(join(root, path));
          done.push(`delete ${path}`);
        }
        break;
      case 'delete-dir':
        if (dirs.length < 3) continue;
        {
          const path = random.pick(dirs);
          rmSync(join(root, path), { recursive: true });
          done.push(`delete-dir ${path}`);
        }
        break;
      case 'editor-save':
        if (files.length === 0) continue;
        {
          // Editors write the new version beside the file, then rename it over the old one.
          const path = random.pick(files);
          const temp = `${join(root, path)}.swp`;
          writeFileSync(temp, random.bytes(random.int(0, maxFileBytes)));
          renameSync(temp, join(root, path));
          done.push(`editor-save ${path}`);
        }
        break;
      case 'mkdir': {
        const path = at(newName(random, 'd'));
        mkdirSync(join(root, path));
        writeFileSync(join(root, path, 'inside.txt'), random.bytes(random.int(0, 4096)));
        done.push(`mkdir ${path}`);
        break;
      }
      case 'chmod':
        if (files.length === 0) continue;
        {
          const path = random.pick(files);
          chmodSync(join(root, path), random.pick([0o600, 0o640, 0o644, 0o755]));
          done.push(`chmod ${path}`);
        }
        break;
      case 'symlink': {
        const path = at(newName(random, 'l'));
        if (existsSync(join(root, path))) continue;
        symlinkSync(files.length > 0 ? random.pick(files) : 'nowhere', join(root, path));
        done.push(`symlink ${path}`);
        break;
      }
    }
  }
  return done;
}
