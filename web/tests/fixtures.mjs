// Small wire-format graphs with known answers, shared by the unit tests.

/**
 * total=100: main(100, self 10) -> work(60, self 20) -> leaf(40, self 40)
 *                               -> io(30, self 30)
 * Level 2: work [0,60), io [60,90); level 3: leaf [0,40).
 */
export function simple() {
  return {
    version: 1, type: "cpu", unit: "nanoseconds", period: 10,
    names: ["total", "main", "work", "io", "leaf"],
    binaries: ["", "/bin/app", "/bin/app", "[kernel.kallsyms]", "/lib/libc.so"],
    kinds: ["", "native", "native", "kernel", "native"],
    levels: [
      [0, 100, 0, 0],
      [0, 100, 10, 1],
      [0, 60, 20, 2, 0, 30, 30, 3],
      [0, 40, 40, 4],
    ],
    numTicks: 100, maxSelf: 40, others: [], counters: { missed_stacks: 3 },
  };
}

/** Wire format from nested [name, self, children] triples (iterative, like the server's encoder). */
export function fromTree(root, extra = {}) {
  const names = ["total"];
  const idx = new Map([["total", 0]]);
  const levels = [];
  // Compute totals bottom-up without recursion.
  const order = [];
  const stack = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop();
    order.push([node, depth]);
    for (let k = node[2].length - 1; k >= 0; k--) stack.push([node[2][k], depth + 1]);
  }
  const total = new Map();
  for (let k = order.length - 1; k >= 0; k--) {
    const node = order[k][0];
    total.set(node, node[1] + node[2].reduce((s, c) => s + total.get(c), 0));
  }
  const x = new Map([[root, 0]]);
  const prevEnd = [];
  for (const [node, depth] of order) {
    let cx = x.get(node);
    for (const c of node[2]) { x.set(c, cx); cx += total.get(c); }
    if (!idx.has(node[0])) { idx.set(node[0], names.length); names.push(node[0]); }
    levels[depth] ||= [];
    const pe = prevEnd[depth] || 0;
    levels[depth].push(x.get(node) - pe, total.get(node), node[1], idx.get(node[0]));
    prevEnd[depth] = x.get(node) + total.get(node);
  }
  return {
    version: 1, type: "cpu", unit: "count", period: 0, names,
    binaries: names.map(() => "/bin/x"), kinds: names.map((n) => (n === "total" ? "" : "native")),
    levels, numTicks: total.get(root), maxSelf: 0, others: [], counters: {}, ...extra,
  };
}
