/**
 * A button's action: runs it, remembers that it runs (to disable the button), and keeps the
 * outcome as one line for people — the engine's refusal with its hint, or what was done.
 */
import { ControlError } from './transport';

export class Action {
  busy = $state(false);
  outcome = $state<{ ok: boolean; text: string } | null>(null);

  async run(work: () => Promise<string | void>): Promise<boolean> {
    this.busy = true;
    this.outcome = null;
    try {
      const text = await work();
      if (text) this.outcome = { ok: true, text };
      return true;
    } catch (error) {
      this.outcome = { ok: false, text: error instanceof ControlError ? error.line : String(error) };
      return false;
    } finally {
      this.busy = false;
    }
  }
}
