// Greedy decoding that never waits for the GPU between steps. Each step's `argmax` output, still
// on the GPU, is the next step's input, so the CPU queues step n+1 while the GPU runs step n; the
// token ids come back asynchronously, several steps behind. The caller takes tokens one by one
// and closes the run when it stops (EOS, a stop string, max_tokens, an interrupt): the steps it
// queued beyond that point are dropped from the KV cache.
//
// Why: a readback costs far more than a decode step's kernels on a real GPU (Deno polls for mapped
// buffers every few milliseconds; browsers hop through their GPU process), so waiting for each
// token id left the GPU idle most of every step.

import type * as tvmjs from "@mlc-ai/web-runtime";

// What a run needs from the model: a decode step fed from a token tensor on the GPU, an
// asynchronous read of a token tensor, and a way to forget queued steps.
export interface GpuDecoder {
  // Queues one decode step on `token` ([1] int32 on the GPU); returns the step's argmax token
  // tensor, detached from any scope (the run disposes it).
  decodeOnGpu(token: tvmjs.Tensor): tvmjs.Tensor;
  // Starts reading `token` back; resolves when the GPU has produced it.
  readToken(token: tvmjs.Tensor): Promise<number>;
  // Drops the last `n` tokens from the KV cache.
  popTokens(n: number): void;
  // How many more tokens the KV cache can take (the context window's room).
  room(): number;
}

// How many steps the GPU may run ahead of the tokens the caller has seen. Enough to hide a
// readback's latency (a few steps' worth), small enough that stopping discards little work.
export const DEFAULT_LOOKAHEAD = 6;

export class GreedyRun {
  private readonly pending: Promise<number>[] = [];
  private last: tvmjs.Tensor;
  private queued = 0; // decode steps queued on the GPU
  private taken = 0; // tokens handed to the caller
  private closed = false;

  // `first` is the token that the first step consumes (the run owns and disposes it). Steps are
  // queued ahead only up to `maxSteps`, the most the caller can want; a step asked for beyond
  // that is still run, on demand.
  constructor(
    private readonly model: GpuDecoder,
    first: tvmjs.Tensor,
    private readonly maxSteps: number,
    private readonly lookahead = DEFAULT_LOOKAHEAD,
  ) {
    this.last = first;
  }

  // The next greedy token: the output of one more decode step.
  async next(): Promise<number> {
    if (this.closed) throw new Error("GreedyRun.next() after close()");
    while (this.queued < this.maxSteps && this.pending.length < this.lookahead && this.model.room() > 0) {
      this.queueStep();
    }
    // Nothing queued ahead: run the step now (past the context window, this throws why).
    if (this.pending.length === 0) this.queueStep();
    this.taken += 1;
    return this.pending.shift()!;
  }

  // Ends the run: the KV cache keeps exactly the tokens consumed by the steps whose outputs were
  // taken. Safe to call more than once.
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.last.dispose();
    this.pending.length = 0;
    this.model.popTokens(this.queued - this.taken);
  }

  private queueStep(): void {
    const token = this.model.decodeOnGpu(this.last);
    // The step has been encoded: later GPU work that reuses `last`'s memory runs after it.
    this.last.dispose();
    this.last = token;
    this.queued += 1;
    const read = this.model.readToken(token);
    // A token the caller never takes (the run closed first) must not surface as an error.
    read.catch(() => {});
    this.pending.push(read);
  }
}
