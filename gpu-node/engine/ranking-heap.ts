/**
 * Ranking candidates without objects or comparators. A candidate is one double: (order of its float32
 * logit, descending) · 2^ID_BITS + id. Ascending keys are "higher logit first, lower id first on ties".
 * A bounded max-heap of keys finds a row's best k in one pass; heapsort orders them.
 */
// V8 reads an exported binding through a module cell on every access, even inside its own module, and
// that kept the scans below from inlining their helpers (top_k sampling 1.4x slower). So everything here
// is module-private, and the exports at the end are separate bindings.
const ID_BITS = 21;
const ID_SPAN = 2 ** ID_BITS;
const bitsF32 = new Float32Array(1);
const bitsU32 = new Uint32Array(bitsF32.buffer);

function rankKey(logit: number, id: number): number {
  bitsF32[0] = logit;
  const b = bitsU32[0];
  // IEEE order → unsigned order: flip all bits of negatives, set the sign bit of positives; then invert for descending.
  const ordered = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
  return (0xffffffff - ordered) * ID_SPAN + id;
}

function keyId(key: number): number {
  return key % ID_SPAN;
}

/** Max-heap on keys (root = worst kept candidate). */
function siftDown(h: Float64Array, start: number, size: number): void {
  let i = start;
  const v = h[i];
  for (;;) {
    let c = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && h[c + 1] > h[c]) c++;
    if (h[c] <= v) break;
    h[i] = h[c];
    i = c;
  }
  h[i] = v;
}

function siftUp(h: Float64Array, at: number): void {
  let i = at;
  const v = h[i];
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p] >= v) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = v;
}

/** Sorts h[0..n) ascending in place (heapsort: no recursion, no allocation). */
function sortKeys(h: Float64Array, n: number): void {
  for (let i = (n >> 1) - 1; i >= 0; i--) siftDown(h, i, n);
  for (let end = n - 1; end > 0; end--) {
    const t = h[0];
    h[0] = h[end];
    h[end] = t;
    siftDown(h, 0, end);
  }
}

// Each hot loop sits in a function of its own that ends right after the loop (see the V8 note in sampler.ts).

/** Continues a full bounded heap of `size` keys over row[from..end): better logits replace the worst kept. */
function scanForBetter(row: Float32Array, offset: number, from: number, end: number, heap: Float64Array, size: number): void {
  let worst = row[offset + keyId(heap[0])];
  for (let j = from; j < end; j++) {
    const x = row[j];
    // Equal logits lose to the kept one: it has the lower id.
    if (x > worst) {
      heap[0] = rankKey(x, j - offset);
      siftDown(heap, 0, size);
      worst = row[offset + keyId(heap[0])];
    }
  }
}

/**
 * The k highest logits of row[offset..offset+vocab) as ranking keys in heap[0..n), sorted best first
 * (ties: lower id first; NaN never kept). One pass: a bounded max-heap of keys whose root is the worst
 * kept candidate; most logits fail one comparison against it.
 */
function selectBest(row: Float32Array, offset: number, vocab: number, k: number, heap: Float64Array): number {
  if (k <= 0) return 0;
  const end = offset + vocab;
  let j = offset;
  let size = 0;
  for (; j < end && size < k; j++) {
    const x = row[j];
    if (x !== x) continue;
    heap[size] = rankKey(x, j - offset);
    siftUp(heap, size++);
  }
  if (size === k) scanForBetter(row, offset, j, end, heap, size);
  sortKeys(heap, size);
  return size;
}

/** The largest vocabulary whose ids fit in a key. */
export const MAX_RANKED_VOCAB = ID_SPAN;
const exportedRankKey = rankKey;
const exportedKeyId = keyId;
const exportedSortKeys = sortKeys;
const exportedSelectBest = selectBest;
export {
  exportedRankKey as rankKey, exportedKeyId as keyId, exportedSortKeys as sortKeys, exportedSelectBest as selectBest,
};
