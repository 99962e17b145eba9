/**
 * Low-latency change notices on Linux: one plain (non-recursive) fs.watch per directory,
 * which inotify serves with no debounce. @parcel/watcher stays on as the recursive safety
 * net — it batches events for 50 to 500 ms, too slow alone for sub-250 ms replication at a
 * steady 50 changes a second — and the periodic rescan catches anything both miss.
 */
import { watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';

export class DirectoryWatchers {
  private readonly watchers = new Map<string, FSWatcher>();
  private disabled = false;

  /**
   * @param onPaths called with relative paths that changed (a directory's entry, not its contents)
   * @param onTrouble called once when watching fails (e.g. the inotify limit): the safety net remains
   */
  constructor(
    private readonly root: string,
    private readonly onPaths: (paths: string[]) => void,
    private readonly onTrouble: (error: Error) => void,
  ) {}

  /** Watches exactly these directories (relative; '' is the root). */
  sync(dirs: Iterable<string>): void {
    if (this.disabled || process.platform !== 'linux') return;
    const wanted = new Set(dirs);
    for (const [dir, watcher] of this.watchers) {
      if (!wanted.has(dir)) {
        watcher.close();
        this.watchers.delete(dir);
      }
    }
    for (const dir of wanted) {
      if (this.watchers.has(dir)) continue;
      try {
        const watcher = watch(join(this.root, dir), { persistent: false }, (_event, name) => {
          if (name) this.onPaths([dir === '' ? String(name) : `${dir}/${String(name)}`]);
        });
        watcher.on('error', () => {
          // The directory went away; the parent's watcher reports that.
          watcher.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, watcher);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        this.disabled = true;
        this.close();
        this.onTrouble(error as Error);
        return;
      }
    }
  }

  close(): void {
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }
}
